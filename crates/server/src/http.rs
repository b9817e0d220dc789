//! The router and the `/v1` API handlers (API-1..API-3).

use std::time::Duration;

use assent_core::{
    clock::Timestamp,
    id::{ApprovalId, GrantId},
    model::{Action, Actor, Decision, ExecRequest, Kind, NewApproval, Origin, PluginRequest, Status},
    policy::{GrantScope, grant_scope_text, grant_subject},
    store::{ApprovalFilter, AuditFilter},
    text::sanitize,
};
use assent_engine::{ApprovalRef, Authority, EngineError, Interaction};
use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

use crate::{
    AppState, auth::Principal, auth::Scope, console, error::ApiError, error::ErrorBody, events, metrics,
    views::ApprovalView,
};

/// API-3: bodies over 64 KiB are refused with `payload_too_large`.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Longest `?wait=` / `?timeout=` long poll.
const MAX_WAIT_SECS: u64 = 300;
/// Longest listing page.
const MAX_LIMIT: usize = 500;

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/approvals", post(create).get(list))
        .route("/approvals/{reference}", get(show))
        .route("/approvals/{reference}/wait", get(wait))
        .route("/approvals/{reference}/resolve", post(resolve))
        .route("/approvals/{reference}/cancel", post(cancel))
        .route("/approvals/{reference}/consume", post(consume))
        .route("/events", get(events::sse))
        .route("/events/ws", get(events::ws))
        .route(
            "/bindings",
            post(crate::bindings::request).get(crate::bindings::show).delete(crate::bindings::detach),
        )
        .route("/grants", get(grants))
        .route("/grants/{id}", delete(revoke_grant))
        .route("/audit", get(audit))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(crate::openapi::serve))
        .fallback(|| async { ApiError::not_found("endpoint") });
    Router::new()
        .nest("/v1", api)
        .route("/metrics", get(metrics::render))
        .merge(console::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The authenticated caller of an API request: a bearer token, or a console session cookie
/// (writes through the cookie also need the CSRF header, CH-WEB-2).
pub(crate) struct Caller(pub(crate) Principal, pub(crate) Via);

/// How the caller authenticated: decisions through the console are recorded as `console:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `Authorization: Bearer`.
    Token,
    /// A console session cookie.
    Console,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let peer = peer_ip(parts);
            let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
            return match token.and_then(|t| state.authenticate(t)) {
                // A known token always passes: the limit slows guessing, it must not lock out
                // the legitimate clients that share the guesser's address (NF-12).
                Some(p) => Ok(Caller(p, Via::Token)),
                None => {
                    state.auth_failures.check(peer).map_err(ApiError::rate_limited)?;
                    state.auth_failures.fail(peer);
                    Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "the bearer token is not known to this server",
                    ))
                }
            };
        }
        match console::session_of(parts, state) {
            Some(session) => {
                // Reads too: the event stream and its WebSocket carry every approval.
                if !state.console_origins.allows(&parts.headers) {
                    return Err(ApiError::forbidden(
                        "console requests must come from the console's own origin (scheme, host and port)",
                    ));
                }
                if !parts.method.is_safe() && !console::csrf_ok(parts, &session) {
                    return Err(ApiError::forbidden("console writes need the X-Assent-CSRF header"));
                }
                Ok(Caller(session.principal, Via::Console))
            }
            None => Err(ApiError::unauthenticated()),
        }
    }
}

/// The client's address (loopback when unknown, e.g. in-process calls).
pub(crate) fn peer_ip(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

impl Caller {
    pub(crate) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs a token with the `{scope:?}` scope").to_lowercase()))
        }
    }

    /// A `request`-only token sees its own approvals only (API-1).
    fn sees_all(&self) -> bool {
        self.0.has(Scope::Approve)
    }

    pub(crate) fn actor(&self) -> Actor {
        match self.1 {
            Via::Token => Actor::token(self.0.name.clone()),
            Via::Console => Actor::console(self.0.name.clone()),
        }
    }
}

/// JSON body with API-3 errors instead of axum's plain-text rejections.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is over 64 KiB"),
            ),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::invalid("send the body as JSON with `Content-Type: application/json`"))
            }
            Err(e) => Err(ApiError::invalid(format!("invalid JSON body: {}", e.body_text()))),
        }
    }
}

/// Query string with API-3 errors.
pub(crate) struct Params<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::invalid(format!("invalid query string: {}", e.body_text())))
            }
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// `POST /v1/approvals` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    kind: Kind,
    #[serde(default)]
    exec: Option<ExecRequest>,
    #[serde(default)]
    plugin: Option<PluginRequest>,
    /// Seconds.
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    origin: Option<Origin>,
    /// Webhook URL told about the outcome (API-5).
    #[serde(default)]
    callback: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitParams {
    /// Seconds to wait for a decision before answering (≤ 300).
    #[serde(default)]
    wait: Option<u64>,
    /// Same as `wait` (the name `…/wait` uses).
    #[serde(default)]
    timeout: Option<u64>,
}

