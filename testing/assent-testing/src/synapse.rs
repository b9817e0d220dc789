//! A real Matrix homeserver for tests: Synapse from PyPI in a virtualenv under the cargo target
//! directory (made once, rebuilt if deleted), configured for loopback only with SQLite,
//! shared-secret registration and rate limits out of the way, started on a free port, with a
//! watchdog that stops it and removes its files when the test process exits.
//!
//! `cargo xtask ci` prepares the virtualenv before the tests; a test run without it prepares it
//! itself (about a minute, once).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::peers::{free_port, run, scratch_dir};

/// The Synapse release line the tests run against.
pub const SYNAPSE_REQUIREMENT: &str = "matrix-synapse==1.163.*";
const SHARED_SECRET: &str = "assent-test-registration-secret";

/// A running Synapse owned by this test process.
#[derive(Debug)]
pub struct SynapseServer {
    port: u16,
    users: AtomicUsize,
    /// A server admin, registered on first use.
    admin: OnceLock<MatrixUser>,
}

/// A registered account.
#[derive(Debug, Clone)]
pub struct MatrixUser {
    /// `@name:localhost`.
    pub user_id: String,
    /// Its password.
    pub password: String,
    /// An access token from registration.
    pub access_token: String,
}

/// The virtualenv: `$ASSENT_SYNAPSE_VENV`, else `<target dir>/synapse/venv`.
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ASSENT_SYNAPSE_VENV") {
        return PathBuf::from(dir);
    }
    target_dir().join("synapse").join("venv")
}

/// The cargo target directory of the running test binary (`target/debug/deps/…`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors().find(|p| p.file_name().is_some_and(|n| n == "target")).map(Path::to_path_buf)
        })
        .unwrap_or_else(|| std::env::temp_dir().join("assent-target"))
}

fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Creates the virtualenv with Synapse unless it is there; one process at a time.
pub fn ensure_synapse() -> Result<PathBuf, String> {
    let venv = venv_dir();
    let parent = venv.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let lock = File::create(parent.join("install.lock")).map_err(|e| format!("install lock: {e}"))?;
    lock.lock().map_err(|e| format!("install lock: {e}"))?;
    let ready = venv.join(".assent-ready");
    if ready.exists() {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv")?;
    run(
        Command::new(python(&venv)).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SYNAPSE_REQUIREMENT,
        ]),
        "pip install matrix-synapse",
    )?;
    std::fs::write(&ready, SYNAPSE_REQUIREMENT).map_err(|e| e.to_string())?;
    Ok(venv)
}

/// Every rate limit raised far out of the way of a test.
const RATE_LIMITS: &str = "
rc_message: {per_second: 10000, burst_count: 10000}
rc_registration: {per_second: 10000, burst_count: 10000}
rc_login:
  address: {per_second: 10000, burst_count: 10000}
  account: {per_second: 10000, burst_count: 10000}
  failed_attempts: {per_second: 10000, burst_count: 10000}
rc_joins:
  local: {per_second: 10000, burst_count: 10000}
  remote: {per_second: 10000, burst_count: 10000}
rc_joins_per_room: {per_second: 10000, burst_count: 10000}
rc_invites:
  per_room: {per_second: 10000, burst_count: 10000}
  per_user: {per_second: 10000, burst_count: 10000}
  per_issuer: {per_second: 10000, burst_count: 10000}
rc_admin_redaction: {per_second: 10000, burst_count: 10000}
rc_key_requests: {per_second: 10000, burst_count: 10000}
rc_presence:
  per_user: {per_second: 10000, burst_count: 10000}
rc_delayed_event_mgmt: {per_second: 10000, burst_count: 10000}
";

fn homeserver_yaml(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "server_name: localhost
pid_file: {d}/homeserver.pid
listeners:
  - port: {port}
    tls: false
    type: http
    x_forwarded: false
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
log_config: {d}/log.yaml
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: {SHARED_SECRET}
macaroon_secret_key: assent-test-macaroon
form_secret: assent-test-form
report_stats: false
trusted_key_servers: []
federation_domain_whitelist: []
suppress_key_server_warning: true
bcrypt_rounds: 4
enable_registration: false
{RATE_LIMITS}"
    )
}

const LOG_YAML: &str = "version: 1
formatters:
  precise: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}
