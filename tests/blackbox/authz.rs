//! The authorization matrix (API-1, CH-WEB-2; issue 9, deliverable 3): every route of the OpenAPI
//! document × every kind of caller, against the outcome docs/api.md documents. A route in the
//! document without a row here fails the test, so a new route cannot skip this review.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    harness::Server,
    security::{Roles, console_cookie, create_exec, server_with_roles},
};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    None,
    Garbage,
    /// The request token that created the approval in the path.
    Owner,
    /// Another request token.
    OtherRequest,
    Approve,
    Admin,
    Metrics,
    /// An approve-scope console cookie, with the CSRF header, from the console's origin.
    Cookie,
    /// The same cookie without the CSRF header.
    CookieNoCsrf,
    /// The same cookie and CSRF header, from another origin.
    CookieForeign,
}

const EVERYONE: [Who; 10] = [
    Who::None,
    Who::Garbage,
    Who::Owner,
    Who::OtherRequest,
    Who::Approve,
    Who::Admin,
    Who::Metrics,
    Who::Cookie,
    Who::CookieNoCsrf,
    Who::CookieForeign,
];

/// The documented status for `who` on (`method`, `path`); `None` means the route has no row.
fn expected(method: &str, path: &str, who: Who) -> Option<u16> {
    use Who::*;
    let unauthenticated = match who {
        None | Garbage => Some(401),
        CookieForeign => Some(403),
        _ => Option::None,
    };
    let public = matches!(path, "/v1/health" | "/v1/ready" | "/v1/openapi.json" | "/metrics");
    if public {
        // Public routes, and /metrics to loopback callers, whoever asks.
        return Some(200);
    }
    if let Some(status) = unauthenticated {
        return Some(status);
    }
    let write = method != "GET";
    if write && who == CookieNoCsrf {
        return Some(403);
    }
    // An approve cookie acts as its approve principal from here on.
    let who = if matches!(who, Cookie | CookieNoCsrf) { Approve } else { who };
    Some(match (method, path, who) {
        ("POST", "/v1/approvals", Owner | OtherRequest | Admin) => 201,
        ("POST", "/v1/approvals", _) => 403,
        ("GET", "/v1/approvals" | "/v1/events", Metrics) => 403,
        ("GET", "/v1/approvals" | "/v1/events", _) => 200,
        ("GET", "/v1/events/ws", Metrics) => 403,
        ("GET", "/v1/events/ws", _) => 101,
        ("GET", "/v1/approvals/{reference}" | "/v1/approvals/{reference}/wait", Metrics) => 403,
        ("GET", "/v1/approvals/{reference}" | "/v1/approvals/{reference}/wait", OtherRequest) => 404,
        ("GET", "/v1/approvals/{reference}" | "/v1/approvals/{reference}/wait", _) => 200,
        ("POST", "/v1/approvals/{reference}/resolve", Approve | Admin) => 200,
        ("POST", "/v1/approvals/{reference}/resolve", _) => 403,
        ("POST", "/v1/approvals/{reference}/cancel", Owner | Admin) => 200,
        ("POST", "/v1/approvals/{reference}/cancel", OtherRequest) => 404,
        ("POST", "/v1/approvals/{reference}/cancel", _) => 403,
        // Consume is the requester's, and only once approved: the approval here is pending.
        ("POST", "/v1/approvals/{reference}/consume", Owner) => 409,
        ("POST", "/v1/approvals/{reference}/consume", OtherRequest) => 404,
        ("POST", "/v1/approvals/{reference}/consume", _) => 403,
        ("GET", "/v1/grants", Approve | Admin) => 200,
        ("GET", "/v1/grants", _) => 403,
        ("DELETE", "/v1/grants/{id}", Admin) => 200,
        ("DELETE", "/v1/grants/{id}", _) => 403,
        ("POST", "/v1/bindings", Owner | OtherRequest | Admin) => 201,
        ("POST", "/v1/bindings", _) => 403,
        // Authorized, and nothing is bound to the cell's conversation.
        ("GET", "/v1/bindings", Approve | Admin) => 404,
        ("GET", "/v1/bindings", _) => 403,
        ("DELETE", "/v1/bindings", Owner | OtherRequest | Admin) => 200,
        ("DELETE", "/v1/bindings", _) => 403,
        ("GET", "/v1/audit", Admin) => 200,
        ("GET", "/v1/audit", _) => 403,
        _ => return Option::None,
    })
}

/// What one cell needs: a fresh pending approval, grant and binding, so a write in one cell
/// never changes another's outcome.
struct Fixture {
    approval: String,
    grant: String,
}

fn fixture(server: &Server, roles: &Roles, n: usize) -> Fixture {
    let approval = create_exec(server, &roles.request, &["echo", "cell", &n.to_string()])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let granted = create_exec(server, &roles.request, &["echo", "grant", &n.to_string()]);
    let id = granted["id"].as_str().unwrap();
    let body = json!({ "kind": "exec", "decision": "allow-always" });
    let (status, _) =
        server.call_as(Some(&roles.approve), "POST", &format!("/v1/approvals/{id}/resolve"), Some(body));
    assert_eq!(status, 200);
    let (_, grants) = server.call_as(Some(&roles.approve), "GET", "/v1/grants", None);
    let grant = grants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["approval_id"] == id)
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .unwrap();
    Fixture { approval, grant }
}