impl WaitParams {
    fn seconds(&self) -> Result<Option<u64>, ApiError> {
        match self.wait.or(self.timeout) {
            Some(s) if s > MAX_WAIT_SECS => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "timeout_out_of_range",
                format!("wait at most {MAX_WAIT_SECS} seconds per request, then ask again"),
            )),
            other => Ok(other),
        }
    }
}

impl CreateBody {
    fn into_request(self, requester: String) -> Result<NewApproval, ApiError> {
        let action = match (self.kind, self.exec, self.plugin) {
            (Kind::Exec, Some(exec), None) => Action::Exec(exec.into_action().map_err(EngineError::from)?),
            (Kind::Plugin, None, Some(plugin)) => {
                plugin.validate().map_err(EngineError::from)?;
                Action::Plugin(plugin)
            }
            (Kind::Binding, ..) => {
                return Err(ApiError::invalid("binding approvals are requested with POST /v1/bindings"));
            }
            (kind, ..) => {
                return Err(ApiError::invalid(format!(
                    "a `{}` request needs exactly the `{}` object",
                    kind.as_str(),
                    kind.as_str()
                )));
            }
        };
        let mut req = NewApproval::new(action, requester);
        req.timeout = self.timeout.map(Duration::from_secs);
        req.agent_id = self.agent_id;
        req.session_key = self.session_key;
        req.idempotency_key = self.idempotency_key;
        req.origin = self.origin;
        req.callback = self.callback;
        Ok(req)
    }
}

fn view(state: &AppState, a: &assent_core::model::Approval) -> ApprovalView {
    ApprovalView::new(a, &state.keyring, &state.redactor, now())
}

/// The view plus where its cards went, for a requester waiting on it.
async fn routed_view(state: &AppState, a: &assent_core::model::Approval) -> ApprovalView {
    let mut v = view(state, a);
    let entries = state.engine.store().entries(&a.id).await.unwrap_or_default();
    for e in entries {
        let label = format!("{} ({})", e.channel.label(), e.account);
        if !v.routes.contains(&label) {
            v.routes.push(label);
        }
    }
    if a.status == Status::Pending && state.engine.console_is_route() {
        v.routes.push("web console".to_owned());
    }
    v
}

pub(crate) fn now() -> Timestamp {
    assent_core::clock::Clock::now(&assent_engine::SystemClock)
}

#[utoipa::path(post, path = "/v1/approvals", tag = "approvals", params(WaitParams), request_body = CreateBody, responses((status = 201, description = "Created (possibly already decided: no route, a grant)", body = ApprovalView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Params(params): Params<WaitParams>,
    Body(body): Body<CreateBody>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Request)?;
    let wait = params.seconds()?;
    let req = body.into_request(caller.0.id())?;
    let mut a = state.engine.create(req).await?;
    if let Some(secs) = wait
        && !a.status.is_terminal()
    {
        a = state.engine.wait(&a.id, Duration::from_secs(secs)).await?;
    }
    Ok((StatusCode::CREATED, Json(routed_view(&state, &a).await)).into_response())
}

/// API-2: a full id, or a unique prefix of at least 8 characters among pending approvals.
pub(crate) fn resolve_ref(state: &AppState, reference: &str) -> Result<ApprovalId, ApiError> {
    state.engine.resolve_ref(reference).map_err(|e| match e {
        EngineError::NotFound => unknown_ref(reference),
        other => other.into(),
    })
}

fn unknown_ref(reference: &str) -> ApiError {
    ApiError::not_found("approval").with_message(format!(
        "no pending approval starts with `{reference}`; a decided one needs its full id"
    ))
}

/// Finds an approval by ref (API-2) that the caller may see.
async fn find(
    state: &AppState,
    caller: &Caller,
    reference: &str,
) -> Result<assent_core::model::Approval, ApiError> {
    // A request token sees only its own approvals, and learns nothing of others': every miss,
    // ambiguity or approval of someone else answers exactly alike (issue 9, finding 15).
    let hide = |e: ApiError| if caller.sees_all() { e } else { unknown_ref(reference) };
    let id = resolve_ref(state, reference).map_err(hide)?;
    let a = state.engine.approval(&id).await?.ok_or_else(|| unknown_ref(reference))?;
    if !caller.sees_all() && a.requester.principal != caller.0.id() {
        return Err(unknown_ref(reference));
    }
    Ok(a)
}

#[utoipa::path(get, path = "/v1/approvals/{reference}", tag = "approvals", params(("reference" = String, Path, description = "Full id, or a unique 8+ character prefix of a pending approval")), responses((status = 200, body = ApprovalView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let a = find(&state, &caller, &reference).await?;
    Ok(Json(routed_view(&state, &a).await))
}

