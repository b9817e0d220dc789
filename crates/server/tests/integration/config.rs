//! CFG-1..CFG-3: the configuration file is strict and its errors point at the line.

use assent_platform::secret;
use assent_server::config::LoadedConfig;

fn error(source: &str) -> String {
    LoadedConfig::parse(source, Some("assent.toml".into())).unwrap_err().to_string()
}

#[test]
fn cfg_1_an_empty_file_is_the_embedded_default() {
    let c = LoadedConfig::parse("", None).unwrap();
    assert_eq!(c.listen().unwrap().to_string(), "127.0.0.1:8740");
    assert!(c.policy().unwrap().rules.is_empty());
}

#[test]
fn cfg_1_unknown_keys_are_errors_naming_the_key_and_line() {
    let e = error("[server]\nlisten = \"127.0.0.1:9000\"\nlisen = \"x\"\n");
    assert!(e.starts_with("assent.toml:3: "), "{e}");
    assert!(e.contains("unknown field `lisen`"), "{e}");
    let e = error("[console]\nroute = \"sometimes\"\n");
    assert!(e.starts_with("assent.toml:2: "), "{e}");
    assert!(e.contains("sometimes"), "{e}");
    let e = error("[[policy]]\nname = \"p\"\nmatch = { kind = \"exec\", exe = \"/bin/x\" }\n");
    assert!(e.contains("unknown field `exe`") && e.starts_with("assent.toml:3: "), "{e}");
}

#[test]
fn cfg_3_bad_values_are_errors_with_the_line() {
    let e = error("[[policy]]\nname = \"deploys\"\n\ntimeout = \"15 minutes\"\n");
    assert!(e.starts_with("assent.toml:4: ") && e.contains("deploys"), "{e}");
    let e = error("[[policy]]\nname = \"big\"\nquorum = 12\n");
    assert!(e.starts_with("assent.toml:3: ") && e.contains("1..=9"), "{e}");
    let e = error("[[policy]]\nname = \"s\"\ngrant_scope = [\"forever\"]\n");
    assert!(e.starts_with("assent.toml:3: ") && e.contains("forever"), "{e}");
    let e = error("[redaction]\npatterns = [\"(unclosed\"]\n");
    assert!(e.starts_with("assent.toml:2: ") && e.contains("redaction.patterns"), "{e}");
    let e = error("[[policy]]\nname = \"two\"\nquorum = \"two\"\n");
    assert!(e.starts_with("assent.toml:3: ") && e.contains("a whole number of approvals from 1 to 9"), "{e}");
    assert!(!e.contains("u8"), "plain words: {e}");
    let e = error("[[policy]]\nname = \"quick\"\ntimeout = \"5s\"\n");
    assert!(e.starts_with("assent.toml:3: ") && e.contains("between 10s and 1d"), "{e}");
    let e = error("[[policy]]\nname = \"p\"\nmatch = { kind = \"plugin\" }\ntimeout = \"1h\"\n");
    assert!(
        e.starts_with("assent.toml:4: ") && e.contains("plugin approvals wait between 10s and 10m"),
        "{e}"
    );
    let e = error("[server]\nlisten = \"0.0.0.0:8740\"\n");
    assert!(e.starts_with("assent.toml:2: ") && e.contains("insecure_http"), "{e}");
    LoadedConfig::parse("[server]\nlisten = \"0.0.0.0:8740\"\ninsecure_http = true\n", None).unwrap();
}

#[test]
fn cfg_3_the_example_policy_maps_onto_rules() {
    let c = LoadedConfig::parse(
        "[[policy]]\nname = \"prod-deploys\"\nmatch = { kind = \"exec\", executable = \"/usr/local/bin/deploy\" }\n\
         quorum = 2\ntimeout = \"15m\"\nallow_always = false\n",
        None,
    )
    .unwrap();
    let rule = &c.policy().unwrap().rules[0];
    assert_eq!(rule.quorum, 2);
    assert_eq!(rule.timeout, Some(std::time::Duration::from_secs(900)));
    assert!(!rule.allow_always);
}

