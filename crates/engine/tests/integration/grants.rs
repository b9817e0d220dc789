//! Grants fail closed (issue 9, findings 1, 2 and 13): an allow-always grant covers exactly
//! the request it was made for, and a scope that cannot be honoured is refused.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use assent_core::{
    id::GrantId,
    memory::MemoryStore,
    model::{Action, Actor, Approval, Decision, ExecRequest, Grant, GrantSource, Kind, NewApproval, Status},
    policy::{GrantScope, ScopeBase},
    store::{ApprovalWrite, Commit, StoreError},
};
use assent_engine::{ApprovalRef, Authority, Interaction, ResolveError};
use assent_testing::{HookedStore, StoreHook, TestBed, test_config};
use async_trait::async_trait;
use tokio::sync::watch;

use crate::{telegram, until};

fn make_install() -> ExecRequest {
    ExecRequest {
        argv: vec!["make".into(), "install".into()],
        host: "build-1".into(),
        ..ExecRequest::default()
    }
}

fn request(exec: ExecRequest) -> NewApproval {
    NewApproval::new(Action::Exec(exec.into_action().unwrap()), "token:req")
}

/// Decides allow-always as an API approver, with an optional explicit scope.
async fn allow_always(
    bed: &TestBed,
    id: &assent_core::id::ApprovalId,
    scope: Option<GrantScope>,
) -> Result<(), ResolveError> {
    let ix = Interaction {
        approval: ApprovalRef::Id(id.clone()),
        kind: Some(Kind::Exec),
        decision: Decision::AllowAlways,
        actor: Actor::console("admin"),
        authority: Authority::Approver,
        reason: None,
        grant_scope: scope,
    };
    let accepted = bed.handle.precheck(&ix).unwrap();
    bed.handle.resolve(accepted).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_an_exact_grant_covers_only_the_same_executable_cwd_host_and_env() {
    let bed = TestBed::new(&[telegram()]).await;
    let a = bed.handle.create(request(make_install())).await.unwrap();
    allow_always(&bed, &a.id, None).await.unwrap();

    let same = bed.handle.create(request(make_install())).await.unwrap();
    assert_eq!(same.status, Status::Approved, "the exact request is covered");

    let preload = ExecRequest {
        env: BTreeMap::from([("LD_PRELOAD".to_owned(), "/tmp/evil.so".to_owned())]),
        ..make_install()
    };
    let elsewhere = ExecRequest { executable: Some("/tmp/evil/make".into()), ..make_install() };
    let other_cwd = ExecRequest { cwd: Some("/tmp".into()), ..make_install() };
    let other_host = ExecRequest { host: "build-2".into(), ..make_install() };
    for (what, variant) in
        [("env", preload), ("executable", elsewhere), ("cwd", other_cwd), ("host", other_host)]
    {
        let b = bed.handle.create(request(variant)).await.unwrap();
        assert_eq!(b.status, Status::Pending, "another {what} must ask a human");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_a_grant_with_an_environment_needs_the_same_values() {
    let bed = TestBed::new(&[telegram()]).await;
    let with_env = |v: &str| ExecRequest {
        env: BTreeMap::from([("PROFILE".to_owned(), v.to_owned())]),
        ..make_install()
    };
    let a = bed.handle.create(request(with_env("dev"))).await.unwrap();
    allow_always(&bed, &a.id, None).await.unwrap();
    assert_eq!(bed.handle.create(request(with_env("dev"))).await.unwrap().status, Status::Approved);
    assert_eq!(bed.handle.create(request(with_env("prod"))).await.unwrap().status, Status::Pending);
    let none = bed.handle.create(request(make_install())).await.unwrap();
    assert_eq!(none.status, Status::Pending, "no environment is not the granted environment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_session_scope_without_a_session_is_refused_not_global() {
    let bed = TestBed::new(&[telegram()]).await;
    let a = bed.handle.create(request(make_install())).await.unwrap();
    let session = GrantScope { base: ScopeBase::ExactArgv, session: true, ttl_secs: None };
    let err = allow_always(&bed, &a.id, Some(session)).await.unwrap_err();
    assert!(err.to_string().contains("session"), "{err}");
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
    assert!(bed.handle.grants().await.unwrap().is_empty());

    let mut other = request(make_install());
    other.session_key = Some("someone-else".into());
    assert_eq!(bed.handle.create(other).await.unwrap().status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_session_grant_pins_session_and_agent() {
    let bed = TestBed::new(&[telegram()]).await;
    let in_session = |agent: Option<&str>, session: &str| {
        let mut r = request(make_install());
        r.agent_id = agent.map(str::to_owned);
        r.session_key = Some(session.to_owned());
        r
    };
    let a = bed.handle.create(in_session(None, "s1")).await.unwrap();
    let session = GrantScope { base: ScopeBase::ExactArgv, session: true, ttl_secs: None };
    allow_always(&bed, &a.id, Some(session)).await.unwrap();
    assert_eq!(bed.handle.create(in_session(None, "s1")).await.unwrap().status, Status::Approved);
    assert_eq!(bed.handle.create(in_session(None, "s2")).await.unwrap().status, Status::Pending);
    let agent = bed.handle.create(in_session(Some("intruder"), "s1")).await.unwrap();
    assert_eq!(agent.status, Status::Pending, "no agent is not any agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_13_scopes_are_checked_strictly_as_grant_scope_errors() {
    let bed = TestBed::new(&[telegram()]).await;
    let a = bed.handle.create(request(make_install())).await.unwrap();
    let pattern =
        GrantScope { base: ScopeBase::Pattern { args: vec!["**".into()] }, session: false, ttl_secs: None };
    let binding = GrantScope { base: ScopeBase::BindingAccount, session: false, ttl_secs: None };
    let ttl = |t| GrantScope { ttl_secs: Some(t), ..GrantScope::exact() };
    for (what, scope, expect) in [
        ("pattern not in the rule", pattern, "pattern"),
        ("binding scope on exec", binding, "binding-account"),
        ("ttl 0", ttl(0), "ttl"),
        ("ttl 2^64-1", ttl(u64::MAX), "ttl"),
    ] {
        let err = allow_always(&bed, &a.id, Some(scope)).await.unwrap_err();
        assert!(err.to_string().contains(expect), "{what}: {err}");
        assert!(
            !err.to_string().contains("isn't available"),
            "{what} is a scope error, not a decision error"
        );
    }
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
    allow_always(&bed, &a.id, Some(ttl(3600))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn po_3_variables_the_operator_ignores_do_not_count_the_others_do() {
    let bed = TestBed::new(&[telegram()]).await;
    let ignore = ["TERM".to_owned()];
    let with_env = |pairs: &[(&str, &str)]| {
        let exec = ExecRequest {
            env: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..make_install()
        };
        NewApproval::new(Action::Exec(exec.into_action_ignoring(&ignore).unwrap()), "token:req")
    };
    let a = bed.handle.create(with_env(&[("TERM", "xterm"), ("PROFILE", "dev")])).await.unwrap();
    allow_always(&bed, &a.id, None).await.unwrap();
    let status = |pairs: &'static [(&'static str, &'static str)]| {
        let req = with_env(pairs);
        let handle = bed.handle.clone();
        async move { handle.create(req).await.unwrap().status }
    };
    assert_eq!(status(&[("TERM", "vt100"), ("PROFILE", "dev")]).await, Status::Approved);
    assert_eq!(status(&[("PROFILE", "dev")]).await, Status::Approved, "an ignored variable may be absent");
    assert_eq!(status(&[("TERM", "xterm"), ("PROFILE", "prod")]).await, Status::Pending);
    assert_eq!(status(&[("TERM", "xterm")]).await, Status::Pending, "a significant one missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn po_7_the_card_says_when_ignored_variables_do_not_count() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let exec =
        ExecRequest { env: BTreeMap::from([("TERM".to_owned(), "xterm".to_owned())]), ..make_install() };
    let action = Action::Exec(exec.into_action_ignoring(&["TERM".to_owned()]).unwrap());
    let a = bed.handle.create(NewApproval::new(action, "token:req")).await.unwrap();
    let card = crate::card(&fake, &a.id).await;
    let covers = card.payload.body.lines().find(|l| l.starts_with("Allow always covers"));
    assert!(covers.is_some_and(|l| l.contains("ignore_env")), "{}", card.payload.body);
}

/// Holds every grant hit's commit (an approval born approved by a grant) until the test lets go,
/// so the test can act between the hit's read of the grants and its write.
struct HoldGrantHits {
    arrived: AtomicUsize,
    open: watch::Sender<bool>,
}

#[async_trait]
impl StoreHook for HoldGrantHits {
    async fn on_commit(&self, c: &Commit) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        if let Some(ApprovalWrite::Insert { approval, .. }) = &c.approval
            && approval.grant_id.is_some()
        {
            let mut open = self.open.subscribe();
            self.arrived.fetch_add(1, Ordering::SeqCst);
            let _ = open.wait_for(|open| *open).await;
        }
        Ok(None)
    }
}

/// A bed whose grant hits wait at the store, and the stored grant made for `make install`.
async fn held_bed() -> (TestBed, Arc<HookedStore<HoldGrantHits>>, Grant) {
    let hook = HoldGrantHits { arrived: AtomicUsize::new(0), open: watch::channel(false).0 };
    let store = Arc::new(HookedStore::new(Arc::new(MemoryStore::new()), hook));
    let bed = TestBed::with(store.clone(), test_config(), &[telegram()]).await;
    let a = bed.handle.create(request(make_install())).await.unwrap();
    allow_always(&bed, &a.id, None).await.unwrap();
    let grant = stored_grant(&bed, None).await;
    (bed, store, grant)
}

async fn stored_grant(bed: &TestBed, id: Option<&GrantId>) -> Grant {
    let grants = bed.handle.grants().await.unwrap();
    grants
        .into_iter()
        .find(|g| g.source == GrantSource::AllowAlways && id.is_none_or(|id| &g.id == id))
        .unwrap()
}

fn spawn_hit(bed: &TestBed) -> tokio::task::JoinHandle<Approval> {
    let handle = bed.handle.clone();
    tokio::spawn(async move { handle.create(request(make_install())).await.unwrap() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn po_12_a_revocation_between_a_hit_reading_the_grant_and_writing_it_stands() {
    let (bed, store, grant) = held_bed().await;
    let hit = spawn_hit(&bed);
    until("the hit reaches the store", || async { store.hook.arrived.load(Ordering::SeqCst) == 1 }).await;
    bed.handle.revoke_grant(&grant.id, &Actor::console("admin")).await.unwrap();
    store.hook.open.send_replace(true);

    let hit = hit.await.unwrap();
    assert_eq!(hit.status, Status::Pending, "a grant revoked before the hit was written approves nothing");
    let after = stored_grant(&bed, Some(&grant.id)).await;
    assert!(after.revoked_at.is_some(), "the hit must not undo the revocation: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn po_12_concurrent_hits_of_one_grant_are_each_counted() {
    const HITS: usize = 8;
    let (bed, store, grant) = held_bed().await;
    let hits: Vec<_> = (0..HITS).map(|_| spawn_hit(&bed)).collect();
    until("every hit has read the grant", || async { store.hook.arrived.load(Ordering::SeqCst) == HITS })
        .await;
    store.hook.open.send_replace(true);
    for hit in hits {
        assert_eq!(hit.await.unwrap().status, Status::Approved);
    }
    let after = stored_grant(&bed, Some(&grant.id)).await;
    assert_eq!(after.use_count, HITS as u64, "no use is lost to another");
    assert!(after.last_used_at.is_some());
}