#[utoipa::path(get, path = "/v1/approvals/{reference}/wait", tag = "approvals", params(("reference" = String, Path), WaitParams), responses((status = 200, description = "Decided, or still pending when the wait ran out", body = ApprovalView), (status = 404, body = ErrorBody)))]
pub(crate) async fn wait(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Params(params): Params<WaitParams>,
) -> Result<Json<ApprovalView>, ApiError> {
    let secs = params.seconds()?.unwrap_or(30);
    // Boxed steps: a long poll sits in `wait` for minutes, and an unboxed store read before or
    // after it would make every idle waiter's future as large as that read.
    let a = Box::pin(find(&state, &caller, &reference)).await?;
    let a = Box::pin(state.engine.wait(&a.id, Duration::from_secs(secs))).await?;
    Ok(Json(Box::pin(routed_view(&state, &a)).await))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Only this status.
    status: Option<Status>,
    /// Only this kind.
    kind: Option<Kind>,
    /// Created at or after, in milliseconds since the epoch.
    since: Option<i64>,
    /// At most this many (default 100, ≤ 500).
    limit: Option<usize>,
    /// The `next` cursor of the previous page: continue with older approvals.
    before: Option<String>,
}

/// A page of results.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    items: Vec<T>,
    /// Present when more items may follow: pass it as `before` to get the next (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

impl<T> Page<T> {
    /// A page that is the whole result.
    pub(crate) fn all(items: Vec<T>) -> Self {
        Self { items, next: None }
    }
}

/// The `before` cursor of an approval listing: `<created_at ms>.<id>`.
fn list_cursor(a: &assent_core::model::Approval) -> String {
    format!("{}.{}", a.created_at.0, a.id)
}

fn parse_list_cursor(cursor: &str) -> Result<(Timestamp, ApprovalId), ApiError> {
    let bad =
        || ApiError::invalid(format!("before: `{cursor}` is not a cursor from a previous page's `next`"));
    let (ms, id) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((Timestamp(ms.parse().map_err(|_| bad())?), ApprovalId::parse(id).map_err(|_| bad())?))
}

#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ListParams), responses((status = 200, body = Page<ApprovalView>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Params(p): Params<ListParams>,
) -> Result<Json<Page<ApprovalView>>, ApiError> {
    let filter = ApprovalFilter {
        status: p.status,
        kind: p.kind,
        requester: (!caller.sees_all()).then(|| caller.0.id()),
        since: p.since.map(Timestamp),
        before: p.before.as_deref().map(parse_list_cursor).transpose()?,
        limit: p.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
    };
    let items = state.engine.store().approvals(&filter).await?;
    let next = items.last().filter(|_| items.len() == filter.limit).map(list_cursor);
    Ok(Json(Page { items: items.iter().map(|a| view(&state, a)).collect(), next }))
}

/// `POST …/resolve` body (`kind` is required so a stale client cannot decide the wrong thing).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    pub(crate) kind: Kind,
    pub(crate) decision: Decision,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) grant_scope: Option<GrantScope>,
}

#[utoipa::path(post, path = "/v1/approvals/{reference}/resolve", tag = "approvals", params(("reference" = String, Path)), request_body = ResolveBody, responses((status = 200, body = ApprovalView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn resolve(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(body): Body<ResolveBody>,
) -> Result<Json<ApprovalView>, ApiError> {
    caller.require(Scope::Approve)?;
    let a = decide(&state, &reference, caller.actor(), body).await?;
    Ok(Json(view(&state, &a)))
}

/// Prechecks and resolves one decision by an approver the server authenticated.
pub(crate) async fn decide(
    state: &AppState,
    reference: &str,
    actor: Actor,
    body: ResolveBody,
) -> Result<assent_core::model::Approval, ApiError> {
    let id = resolve_ref(state, reference)?;
    let current = state.engine.approval(&id).await?.ok_or_else(|| ApiError::not_found("approval"))?;
    if current.kind() != body.kind {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind_mismatch",
            format!(
                "approval {} is a {} approval, not {}",
                current.short_ref(),
                current.kind().as_str(),
                body.kind.as_str()
            ),
        ));
    }
    let ix = Interaction {
        approval: ApprovalRef::Id(id),
        kind: Some(body.kind),
        decision: body.decision,
        actor,
        authority: Authority::Approver,
        reason: body.reason,
        grant_scope: body.grant_scope,
    };
    let accepted = state.engine.precheck(&ix)?;
    let resolution = state.engine.resolve(accepted).await?;
    Ok(resolution.approval)
}