#[test]
fn cfg_1_secrets_come_from_env_or_file_and_never_appear_in_errors() {
    let var = "ASSENT_TEST_SECRET_NOT_SET_4711";
    let e = secret("store.url", None, Some(var), None).unwrap_err();
    assert!(e.contains(var) && e.contains("store.url_env"), "{e}");
    let dir = std::env::temp_dir().join(format!("assent-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("url");
    std::fs::write(&file, "postgres://assent:hunter2@db/assent\n").unwrap();
    let got = secret("store.url", None, None, Some(file.to_str().unwrap())).unwrap();
    assert_eq!(got.as_deref(), Some("postgres://assent:hunter2@db/assent"));
    let e = secret("store.url", Some("postgres://assent:hunter2@db/assent"), None, Some("x")).unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn po_3_grants_ignore_env_takes_variable_names_only() {
    let c = LoadedConfig::parse("[grants]\nignore_env = [\"TERM\", \"COLUMNS\"]\n", None).unwrap();
    assert_eq!(c.ignore_env().unwrap(), ["TERM", "COLUMNS"]);
    let e = error("[grants]\n\nignore_env = [\"TERM=xterm\"]\n");
    assert!(e.starts_with("assent.toml:3: ") && e.contains("not a variable name"), "{e}");
    assert!(error("[grants]\nignore = [\"TERM\"]\n").contains("unknown field `ignore`"));
}

#[test]
fn cfg_3_text_without_a_file_is_named_config_in_every_error() {
    // Found by `cargo xtask fuzz config_loader`: errors after parsing said `<defaults>`.
    let e = LoadedConfig::parse("[[policy]]\nname = \"p\"\ngrant_scope = [\"tsl:8h\"]\n", None).unwrap_err();
    assert!(e.to_string().starts_with("<config>:3: "), "{e}");
}

#[tokio::test]
async fn ch_web_1_the_listen_flag_gets_the_same_loopback_check_as_the_file() {
    let dir = std::env::temp_dir().join(format!("assent-listen-flag-{}", std::process::id()));
    let mut options = assent_server::ServeOptions::new(dir.clone(), LoadedConfig::defaults());
    // An address no test may bind: refused before any bind is tried.
    options.listen = Some("192.0.2.1:8740".parse().unwrap());
    let e = match assent_server::start(options).await {
        Ok(_) => panic!("a non-loopback --listen is refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("--listen") && e.contains("not a loopback address") && e.contains("insecure_http"),
        "{e}"
    );
    // Behind a TLS proxy the address is allowed; binding it is what fails here.
    let proxied = LoadedConfig::parse("[server]\ninsecure_http = true\n", None).unwrap();
    let mut options = assent_server::ServeOptions::new(dir.clone(), proxied);
    options.listen = Some("192.0.2.1:8740".parse().unwrap());
    let e = match assent_server::start(options).await {
        Ok(_) => panic!("192.0.2.1 is not ours to bind"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("cannot listen on 192.0.2.1:8740"), "allowed, then the bind fails: {e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cli_8_a_request_token_never_locks_out_the_first_run_admin() {
    use assent_server::auth::Tokens;
    let dir = std::env::temp_dir().join(format!("assent-lockout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = "ab".repeat(32);
    let request = format!("[[tokens]]\nname = \"claude\"\nsha256 = \"{hash}\"\nscopes = [\"request\"]\n");
    let (tokens, admin) = Tokens::for_server(&LoadedConfig::parse(&request, None).unwrap(), &dir).unwrap();
    assert!(admin.is_some(), "the first-run admin token stays while no configured token can approve");
    assert_eq!(tokens.len(), 2);
    let approver = request.replace("[\"request\"]", "[\"approve\"]");
    let (tokens, admin) = Tokens::for_server(&LoadedConfig::parse(&approver, None).unwrap(), &dir).unwrap();
    assert!(admin.is_none(), "someone configured can decide: the configured tokens are the whole list");
    assert_eq!(tokens.len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}
