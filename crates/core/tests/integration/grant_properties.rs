//! PO-3 as a property: an exact grant matches its own request and nothing that differs from it
//! in a single field (issue 9, finding 1).

use std::collections::BTreeMap;

use assent_core::{
    id::GrantId,
    model::{Action, Approval, ExecRequest},
    policy::{GrantScope, MatchInput, grant_for, grant_matches},
};
use proptest::prelude::*;

use crate::{T0, approval, kim};

/// One request: the exec fields plus the agent and session a grant may pin.
#[derive(Debug, Clone)]
struct Request {
    exec: ExecRequest,
    agent: Option<String>,
    session: Option<String>,
}

fn word() -> impl Strategy<Value = String> {
    "[a-z0-9._/=-]{0,6}"
}

fn opt_word() -> impl Strategy<Value = Option<String>> {
    prop::option::of(word())
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::collection::vec(word(), 1..4),
        prop::option::of("/[a-z]{1,6}"),
        opt_word(),
        prop::collection::btree_map("[A-Z]{1,3}", word(), 0..3),
        word(),
        opt_word(),
        opt_word(),
    )
        .prop_map(|(argv, executable, cwd, env, host, agent, session)| Request {
            exec: ExecRequest { argv, executable, cwd, env, host },
            agent,
            session,
        })
}

/// Changes exactly one field of `r`; `pick` chooses which and `fresh` supplies a new value.
fn mutate(r: &Request, pick: u8, fresh: &str) -> Request {
    let mut m = r.clone();
    let e = &mut m.exec;
    let other = |s: &Option<String>| match s {
        Some(v) => (v != fresh).then(|| fresh.to_owned()),
        None => Some(fresh.to_owned()),
    };
    match pick % 9 {
        0 => e.argv.push(fresh.to_owned()),
        1 => e.argv[0] = format!("{}x", e.argv[0]),
        2 => e.executable = e.executable.as_ref().map_or_else(|| Some(format!("/{fresh}x")), |_| None),
        3 => e.cwd = other(&e.cwd),
        4 => e.host = format!("{}x", e.host),
        5 => drop(e.env.insert(format!("ZZ{fresh}"), fresh.to_owned())),
        6 => match e.env.keys().next().cloned() {
            Some(k) => drop(e.env.insert(k, format!("{fresh}X"))),
            None => drop(e.env.insert("LD_PRELOAD".into(), fresh.to_owned())),
        },
        7 => m.agent = other(&m.agent),
        _ => m.session = other(&m.session),
    }
    m
}

fn approval_of(r: &Request) -> Approval {
    let action = Action::Exec(r.exec.clone().into_action().unwrap());
    let mut a = approval(action, 1);
    a.agent_id = r.agent.clone();
    a.session_key = r.session.clone();
    a
}

fn matches(grant: &assent_core::model::Grant, r: &Request) -> bool {
    let action = Action::Exec(r.exec.clone().into_action().unwrap());
    let input = MatchInput {
        action: &action,
        agent_id: r.agent.as_deref(),
        session_key: r.session.as_deref(),
        now: T0,
    };
    grant_matches(grant, &input)
}

proptest! {
    #[test]
    fn po_3_a_mutated_request_never_matches_the_originals_exact_grant(
        r in request(),
        pick in any::<u8>(),
        fresh in "[a-z]{1,4}",
    ) {
        let original = approval_of(&r);
        // Session scope when the request has one, so agent and session mutations are meaningful.
        let scope = GrantScope { session: r.session.is_some(), ..GrantScope::exact() };
        let grant = grant_for(&original, &scope, &kim(), GrantId::from_bits(1), T0).unwrap();
        prop_assert!(matches(&grant, &r), "a grant matches its own request");
        let m = mutate(&r, pick, &fresh);
        let pinned = pick % 9 < 7 || r.session.is_some();
        if pinned {
            prop_assert!(!matches(&grant, &m), "mutation {} matched: {:?}", pick % 9, m);
        }
    }
}

#[test]
fn po_3_env_values_are_compared_though_never_stored() {
    let with = |v: &str| Request {
        exec: ExecRequest {
            argv: vec!["deploy".into()],
            env: BTreeMap::from([("TARGET".to_owned(), v.to_owned())]),
            ..ExecRequest::default()
        },
        agent: None,
        session: None,
    };
    let grant =
        grant_for(&approval_of(&with("staging")), &GrantScope::exact(), &kim(), GrantId::from_bits(1), T0)
            .unwrap();
    assert!(!serde_json::to_string(&grant).unwrap().contains("staging"));
    assert!(matches(&grant, &with("staging")));
    assert!(!matches(&grant, &with("prod")));
}
