//! A minimal W3C WebDriver client over HTTP (enough to drive headless Chromium through
//! chromedriver): sessions, navigation, finding and clicking elements, typing, screenshots.

use std::{
    net::TcpListener,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::TempDir;

const W3C_ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Finds the Debian chromium and chromedriver binaries.
fn binaries() -> (&'static str, &'static str) {
    let chromium =
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        _ => panic!(
            "the console test needs headless Chromium: `apt-get install chromium chromium-driver` \
             (`cargo xtask ci` installs them)"
        ),
    }
}

/// A chromedriver process and one browser session; both stop when dropped, and a watchdog stops
/// them (their whole process group) if the test process dies first.
pub(crate) struct Browser {
    /// chromedriver's PID, also its process group's id.
    driver: u32,
    base: String,
    agent: ureq::Agent,
    _profile: TempDir,
}

impl Browser {
    pub(crate) fn start() -> Self {
        let (chromium, chromedriver) = binaries();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let profile = TempDir::new("chromium");
        let driver = assent_testing::watchdog::spawn(&assent_testing::watchdog::Watched {
            command: format!("'{chromedriver}' --port={port}"),
            log: &profile.path().join("chromedriver.log"),
            stop: "TERM",
            pid_file: None,
            remove: None,
        })
        .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut browser = Self { driver, base: format!("http://127.0.0.1:{port}"), agent, _profile: profile };
        let status = wait_for(Duration::from_secs(20), || browser.raw("GET", "/status", None).ok());
        assert_eq!(status["value"]["ready"], true, "chromedriver not ready: {status}");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,900",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", browser._profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args }
        }}});
        let session = browser.raw("POST", "/session", Some(caps)).unwrap();
        let id = session["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}"));
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self.agent.post(&url).send_json(b.unwrap_or_else(|| json!({}))),
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let body: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
        if ok { Ok(body) } else { Err(body.to_string()) }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, path, body).unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))["value"]
            .clone()
    }

    pub(crate) fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub(crate) fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    /// The first element matching `css`, if any.
    pub(crate) fn find(&self, css: &str) -> Option<String> {
        let found =
            self.raw("POST", "/element", Some(json!({ "using": "css selector", "value": css }))).ok()?;
        found["value"][W3C_ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits up to 10 s for `css` to appear.
    pub(crate) fn wait_for(&self, css: &str) -> String {
        self.wait_for_up_to(css, Duration::from_secs(10))
    }

    /// Waits up to `limit` for `css` to appear.
    pub(crate) fn wait_for_up_to(&self, css: &str, limit: Duration) -> String {
        self.poll(&format!("`{css}` to appear"), limit, || self.find(css))
    }

    /// Waits up to 10 s for `css` to be gone.
    pub(crate) fn wait_gone(&self, css: &str) {
        let gone = || self.find(css).is_none().then_some(());
        self.poll(&format!("`{css}` to go away"), Duration::from_secs(10), gone);
    }

    /// Polls `f` for up to `limit`; on timeout, fails with the page's URL and HTML.
    fn poll<T>(&self, what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let html =
                    self.raw("GET", "/source", None).map(|v| v["value"].to_string()).unwrap_or_default();
                panic!("timed out waiting for {what} at {}\n{html}", self.url());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching `css`; waits up to 10 s for one that takes the click.
    pub(crate) fn click(&self, css: &str) {
        self.on_element(css, "click", "/click", None);
    }

    /// Types `text` into the first element matching `css`; waits up to 10 s for it.
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "take typing", "/value", Some(json!({ "text": text })));
    }

    /// Sends `path` to the first element matching `css`, found afresh until the command gets
    /// through: an element a re-render replaced is stale, and a retry finds its successor.
    fn on_element(&self, css: &str, what: &str, path: &str, body: Option<Value>) {
        self.poll(&format!("`{css}` to {what}"), Duration::from_secs(10), || {
            let element = self.find(css)?;
            let sent = self.raw("POST", &format!("/element/{element}{path}"), body.clone());
            unless_stale(css, path, sent)
        });
    }

    /// The text of the first element matching `css`; waits up to 10 s for it to appear.
    pub(crate) fn text(&self, css: &str) -> String {
        self.poll(&format!("`{css}` to appear"), Duration::from_secs(10), || self.try_text(css))
    }

    /// The text of the first element matching `css`, once it contains `needle`; waits up to 10 s.
    pub(crate) fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let what = format!("`{css}` to contain {needle:?}");
        self.poll(&what, Duration::from_secs(10), || self.try_text(css).filter(|t| t.contains(needle)))
    }

    /// Finds `css` afresh and reads its text. The console re-renders parts of a page as events
    /// arrive, so an element found a moment ago may be stale; that is a miss, not a failure.
    fn try_text(&self, css: &str) -> Option<String> {
        let element = self.find(css)?;
        let text = unless_stale(css, "/text", self.raw("GET", &format!("/element/{element}/text"), None))?;
        Some(text["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub(crate) fn script(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Waits up to 10 s for `script` (a function body) to return `true` in the page.
    pub(crate) fn wait_for_script(&self, what: &str, script: &str) {
        self.poll(what, Duration::from_secs(10), || (self.script(script) == Value::Bool(true)).then_some(()));
    }

    /// Lays pages out as a screen `width` CSS pixels wide (a phone is `mobile`), through the
    /// DevTools emulation: a window cannot be made narrower than the browser's minimum.
    pub(crate) fn viewport(&self, width: u32, height: u32, mobile: bool) {
        let params = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile });
        self.cdp("Emulation.setDeviceMetricsOverride", params);
    }

    /// Emulates `prefers-color-scheme: dark` (or light).
    pub(crate) fn color_scheme(&self, scheme: &str) {
        let params = json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] });
        self.cdp("Emulation.setEmulatedMedia", params);
    }

    /// Holds back, before they are sent, the page's requests whose URL matches `pattern` (`*`
    /// wildcards), until [`Browser::release_requests`].
    pub(crate) fn hold_requests(&self, pattern: &str) {
        self.cdp(
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": pattern, "requestStage": "Request" }] }),
        );
    }

    /// Sends the requests [`Browser::hold_requests`] held back.
    pub(crate) fn release_requests(&self) {
        self.cdp("Fetch.disable", json!({}));
    }

    fn cdp(&self, cmd: &str, params: Value) {
        self.cmd("POST", "/goog/cdp/execute", Some(json!({ "cmd": cmd, "params": params })));
    }

    /// Saves a PNG screenshot of the page.
    pub(crate) fn screenshot(&self, path: &Path) {
        let png = self.cmd("GET", "/screenshot", None);
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.raw("DELETE", "", None);
        // The whole group: chromedriver and the browser it started.
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.driver)]).status();
    }
}

/// A command's answer; `None` if its element went stale (worth a retry). Any other error fails
/// the test at once, with WebDriver's own words.
fn unless_stale(css: &str, path: &str, answer: Result<Value, String>) -> Option<Value> {
    match answer {
        Ok(v) => Some(v),
        Err(e) if e.contains("stale element reference") => None,
        Err(e) => panic!("webdriver {path} on `{css}`: {e}"),
    }
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out in the browser");
        std::thread::sleep(Duration::from_millis(50));
    }
}
