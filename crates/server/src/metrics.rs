//! `/metrics` in the Prometheus text format (NF-13): outcomes by kind/status/reason, the pending
//! gauge and delivery failures per account. Loopback callers, or a `metrics` token.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use assent_core::{
    lifecycle::Rejection,
    model::{Event, EventType},
};
use assent_engine::EngineHandle;
use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::sync::broadcast;

use crate::{AppState, auth::Scope, error::ApiError};

/// The finalize backlog gauge counts at most this many due cards per scrape.
const FINALIZE_BACKLOG_CAP: usize = 10_000;

/// Counters fed by the engine's event feed.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    outcomes: BTreeMap<(String, String, String), u64>,
    delivery_failures: BTreeMap<String, u64>,
    requests: u64,
}

impl Metrics {
    /// Starts counting events from now on.
    pub(crate) fn start(engine: &EngineHandle) -> Arc<Self> {
        let metrics = Arc::new(Self::default());
        let mut rx = engine.subscribe();
        let m = metrics.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => m.count(&e),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        metrics
    }

    fn count(&self, e: &Event) {
        let mut c = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = |v: &serde_json::Value| v.as_str().unwrap_or("none").to_owned();
        let kind = e.approval_kind.map_or("none", |k| k.as_str()).to_owned();
        match e.kind {
            EventType::Requested => c.requests += 1,
            EventType::Approved | EventType::Denied | EventType::Expired | EventType::Cancelled => {
                let key = (kind, label(&e.data["status"]), label(&e.data["reason"]));
                *c.outcomes.entry(key).or_default() += 1;
            }
            EventType::DeliveryFailed => {
                *c.delivery_failures.entry(label(&e.data["account"])).or_default() += 1;
            }
            _ => {}
        }
    }
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format; loopback callers need no token, others a `metrics` or `admin` token"),
              (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn render(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let token_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| state.authenticate(t.trim()))
        .is_some_and(|p| p.has(Scope::Metrics) || p.has(Scope::Admin));
    if !peer.ip().is_loopback() && !token_ok {
        return ApiError::forbidden("/metrics is served to loopback callers or a `metrics` token")
            .into_response();
    }
    let stats = state.engine.stats();
    let backlog = state
        .engine
        .store()
        .finalize_due(state.engine.now(), FINALIZE_BACKLOG_CAP)
        .await
        .map_or(0, |due| due.len());
    let mut out = String::new();
    let _ = writeln!(out, "# HELP assent_pending Pending approvals.\n# TYPE assent_pending gauge");
    let _ = writeln!(out, "assent_pending {}", stats.pending);
    let _ = writeln!(
        out,
        "# HELP assent_finalize_backlog Cards waiting to be finalized (capped at {FINALIZE_BACKLOG_CAP}).\n\
         # TYPE assent_finalize_backlog gauge\nassent_finalize_backlog {backlog}"
    );
    let _ = writeln!(
        out,
        "# HELP assent_callback_failures_total Failed callback attempts (retried).\n\
         # TYPE assent_callback_failures_total counter\nassent_callback_failures_total {}",
        stats.callback_failures
    );
    let _ = writeln!(
        out,
        "# HELP assent_callbacks_given_up_total Callbacks abandoned after their last attempt.\n\
         # TYPE assent_callbacks_given_up_total counter\nassent_callbacks_given_up_total {}",
        stats.callbacks_given_up
    );
    let _ = writeln!(
        out,
        "# HELP assent_interactions_total Presses, reactions, typed commands and API decisions, \
         by precheck result (`accepted` or the rejection code).\n# TYPE assent_interactions_total counter"
    );
    let _ = writeln!(out, "assent_interactions_total{{result=\"accepted\"}} {}", stats.interactions_accepted);
    for (code, n) in Rejection::CODES.iter().zip(stats.interactions_refused) {
        let _ = writeln!(out, "assent_interactions_total{{result=\"{code}\"}} {n}");
    }
    let c = state.metrics.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = writeln!(
        out,
        "# HELP assent_requests_total Approvals requested.\n# TYPE assent_requests_total counter"
    );
    let _ = writeln!(out, "assent_requests_total {}", c.requests);
    let _ = writeln!(
        out,
        "# HELP assent_outcomes_total Terminal outcomes.\n# TYPE assent_outcomes_total counter"
    );
    for ((kind, status, reason), n) in &c.outcomes {
        let _ = writeln!(
            out,
            "assent_outcomes_total{{kind=\"{kind}\",status=\"{status}\",reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP assent_delivery_failures_total Failed card deliveries.\n# TYPE assent_delivery_failures_total counter"
    );
    for (account, n) in &c.delivery_failures {
        let _ = writeln!(out, "assent_delivery_failures_total{{account=\"{account}\"}} {n}");
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