#[utoipa::path(post, path = "/v1/approvals/{reference}/cancel", tag = "approvals", params(("reference" = String, Path)), responses((status = 200, body = ApprovalView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let a = find(&state, &caller, &reference).await?;
    let actor = Actor { principal: caller.0.id(), ..caller.actor() };
    let a = state.engine.cancel(&a.id, &actor, caller.0.has(Scope::Admin)).await?;
    Ok(Json(view(&state, &a)))
}

#[utoipa::path(post, path = "/v1/approvals/{reference}/consume", tag = "approvals", params(("reference" = String, Path)), responses((status = 200, body = ApprovalView), (status = 409, body = ErrorBody)))]
pub(crate) async fn consume(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let a = find(&state, &caller, &reference).await?;
    let a = state.engine.consume(&a.id, &caller.0.id()).await?;
    Ok(Json(view(&state, &a)))
}

/// An active grant.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct GrantView {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) subject: String,
    /// Everything the grant compares, in words (PO-3, PO-12).
    pub(crate) scope: String,
    source: serde_json::Value,
    approval_id: Option<String>,
    created_by: String,
    created_at: Timestamp,
    last_used_at: Option<Timestamp>,
    pub(crate) use_count: u64,
    /// Not valid after this time (a `ttl:` scope).
    expires_at: Option<Timestamp>,
    /// Only for this agent session (a `session` scope).
    session_key: Option<String>,
}

pub(crate) fn grant_views(state: &AppState, grants: &[assent_core::model::Grant]) -> Vec<GrantView> {
    grants
        .iter()
        .filter(|g| g.revoked_at.is_none())
        .map(|g| GrantView {
            id: g.id.to_string(),
            kind: g.kind,
            // Redacted, then control and invisible characters escaped: a subject is an argv
            // that anyone with a request token chose (issue 9, finding 7).
            subject: sanitize(&state.redactor.redact(&grant_subject(g)).text, false),
            scope: sanitize(&state.redactor.redact(&grant_scope_text(g)).text, false),
            source: serde_json::to_value(g.source).unwrap_or_default(),
            approval_id: g.approval_id.as_ref().map(ToString::to_string),
            created_by: g.created_by.clone(),
            created_at: g.created_at,
            last_used_at: g.last_used_at,
            use_count: g.use_count,
            expires_at: g.constraints.expires_at,
            session_key: g.constraints.session_key.clone(),
        })
        .collect()
}

#[utoipa::path(get, path = "/v1/grants", tag = "grants", responses((status = 200, body = Page<GrantView>), (status = 403, body = ErrorBody)))]
pub(crate) async fn grants(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
) -> Result<Json<Page<GrantView>>, ApiError> {
    caller.require(Scope::Approve)?;
    let all = state.engine.grants().await?;
    Ok(Json(Page::all(grant_views(&state, &all))))
}

#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "grants", params(("id" = String, Path)), responses((status = 200, description = "Revoked"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_grant(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let id = GrantId::parse(&id).map_err(|_| ApiError::not_found("grant"))?;
    let g = state.engine.revoke_grant(&id, &caller.actor()).await?;
    Ok(Json(json!({ "id": g.id.to_string(), "revoked_at": g.revoked_at })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Only entries about this approval (id or ref).
    approval: Option<String>,
    /// Entries after this seq.
    after: Option<u64>,
    /// At most this many (default 100, ≤ 500).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams), responses((status = 200, body = Page<assent_core::model::AuditEntry>), (status = 403, body = ErrorBody)))]
pub(crate) async fn audit(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Params(p): Params<AuditParams>,
) -> Result<Json<Page<assent_core::model::AuditEntry>>, ApiError> {
    caller.require(Scope::Admin)?;
    let approval_id = match p.approval {
        Some(r) => Some(resolve_ref(&state, &r)?),
        None => None,
    };
    let filter = AuditFilter {
        approval_id,
        after_seq: p.after.unwrap_or(0),
        limit: p.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
    };
    let mut items = state.engine.store().audit(&filter).await?;
    for entry in &mut items {
        crate::views::redact_json(&state.redactor, &mut entry.details);
    }
    Ok(Json(Page::all(items)))
}

#[utoipa::path(get, path = "/v1/health", tag = "operations", responses((status = 200, description = "The process is up")))]
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/v1/ready", tag = "operations", responses((status = 200, description = "Store reachable; pending count, console route and accounts"), (status = 503, description = "Not ready")))]
pub(crate) async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let store_ok = state.engine.latest_event_seq().await.is_ok();
    let accounts: Vec<_> = state
        .engine
        .accounts()
        .iter()
        .map(|a| json!({ "account": a.key.to_string(), "active": a.active, "approvers": a.approvers }))
        .collect();
    let body = json!({
        "status": if store_ok { "ready" } else { "not_ready" },
        "store": store_ok,
        "pending": state.engine.pending_count(),
        "console_is_route": state.engine.console_is_route(),
        "accounts": accounts,
    });
    let status = if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
