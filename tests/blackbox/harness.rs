//! Starting and stopping a real `assent serve`, and running the CLI against it.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The binary under test.
pub(crate) const ASSENT: &str = env!("CARGO_BIN_EXE_assent");

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!("assent-{tag}-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `assent serve`; killed when dropped (and it exits by itself if the test process
/// dies, because its stdin closes).
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) url: String,
    addr: String,
    pub(crate) dir: TempDir,
    config: Option<PathBuf>,
    /// Extra environment (secrets), kept for a restart.
    env: Vec<(String, String)>,
}

impl Server {
    /// The embedded default: no configuration file.
    pub(crate) fn start() -> Self {
        Self::launch(TempDir::new("bb"), None, "127.0.0.1:0")
    }

    /// With `config` as assent.toml.
    pub(crate) fn with_config(config: &str) -> Self {
        Self::with_config_env(config, &[])
    }

    /// With `config` as assent.toml and extra environment variables (secrets).
    pub(crate) fn with_config_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("bb");
        let path = dir.path().join("assent.toml");
        std::fs::write(&path, config).unwrap();
        Self::launch_with(dir, Some(path), "127.0.0.1:0", env)
    }

    /// With `config` as assent.toml, extra environment variables and a fixed `listen` address
    /// (for a config whose `server.public_url` must name the port).
    pub(crate) fn with_config_env_on(config: &str, env: &[(&str, &str)], listen: &str) -> Self {
        let dir = TempDir::new("bb");
        let path = dir.path().join("assent.toml");
        std::fs::write(&path, config).unwrap();
        Self::launch_with(dir, Some(path), listen, env)
    }

    fn launch(dir: TempDir, config: Option<PathBuf>, listen: &str) -> Self {
        Self::launch_with(dir, config, listen, &[])
    }

    fn launch_with(dir: TempDir, config: Option<PathBuf>, listen: &str, env: &[(&str, &str)]) -> Self {
        let data = dir.path().join("data");
        let mut cmd = Command::new(ASSENT);
        cmd.args(["serve", "--exit-on-stdin-close", "--listen", listen])
            .env("ASSENT_DATA_DIR", &data)
            .env_remove("ASSENT_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap());
        if let Some(c) = &config {
            cmd.arg("--config").arg(c);
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("web console: ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(30)) else {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            panic!("assent serve did not start:\n{log}");
        };
        let url = url.trim_end_matches('/').to_owned();
        let addr = url.trim_start_matches("http://").to_owned();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self { child: Some(child), url, addr, dir, config, env }
    }

    /// The data dir (holds admin.token).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The first-run admin token.
    pub(crate) fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token")).unwrap().trim().to_owned()
    }

    /// Sends `SIGHUP` (reload the tokens from assent.toml).
    pub(crate) fn hangup(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }

    /// SIGKILL, like a crash.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data dir and port.
    pub(crate) fn restart(mut self) -> Self {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, TempDir::new("moved"));
        let config = self.config.take();
        let addr = self.addr.clone();
        let env = std::mem::take(&mut self.env);
        drop(self);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::launch_with(dir, config, &addr, &env)
    }

    /// The CLI, pointed at this server; it finds the admin token in the data dir.
    pub(crate) fn cli(&self) -> Command {
        let mut cmd = Command::new(ASSENT);
        cmd.env("ASSENT_URL", &self.url)
            .env("ASSENT_DATA_DIR", self.data_dir())
            .env_remove("ASSENT_TOKEN")
            .env_remove("ASSENT_CONFIG");
        cmd
    }

    /// Runs the CLI to completion.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }

    /// An HTTP call as admin; returns (status, body).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(&self.admin_token()), method, path, body)
    }

    /// An HTTP call with `token` (or none).
    pub(crate) fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => with_auth(agent.get(&url), auth.as_deref()).call(),
            ("DELETE", _) => with_auth(agent.delete(&url), auth.as_deref()).call(),
            (_, Some(b)) => with_auth(agent.post(&url), auth.as_deref()).send_json(b),
            (_, None) => with_auth(agent.post(&url), auth.as_deref()).send_json(json!({})),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().read_json::<Value>().unwrap_or(Value::Null);
        (status, body)
    }

    /// Raw POST of `body` bytes with `content_type`.
    pub(crate) fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent
            .post(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.admin_token()))
            .header("content-type", content_type)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    }

    /// Pending approvals.
    pub(crate) fn pending(&self) -> Vec<Value> {
        let (status, body) = self.call("GET", "/v1/approvals?status=pending", None);
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for exactly one pending approval and returns it.
    pub(crate) fn one_pending(&self) -> Value {
        eventually("an approval to be pending", || {
            let p = self.pending();
            (p.len() == 1).then(|| p[0].clone())
        })
    }

    /// Decides `id` through the API as admin.
    pub(crate) fn decide(&self, id: &str, decision: &str) -> (u16, Value) {
        let (_, a) = self.call("GET", &format!("/v1/approvals/{id}"), None);
        self.call(
            "POST",
            &format!("/v1/approvals/{id}/resolve"),
            Some(json!({ "kind": a["kind"], "decision": decision })),
        )
    }

    /// Creates an approval; its id and ref.
    pub(crate) fn create(&self, body: Value) -> (String, String) {
        let (status, a) = self.call("POST", "/v1/approvals", Some(body));
        assert_eq!(status, 201, "{a}");
        (a["id"].as_str().unwrap().to_owned(), a["ref"].as_str().unwrap().to_owned())
    }

    /// Approval `id` once it is no longer pending.
    pub(crate) fn decided(&self, id: &str) -> Value {
        eventually("a decision", || {
            let (_, a) = self.call("GET", &format!("/v1/approvals/{id}"), None);
            (a["status"] != "pending").then_some(a)
        })
    }

    /// Waits until the server has recorded its card on `route` (`Discord (main)`). The fake shows
    /// a card a moment before the server's ledger write, so a kill in between legitimately posts
    /// the card again at restart; tests about restarts wait for the record first.
    pub(crate) fn card_recorded(&self, id: &str, route: &str) {
        eventually(&format!("the {route} card to be recorded"), || {
            let (_, a) = self.call("GET", &format!("/v1/approvals/{id}"), None);
            let routes = a["routes"].as_array().cloned().unwrap_or_default();
            routes.iter().any(|r| r == route).then_some(())
        });
    }

    /// Waits until the chat account `account` (`telegram/main`) is attached and active.
    pub(crate) fn attached(&self, account: &str) {
        eventually(&format!("{account} to attach"), || {
            let (_, ready) = self.call_as(None, "GET", "/v1/ready", None);
            let accounts = ready["accounts"].as_array().cloned().unwrap_or_default();
            accounts.iter().any(|x| x["account"] == account && x["active"] == true).then_some(())
        });
    }
}

/// The body of an exec approval request.
pub(crate) fn exec(argv: &[&str]) -> Value {
    json!({ "kind": "exec", "exec": { "argv": argv } })
}

fn with_auth<B>(req: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("authorization", a),
        None => req,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Closing stdin asks for a graceful stop; kill if it takes too long.
            drop(c.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` until it returns `Some`, for up to 20 s.
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child's exit code and output, for assertion messages.
pub(crate) fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `input` to a spawned child's stdin and waits for it.
pub(crate) fn feed(mut child: Child, input: &[u8]) -> Output {
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A loopback proxy to the server at `url` that passes every connection through, except that
/// the server's answer on the first one is dropped and that connection closed: the server has
/// read and handled the request, the client only sees the connection end.
pub(crate) fn lossy_proxy(url: &str) -> String {
    let upstream = url.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    // Ends with the test process, blocked in `accept`.
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else { return };
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                if n == 0 {
                    // Wait for the answer to start, so the request was handled, then drop it.
                    let _ = from_server.read(&mut [0; 1]);
                    let _ = to_client.shutdown(Shutdown::Both);
                    let _ = from_server.shutdown(Shutdown::Both);
                } else {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Write);
                }
            });
        }
    });
    proxy
}