/// The concrete request line and body of a route for one cell.
fn request_for(method: &str, template: &str, f: &Fixture, n: usize) -> (String, Option<Value>) {
    let conversation = format!("channel=telegram&account=main&conversation=-{n}");
    let path = match template {
        "/v1/approvals/{reference}/wait" => format!("/v1/approvals/{}/wait?timeout=1", f.approval),
        "/v1/events" | "/v1/events/ws" => format!("{template}?since=0"),
        "/v1/bindings" if method == "DELETE" => format!("/v1/bindings?{conversation}&plugin_root=/opt/p"),
        "/v1/bindings" if method == "GET" => format!("/v1/bindings?{conversation}"),
        t => t.replace("{reference}", &f.approval).replace("{id}", &f.grant),
    };
    let body = match (method, template) {
        ("POST", "/v1/approvals") => Some(json!({ "kind": "exec", "exec": { "argv": ["true"] } })),
        ("POST", "/v1/approvals/{reference}/resolve") => Some(json!({ "kind": "exec", "decision": "deny" })),
        ("POST", "/v1/bindings") => Some(json!({
            "plugin": { "id": "p", "name": "P", "root": "/opt/p" },
            "conversation": { "channel": "telegram", "account": "main", "conversation": format!("+{n}") },
            "summary": "s",
        })),
        ("POST", _) => Some(json!({})),
        _ => None,
    };
    (path, body)
}

/// Sends one request as `who` and returns the status code.
fn status_of(
    server: &Server,
    roles: &Roles,
    session: &Session,
    who: Who,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> u16 {
    let addr = server.url.trim_start_matches("http://");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if !path.starts_with("/v1/events/ws") {
        head.push_str("Connection: close\r\n");
    }
    let token = match who {
        Who::Garbage => Some("not-a-token"),
        Who::Owner => Some(roles.request.as_str()),
        Who::OtherRequest => Some(roles.request2.as_str()),
        Who::Approve => Some(roles.approve.as_str()),
        Who::Admin => Some(roles.admin.as_str()),
        Who::Metrics => Some(roles.metrics.as_str()),
        _ => None,
    };
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if matches!(who, Who::Cookie | Who::CookieNoCsrf | Who::CookieForeign) {
        head.push_str(&format!("Cookie: {}\r\n", session.cookie));
        let origin =
            if who == Who::CookieForeign { "http://evil.example".to_owned() } else { server.url.clone() };
        head.push_str(&format!("Origin: {origin}\r\n"));
        if who != Who::CookieNoCsrf {
            head.push_str(&format!("X-Assent-CSRF: {}\r\n", session.csrf));
        }
    }
    if path.starts_with("/v1/events/ws") {
        head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if method != "GET" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    String::from_utf8_lossy(&first[9..12]).parse().unwrap()
}

struct Session {
    cookie: String,
    csrf: String,
}

fn console_session(server: &Server, token: &str) -> Session {
    let cookie = console_cookie(server, token);
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request =
        format!("GET /grants HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    let csrf = page.split("<meta name=\"csrf\" content=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
    Session { cookie, csrf: csrf.to_owned() }
}

/// Every (method, path) of the served OpenAPI document.
fn documented_routes(server: &Server) -> BTreeSet<(String, String)> {
    let (status, doc) = server.call_as(None, "GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn api_1_the_authorization_matrix_holds_for_every_documented_route() {
    let (server, roles) = server_with_roles("");
    let session = console_session(&server, &roles.approve);
    let routes = documented_routes(&server);
    let missing: Vec<String> = routes
        .iter()
        .filter(|(m, p)| EVERYONE.iter().any(|w| expected(m, p, *w).is_none()))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(missing.is_empty(), "routes without a row in the authorization matrix: {missing:?}");

    let mut wrong = Vec::new();
    let mut cells = 0;
    for (n, (method, template)) in routes.iter().enumerate() {
        for (i, who) in EVERYONE.into_iter().enumerate() {
            let cell = n * EVERYONE.len() + i;
            let f = fixture(&server, &roles, cell);
            let (path, body) = request_for(method, template, &f, cell);
            let want = expected(method, template, who).unwrap();
            let got = status_of(&server, &roles, &session, who, method, &path, body.as_ref());
            cells += 1;
            // Ten unknown tokens from one address are throttled: 429 is the same refusal.
            let throttled = who == Who::Garbage && want == 401 && got == 429;
            if got != want && !throttled {
                wrong.push(format!("{method} {template} as {who:?}: {got}, documented {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} cells differ:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(cells, routes.len() * EVERYONE.len());
    eprintln!("authorization matrix: {} routes × {} callers = {cells} cells", routes.len(), EVERYONE.len());
}
