//! The Claude Code hook's stdin (CLI-6): any payload either becomes a request the API accepts, or
//! an error (which the hook turns into a deny); nothing panics.
#![no_main]

use std::time::Duration;

use assent_cli::claude_code::request_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(input) else { return };
    let Ok(body) = request_body(&payload, Duration::from_secs(50), "host-1".to_owned()) else { return };
    let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
    // What the hook sends is read by the server's own parser; refusals are fine (a deny), but
    // the server must understand the shape the hook produces.
    if let Err(e) = assent_server::parse_create_body(&bytes, "token:hook") {
        assert!(!e.contains("unknown field") && !e.contains("missing field"), "hook body mismatch: {e}");
    }
});
