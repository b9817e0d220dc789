//! `assent request` and `assent run` against a real server (CLI-2, CLI-4, LC-16).

use std::{os::unix::fs::PermissionsExt, process::Stdio};

use crate::harness::{Server, TempDir, describe, eventually};

#[test]
fn request_approved_exits_0_and_says_who() {
    let server = Server::start();
    let requester =
        server.cli().args(["request", "exec", "--", "echo", "hello"]).stderr(Stdio::piped()).spawn().unwrap();
    let a = server.one_pending();
    assert_eq!(a["text"], "echo hello");
    let (status, body) = server.decide(a["id"].as_str().unwrap(), "allow-once");
    assert_eq!(status, 200, "{body}");
    let out = requester.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("approved once by token:admin"),
        "{}",
        describe(&out)
    );
}

#[test]
fn request_denied_exits_1_with_the_reason() {
    let server = Server::start();
    let requester = server
        .cli()
        .args(["request", "exec", "--", "rm", "-rf", "/tmp/x"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a = server.one_pending();
    let deny = server.run(&["approvals", "deny", a["ref"].as_str().unwrap(), "--reason", "not today"]);
    assert!(deny.status.success(), "{}", describe(&deny));
    let out = requester.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not today"), "{}", describe(&out));
}

#[test]
fn request_timeout_exits_2() {
    let server = Server::start();
    let out = server.run(&["request", "exec", "--timeout", "10s", "--", "sleep", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired: nobody answered within 10s"),
        "{}",
        describe(&out)
    );
}

#[test]
fn request_without_any_route_exits_2_with_the_doctor_hint() {
    let server = Server::with_config("[console]\nroute = \"connected\"\n");
    let out = server.run(&["request", "exec", "--", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("assent doctor"), "{}", describe(&out));
    let doctor = server.run(&["doctor"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", describe(&doctor));
    assert!(String::from_utf8_lossy(&doctor.stdout).contains("console.route"), "{}", describe(&doctor));
}

#[test]
fn a_late_second_decision_is_refused_with_already_resolved() {
    let server = Server::start();
    let out = server.run(&["request", "exec", "--no-wait", "--json", "--", "make", "deploy"]);
    assert!(out.status.success(), "{}", describe(&out));
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = a["id"].as_str().unwrap();
    assert_eq!(server.decide(id, "deny").0, 200);
    let (status, body) = server.decide(id, "allow-once");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_resolved");
    let (_, after) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(after["status"], "denied", "the late answer changed nothing");
}

#[test]
fn run_executes_exactly_the_approved_argv_and_returns_its_status() {
    let server = Server::start();
    let work = TempDir::new("run");
    let marker = work.path().join("ran");
    let script = format!("printf '%s|' \"$@\" > {}; exit 7", marker.display());
    let runner = server
        .cli()
        .args(["run", "--", "sh", "-c", &script, "argv0", "two words", "x"])
        .current_dir(work.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a = server.one_pending();
    assert!(!marker.exists(), "nothing runs before the decision");
    assert_eq!(server.decide(a["id"].as_str().unwrap(), "allow-once").0, 200);
    let out = runner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "the child's own status: {}", describe(&out));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "two words|x|");
    let (_, after) = server.call("GET", &format!("/v1/approvals/{}", a["id"].as_str().unwrap()), None);
    assert!(after["consumed_at"].is_number(), "run consumed the approval: {after}");
}

#[test]
fn run_refuses_when_the_command_changed_while_waiting() {
    let server = Server::start();
    let work = TempDir::new("path");
    let (early, late) = (work.path().join("early"), work.path().join("late"));
    std::fs::create_dir_all(&early).unwrap();
    std::fs::create_dir_all(&late).unwrap();
    let tool = |dir: &std::path::Path, text: &str| {
        let p = dir.join("tool");
        std::fs::write(&p, format!("#!/bin/sh\necho {text} > {}/ran\n", work.path().display())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    tool(&late, "approved");
    let path =
        format!("{}:{}:{}", early.display(), late.display(), std::env::var("PATH").unwrap_or_default());
    let runner =
        server.cli().args(["run", "--", "tool"]).env("PATH", &path).stderr(Stdio::piped()).spawn().unwrap();
    let a = server.one_pending();
    // While the approver looks at `late/tool`, another `tool` appears earlier on PATH.
    tool(&early, "hijacked");
    assert_eq!(server.decide(a["id"].as_str().unwrap(), "allow-once").0, 200);
    let out = runner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was run"), "{}", describe(&out));
    assert!(!work.path().join("ran").exists(), "neither tool ran");
}

#[test]
fn approvals_show_finds_a_pending_approval_by_its_ref() {
    let server = Server::start();
    let out = server.run(&["request", "exec", "--no-wait", "--", "echo", "API_KEY=sk-live-123456789abcdef"]);
    assert!(out.status.success(), "{}", describe(&out));
    let a = eventually("pending", || server.pending().pop());
    let show = server.run(&["approvals", "show", a["ref"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("echo"), "{}", describe(&show));
    assert!(!text.contains("sk-live-123456789abcdef"), "secrets are redacted: {text}");
}

#[test]
fn serve_refuses_a_bad_config_naming_file_and_line() {
    let dir = TempDir::new("cfg");
    let config = dir.path().join("assent.toml");
    for (text, expect) in [
        ("[server]\nlisen = \"127.0.0.1:0\"\n", ":2: unknown field `lisen`"),
        ("\n[channels.icq.accounts.main]\ntoken_env = \"T\"\n", "unknown platform; assent knows"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(crate::harness::ASSENT)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("ASSENT_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
        assert!(stderr.contains(&config.display().to_string()) && stderr.contains(expect), "{stderr}");
    }
}

#[test]
fn approve_always_with_a_narrower_scope_creates_that_grant() {
    let server = Server::start();
    let out = server.run(&["request", "exec", "--no-wait", "--", "make", "test"]);
    assert!(out.status.success(), "{}", describe(&out));
    let a = server.one_pending();
    let reference = a["ref"].as_str().unwrap();
    let bad = server.run(&["approvals", "approve", reference, "--always", "--scope", "forever"]);
    assert_eq!(bad.status.code(), Some(4), "{}", describe(&bad));
    let ok = server.run(&["approvals", "approve", reference, "--always", "--scope", "ttl:8h"]);
    assert!(ok.status.success(), "{}", describe(&ok));
    let list = server.run(&["grants", "list", "--json"]);
    let grants: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let items = grants["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{grants}");
    assert!(items[0]["subject"].as_str().unwrap().contains("make test"), "{grants}");
    let ttl = items[0]["expires_at"].as_i64().unwrap() - items[0]["created_at"].as_i64().unwrap();
    assert_eq!(ttl, 8 * 3600 * 1000, "the 8 h scope: {grants}");
    // The grant now answers the same request at once, without anyone deciding.
    let again = server.run(&["request", "exec", "--", "make", "test"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("standing grant"), "{}", describe(&again));
}

#[test]
fn cli_2_ctrl_c_cancels_the_pending_request_and_exits_130() {
    let server = Server::start();
    let requester =
        server.cli().args(["request", "exec", "--", "reboot"]).stderr(Stdio::piped()).spawn().unwrap();
    let a = server.one_pending();
    let kill =
        std::process::Command::new("kill").args(["-INT", &requester.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = requester.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let (_, after) = server.call("GET", &format!("/v1/approvals/{}", a["id"].as_str().unwrap()), None);
    assert_eq!(after["status"], "cancelled", "cancelled before exiting: {after}");
}

#[test]
fn cli_2_usage_errors_exit_4_and_help_exits_0() {
    let server = Server::start();
    let out = server.run(&["approvals", "lst"]);
    assert_eq!(out.status.code(), Some(4), "2 would mean \"expired\": {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"), "{}", describe(&out));
    let out = server.run(&["request", "exec", "--timeout"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let help = server.run(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", describe(&help));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes"));
}

#[test]
fn cli_a_closed_pipe_ends_the_output_quietly() {
    let server = Server::start();
    for n in 0..3 {
        let out = server.run(&["request", "exec", "--no-wait", "--", "echo", &n.to_string()]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    // `assent approvals list | head -0`: the reader is gone before the first line.
    let mut child = server
        .cli()
        .args(["approvals", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn cli_connection_errors_name_the_url() {
    let dir = TempDir::new("unreachable");
    let out = std::process::Command::new(crate::harness::ASSENT)
        .args(["approvals", "list", "--token", "t"])
        .env("ASSENT_URL", "http://127.0.0.1:9")
        .env("ASSENT_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:9"), "{}", describe(&out));
}

#[test]
fn cli_each_approval_state_change_is_one_info_line_without_the_command() {
    let server = Server::start();
    let out = server.run(&["request", "exec", "--no-wait", "--", "deploy", "--token=hunter2"]);
    assert!(out.status.success(), "{}", describe(&out));
    let a = server.one_pending();
    let id = a["id"].as_str().unwrap();
    assert_eq!(server.decide(id, "deny").0, 200);
    let log = eventually("the log lines", || {
        let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
        log.contains("status=Denied").then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
    assert!(
        lines.iter().any(|l| l.contains("INFO") && l.contains("status=Pending") && l.contains("kind=exec")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.contains("INFO") && l.contains("status=Denied")), "{log}");
    assert!(!log.contains("hunter2") && !log.contains("deploy"), "never the command: {log}");
    assert!(!log.contains('\u{1b}'), "a log written to a file has no colour codes: {log:?}");
}

#[test]
fn cli_3_a_requester_whose_server_is_gone_gives_up_after_the_deadline() {
    let mut server = Server::start();
    let requester = server
        .cli()
        .args(["request", "exec", "--timeout", "10s", "--", "deploy"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    server.one_pending();
    server.kill();
    // Bounded only so a broken build fails instead of hanging: the deadline is 10 s away.
    let mut requester = requester;
    let waited = std::time::Instant::now();
    while requester.try_wait().unwrap().is_none() {
        if waited.elapsed() > std::time::Duration::from_secs(90) {
            let _ = requester.kill();
            panic!("the requester was still waiting 90 s after its server was killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = requester.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outcome is unknown"), "{}", describe(&out));
}

#[test]
fn cli_the_serve_hint_names_assent_url_on_another_port() {
    use std::io::BufRead;
    let dir = TempDir::new("hint");
    let mut child = std::process::Command::new(crate::harness::ASSENT)
        .args(["serve", "--exit-on-stdin-close", "--listen", "127.0.0.1:0"])
        .env("ASSENT_DATA_DIR", dir.path().join("data"))
        .env_remove("ASSENT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let hint = stdout.lines().map_while(Result::ok).find(|l| l.contains("ask for approval"));
    drop(child.stdin.take());
    let _ = child.wait();
    let hint = hint.expect("the hint line");
    assert!(hint.contains("ask for approval: ASSENT_URL=http://127.0.0.1:"), "{hint}");
}

#[test]
fn cli_refs_find_decided_approvals_too() {
    let server = Server::start();
    let out = server.run(&["request", "exec", "--no-wait", "--", "make", "it"]);
    assert!(out.status.success(), "{}", describe(&out));
    let a = server.one_pending();
    let (id, reference) = (a["id"].as_str().unwrap(), a["ref"].as_str().unwrap());
    assert_eq!(server.decide(id, "deny").0, 200);
    let show = server.run(&["approvals", "show", reference]);
    assert!(show.status.success(), "{}", describe(&show));
    assert!(String::from_utf8_lossy(&show.stdout).contains(id), "{}", describe(&show));
    let audit = server.run(&["audit", "--approval", reference]);
    assert!(audit.status.success(), "{}", describe(&audit));
}
