//! The `/v1/approvals` handlers (API-1..API-3), and `/v1/audit`, `/v1/health`, `/v1/ready`.

use std::time::Duration;

use assent_core::{
    clock::Timestamp,
    id::ApprovalId,
    model::{
        Action, Actor, Approval, Decision, ExecRequest, Kind, NewApproval, Origin, PluginRequest, Reason,
        Status,
    },
    policy::GrantScope,
    store::{ApprovalFilter, AuditFilter},
};
use assent_engine::{ApprovalRef, Authority, EngineError, Interaction};
use axum::{
    Json,
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::extract::{Body, Caller, Params};
use crate::{
    AppState,
    auth::Scope,
    error::{ApiError, ErrorBody},
    views::{ApprovalView, Page},
};

/// Longest `?wait=` / `?timeout=` long poll.
const MAX_WAIT_SECS: u64 = 300;
/// Longest listing page.
const MAX_LIMIT: usize = 500;

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
    fn into_request(self, requester: String, ignore_env: &[String]) -> Result<NewApproval, ApiError> {
        let action = match (self.kind, self.exec, self.plugin) {
            (Kind::Exec, Some(exec), None) => {
                Action::Exec(exec.into_action_ignoring(ignore_env).map_err(EngineError::from)?)
            }
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

/// A `POST /v1/approvals` body as the API reads it: JSON, then the request's own validation
/// (API-3). The error is the message the API would answer with.
pub fn parse_create_body(body: &[u8], requester: &str) -> Result<NewApproval, String> {
    let parsed: CreateBody = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let req = parsed.into_request(requester.to_owned(), &[]).map_err(|e| e.message)?;
    req.validate().map_err(|e| e.to_string())?;
    Ok(req)
}

fn view(state: &AppState, a: &Approval) -> ApprovalView {
    ApprovalView::new(a, &state.keyring, &state.redactor, state.engine.now())
}

/// The view plus where its cards went, for a requester waiting on it.
async fn routed_view(state: &AppState, a: &Approval) -> ApprovalView {
    let mut v = view(state, a);
    // A grant answers at creation, so its approval never had a card: skip the read (the hot
    // path of most requests).
    if a.reason == Some(Reason::Grant) {
        return v;
    }
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

#[utoipa::path(post, path = "/v1/approvals", tag = "approvals", params(WaitParams), request_body = CreateBody, responses((status = 201, description = "Created (possibly already decided: no route, a grant)", body = ApprovalView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Params(params): Params<WaitParams>,
    Body(body): Body<CreateBody>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Request)?;
    let wait = params.seconds()?;
    let req = body.into_request(caller.0.id(), &state.ignore_env)?;
    // With `?wait=` this is a long poll: see `wait_then_view`.
    let a = Box::pin(state.engine.create(req)).await?;
    let view = match wait {
        Some(secs) if !a.status.is_terminal() => {
            let id = a.id.clone();
            drop(a);
            wait_then_view(&state, id, secs).await?
        }
        _ => Box::pin(owned_view(&state, a)).await,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Waits up to `secs` for a decision, then the routed view. A long poll holds its future for
/// minutes, and 10,000 of them are a budget (NF, waiters ≤ 200 MiB), so across the wait it
/// keeps only the state, the id and the wait itself: every read before or after runs boxed,
/// and no `Approval` (816 bytes) is held while waiting.
async fn wait_then_view(state: &AppState, id: ApprovalId, secs: u64) -> Result<ApprovalView, ApiError> {
    let decided = state.engine.wait(&id, Duration::from_secs(secs)).await?;
    Ok(Box::pin(owned_view(state, decided)).await)
}

async fn owned_view(state: &AppState, a: Approval) -> ApprovalView {
    routed_view(state, &a).await
}

/// API-2: a full id, or a unique prefix of at least 8 characters (pending approvals first,
/// then decided ones).
pub(crate) async fn resolve_ref(state: &AppState, reference: &str) -> Result<ApprovalId, ApiError> {
    state.engine.resolve_any_ref(reference).await.map_err(|e| match e {
        EngineError::NotFound => unknown_ref(reference),
        other => other.into(),
    })
}

fn unknown_ref(reference: &str) -> ApiError {
    ApiError::not_found("approval").with_message(format!("no approval starts with `{reference}`"))
}

/// Finds an approval by ref (API-2) that the caller may see.
async fn find(
    state: &AppState,
    caller: &Caller,
    reference: &str,
) -> Result<assent_core::model::Approval, ApiError> {
    caller.require_reader()?;
    // A request token sees only its own approvals, and learns nothing of others': every miss,
    // ambiguity or approval of someone else answers exactly alike (issue 9, finding 15).
    let hide = |e: ApiError| if caller.sees_all() { e } else { unknown_ref(reference) };
    let id = resolve_ref(state, reference).await.map_err(hide)?;
    let a = state.engine.approval(&id).await?.ok_or_else(|| unknown_ref(reference))?;
    if !caller.sees_all() && a.requester.principal != caller.0.id() {
        return Err(unknown_ref(reference));
    }
    Ok(a)
}

#[utoipa::path(get, path = "/v1/approvals/{reference}", tag = "approvals", params(("reference" = String, Path, description = "Full id, or a unique 8+ character prefix (pending approvals first, then decided ones)")), responses((status = 200, body = ApprovalView), (status = 404, body = ErrorBody)))]
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
    let id = Box::pin(find(&state, &caller, &reference)).await?.id;
    Ok(Json(wait_then_view(&state, id, secs).await?))
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
    caller.require_reader()?;
    let filter = ApprovalFilter {
        status: p.status,
        kind: p.kind,
        requester: (!caller.sees_all()).then(|| caller.0.id()),
        since: p.since.map(Timestamp),
        before: p.before.as_deref().map(parse_list_cursor).transpose()?,
        limit: p.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
        id_prefix: None,
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
    let id = resolve_ref(state, reference).await?;
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
    let reason = body.reason.clone();
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
    // A retry is idempotent, but a repeat that brings a new deny reason must not look recorded
    // when the first one stands (issue 9, finding 17).
    let a = &resolution.approval;
    let new_reason = reason.map(|r| assent_core::text::DisplayText::new(&r, &state.redactor, false).full);
    if resolution.idempotent
        && body.decision == Decision::Deny
        && new_reason.is_some()
        && new_reason != a.deny_reason
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_recorded",
            "your deny is already recorded with its first reason; a reason cannot be changed afterwards",
        ));
    }
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
        Some(r) => Some(resolve_ref(&state, &r).await?),
        None => None,
    };
    let filter = AuditFilter {
        approval_id,
        after_seq: p.after.unwrap_or(0),
        limit: p.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
        ..AuditFilter::default()
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

#[utoipa::path(get, path = "/v1/ready", tag = "operations", responses((status = 200, description = "Store reachable and writable; pending count, console route and accounts"), (status = 503, description = "Not ready: the store does not answer, or cannot write")))]
pub(crate) async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let store_ok = state.engine.store_ready().await.is_ok();
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