handlers:
  console: {class: logging.StreamHandler, formatter: precise}
root: {level: WARNING, handlers: [console]}
disable_existing_loggers: false
";

impl SynapseServer {
    /// The homeserver shared by every test of this process, started on first use.
    pub fn shared() -> &'static SynapseServer {
        static SERVER: OnceLock<SynapseServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            Self::start().unwrap_or_else(|e| panic!("could not start Synapse for tests: {e}"))
        })
    }

    fn start() -> Result<Self, String> {
        let venv = ensure_synapse()?;
        let dir = scratch_dir("synapse")?;
        let port = free_port()?;
        let config = dir.join("homeserver.yaml");
        std::fs::write(&config, homeserver_yaml(&dir, port)).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("log.yaml"), LOG_YAML).map_err(|e| e.to_string())?;
        run(
            Command::new(python(&venv))
                .args(["-m", "synapse.app.homeserver", "-c"])
                .arg(&config)
                .arg("--generate-keys"),
            "synapse --generate-keys",
        )?;
        // The watchdog stops Synapse and removes its files once this test process is gone.
        let log = dir.join("homeserver.log");
        crate::watchdog::spawn(&crate::watchdog::Watched {
            command: format!(
                "'{py}' -m synapse.app.homeserver -c '{config}'",
                py = python(&venv).display(),
                config = config.display()
            ),
            log: &log,
            stop: "TERM",
            pid_file: None,
            remove: Some(&dir),
        })
        .map_err(|e| format!("starting synapse: {e}"))?;
        let server = Self { port, users: AtomicUsize::new(0), admin: OnceLock::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match server.get("/_matrix/client/versions") {
                Ok(_) => return Ok(server),
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(dir.join("homeserver.log")).unwrap_or_default();
                    return Err(format!("Synapse did not become ready: {e}\n{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let mut r = Self::agent().get(format!("{}{path}", self.url())).call().map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
        if status == 200 { Ok(body) } else { Err(format!("GET {path}: {status} {body}")) }
    }

    /// Registers a new user through the shared-secret admin API. Names get a per-process
    /// counter so tests never collide.
    pub fn register(&self, name: &str) -> MatrixUser {
        self.register_as(name, false)
    }

    /// Rate-limits the events `user_id` sends (Synapse's per-user override of `rc_message`),
    /// so a test meets `M_LIMIT_EXCEEDED` the way a busy homeserver answers it.
    pub fn limit_messages(&self, user_id: &str, per_second: u32, burst_count: u32) {
        let admin = self.admin.get_or_init(|| self.register_as("admin", true));
        let url = format!("{}/_synapse/admin/v1/users/{user_id}/override_ratelimit", self.url());
        let body = json!({ "messages_per_second": per_second, "burst_count": burst_count });
        let mut r = Self::agent()
            .post(url)
            .header("Authorization", format!("Bearer {}", admin.access_token))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("override_ratelimit {user_id}: {e}"));
        let status = r.status().as_u16();
        let reply = r.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "override_ratelimit {user_id}: {reply}");
    }

    fn register_as(&self, name: &str, admin: bool) -> MatrixUser {
        let n = self.users.fetch_add(1, Ordering::SeqCst);
        let localpart = format!("{name}{n}");
        let password = format!("pw-{localpart}");
        let nonce = self.get("/_synapse/admin/v1/register").unwrap_or_else(|e| panic!("{e}"))["nonce"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(SHARED_SECRET.as_bytes())
            .unwrap_or_else(|_| unreachable!("any key length"));
        let role = if admin { "admin" } else { "notadmin" };
        mac.update(format!("{nonce}\0{localpart}\0{password}\0{role}").as_bytes());
        let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let body = json!({ "nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": digest });
        let mut r = Self::agent()
            .post(format!("{}/_synapse/admin/v1/register", self.url()))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("register {localpart}: {e}"));
        let reply: Value = r.body_mut().read_json().unwrap_or_else(|e| panic!("register {localpart}: {e}"));
        let user_id =
            reply["user_id"].as_str().unwrap_or_else(|| panic!("register {localpart}: {reply}")).to_owned();
        let access_token = reply["access_token"].as_str().unwrap_or_default().to_owned();
        MatrixUser { user_id, password, access_token }
    }
}
