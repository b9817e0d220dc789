//! Where the console lives (CH-WEB-2). A browser that carries the console cookie may act only
//! from the console's own origin: scheme, host and port must all match, for writes, for the
//! event stream and for the WebSocket upgrade alike. Otherwise a page on another port of the
//! same machine could read the event stream with the user's cookie (issue 9, findings 8 and 17).
//! The `Host` header must name the console too, so a rebound DNS name gets nothing.

use std::net::SocketAddr;

use axum::http::{HeaderMap, header};

/// The console's own origins, e.g. `http://127.0.0.1:8740`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsoleOrigins {
    origins: Vec<String>,
    /// Bound to every address: any `Host` may name this machine, and `http://<Host>` is ours.
    everywhere: bool,
}

impl ConsoleOrigins {
    /// The bound address (plus the loopback names when it is loopback or unspecified) and the
    /// origin of `server.public_url`.
    pub(crate) fn new(bound: SocketAddr, public_url: Option<&str>) -> Self {
        let port = bound.port();
        let mut origins = vec![format!("http://{bound}")];
        if bound.ip().is_loopback() || bound.ip().is_unspecified() {
            for host in ["127.0.0.1", "localhost", "[::1]"] {
                origins.push(format!("http://{host}:{port}"));
            }
        }
        if let Some(origin) = public_url.and_then(origin_of) {
            origins.push(origin);
        }
        Self { origins, everywhere: bound.ip().is_unspecified() }
    }

    /// Whether a cookie-authenticated request comes from the console: its `Host` names one of
    /// the console's origins and its `Origin`, when the browser sent one, is exactly one of them.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
        let authority = |o: &String| o.split_once("://").map(|(_, a)| a.to_owned());
        let host_ok = self.everywhere || self.origins.iter().any(|o| authority(o).as_deref() == Some(host));
        let origin_ok = match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            None => true,
            Some(Ok(o)) => {
                self.origins.iter().any(|mine| mine == o)
                    || (self.everywhere && o == format!("http://{host}"))
            }
            Some(Err(_)) => false,
        };
        host_ok && origin_ok
    }
}

/// `scheme://host[:port]` of a URL, lower-cased, without path or default port.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let scheme = scheme.to_ascii_lowercase();
    let authority = match scheme.as_str() {
        "https" => authority.strip_suffix(":443").map(str::to_owned).unwrap_or(authority),
        "http" => authority.strip_suffix(":80").map(str::to_owned).unwrap_or(authority),
        _ => return None,
    };
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn finding_8_other_ports_schemes_and_sites_are_not_the_console() {
        let o = ConsoleOrigins::new("127.0.0.1:8740".parse().unwrap(), None);
        assert!(o.allows(&headers("127.0.0.1:8740", None)));
        assert!(o.allows(&headers("localhost:8740", Some("http://localhost:8740"))));
        assert!(!o.allows(&headers("127.0.0.1:8740", Some("http://127.0.0.1:9999"))), "another port");
        assert!(!o.allows(&headers("127.0.0.1:8740", Some("https://127.0.0.1:8740"))), "scheme");
        assert!(!o.allows(&headers("127.0.0.1:8740", Some("http://evil.example"))));
        assert!(!o.allows(&headers("127.0.0.1:8740", Some("null"))));
    }

    #[test]
    fn finding_17_the_host_header_must_name_the_console() {
        let o = ConsoleOrigins::new("127.0.0.1:8740".parse().unwrap(), Some("https://approve.example.org/"));
        assert!(!o.allows(&headers("evil.example:8740", None)), "DNS rebinding");
        assert!(o.allows(&headers("approve.example.org", Some("https://approve.example.org"))));
        assert!(!o.allows(&headers("approve.example.org", Some("http://approve.example.org"))));
    }
}
