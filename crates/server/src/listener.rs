//! The accept loop: every connection goes straight to hyper's HTTP/1.1 server.
//!
//! `axum::serve` first sniffs each connection for HTTP/2. The bytes it reads ahead are handed
//! to hyper separately, so hyper reads the request head in two steps and its read buffer grows
//! from 8 to 16 KiB, which a long poll then keeps for minutes (10,000 waiters held 80 MiB more).
//! assent speaks HTTP/1.1 only (TLS and HTTP/2 belong to a proxy in front), so it skips the
//! sniffing.
//!
//! Also unlike `axum::serve`, a client gets 30 s to send a request's head: hyper enforces that
//! only when given a timer, and without it a slow client could hold a connection forever. The
//! same limit closes a keep-alive connection that stays idle for 30 s, as most servers do;
//! clients reconnect.

use std::{convert::Infallible, io, net::SocketAddr, pin::pin, time::Duration};

use axum::{Router, extract::ConnectInfo, response::Response};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_service::Service;

/// How long a client may take to send a request's head, or to start the next one on a
/// keep-alive connection.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` is cancelled, then lets every open connection finish
/// the request it is serving (keep-alive ends) and returns once they all have. `header_timeout`
/// is [`HEADER_READ_TIMEOUT`] but in tests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    header_timeout: Duration,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                accept_failed(error).await;
                continue;
            }
        };
        let app = app.clone();
        let service = service_fn(move |request| handle(app.clone(), peer, request));
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::trace!(%peer, %error, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// One request: tagged with the peer's address (rate limits key on it), then routed.
fn handle(
    mut app: Router,
    peer: SocketAddr,
    mut request: hyper::Request<Incoming>,
) -> impl Future<Output = Result<Response, Infallible>> + Send + use<> {
    request.extensions_mut().insert(ConnectInfo(peer));
    // A `Router` is always ready (its `poll_ready` returns `Ready(Ok(()))` without work), so
    // calling it without polling readiness first is what `tower`'s `oneshot` would do anyway.
    app.call(request)
}

/// A failed accept: a connection that died in the backlog is skipped at once; anything else
/// (out of file descriptors, most often) is logged and retried after a pause, as a busy loop
/// would only make it worse.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use axum::{Router, extract::ConnectInfo, routing::get};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        task::JoinHandle,
    };
    use tokio_util::sync::CancellationToken;

    /// Generous: these tests wait for the server to act, they do not time it.
    const PATIENCE: Duration = Duration::from_secs(10);

    async fn served(header_timeout: Duration) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(super::serve(listener, app, stop.clone(), header_timeout));
        (addr, stop, server)
    }

    /// Everything the peer sends until it closes the connection.
    async fn until_closed(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
            .await
            .expect("the server should have closed the connection")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_request_is_routed_with_the_peer_address_the_rate_limits_key_on() {
        let (addr, _stop, _server) = served(super::HEADER_READ_TIMEOUT).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let answer = until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
        let (addr, _stop, _server) = served(Duration::from_millis(200)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let answer = until_closed(&mut stream).await;
        assert!(!answer.contains("200 OK"), "a half-sent request was answered: {answer}");
    }

    #[tokio::test]
    async fn stopping_ends_idle_connections_and_the_accept_loop() {
        let (addr, stop, server) = served(super::HEADER_READ_TIMEOUT).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut first = [0; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        stop.cancel();
        tokio::time::timeout(PATIENCE, server).await.expect("serve should return once stopped").unwrap();
        until_closed(&mut idle).await;
        assert!(TcpStream::connect(addr).await.is_err(), "the listener should be closed");
    }
}
