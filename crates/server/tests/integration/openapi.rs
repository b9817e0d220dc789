//! API-6: the committed `docs/openapi.json` is what the server generates. After changing the
//! API, regenerate it with `ASSENT_UPDATE_OPENAPI=1 cargo test -p assent-server --test integration openapi`.

use std::path::PathBuf;

#[test]
fn api_6_the_committed_openapi_document_matches_the_server() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = assent_server::openapi_document() + "\n";
    if std::env::var_os("ASSENT_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date; run `ASSENT_UPDATE_OPENAPI=1 cargo test -p assent-server --test integration openapi` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1");
    for path in ["/v1/approvals", "/v1/approvals/{reference}/resolve", "/v1/grants/{id}", "/v1/audit"] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}
