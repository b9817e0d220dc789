//! The `POST /v1/approvals` body (API-3): any bytes are either a valid request or refused with a
//! message; an accepted exec request never carries the characters the validation forbids.
#![no_main]

use assent_core::model::Action;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(req) = assent_server::parse_create_body(input, "token:fuzz") else { return };
    if let Action::Exec(e) = &req.action {
        assert!(!e.argv.is_empty());
        assert!(e.argv.iter().all(|a| !a.contains('\0')));
        assert!(!e.host.chars().any(char::is_control), "host {:?}", e.host);
        assert!(
            e.env_keys.iter().all(|k| !k.is_empty() && !k.contains('=') && !k.chars().any(char::is_control))
        );
    }
    for id in [&req.agent_id, &req.session_key].into_iter().flatten() {
        assert!(!id.chars().any(char::is_control), "{id:?}");
    }
});
