//! A real headless browser for the page tests (`tests/coach_page.rs`): Debian's Chromium driven
//! by its chromedriver over the W3C WebDriver HTTP protocol (https://www.w3.org/TR/webdriver2/),
//! spoken with the project's own HTTP client. `scripts/test.sh` installs both
//! (`scripts/lib/chromium.sh`) and names them in `SIGNAAL_CHROMIUM` and `SIGNAAL_CHROMEDRIVER`;
//! without those, `chromium` and `chromedriver` are looked up on `PATH`. A missing browser is a
//! test failure, never a skip.
//!
//! Screenshots go to `target/test-artifacts/{dir}/` (kept after the run).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use signaal::client::{Client, Reply};

use super::TempDir;

/// The W3C name of an element reference in WebDriver JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait for the page lasts: generous, the machine may be busy (never a timing test).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A program: the environment variable naming it, else the first of `names` on `PATH`.
fn program(variable: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found: set {variable}, or run the tests through scripts/test.sh, which installs \
         Debian's chromium and chromium-driver (scripts/lib/chromium.sh)",
        names.join(" or ")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Where a test's artefacts are kept: `target/test-artifacts/{dir}`.
pub fn artifacts(dir: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("test-artifacts").join(dir);
    std::fs::create_dir_all(&path).expect("the artefacts directory");
    path
}

/// A chromedriver process and one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    http: Client,
    session: String,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session of a headless Chromium with a
    /// window of `width` × `height` and the given browser language (`nl`, `en`).
    pub async fn start(width: u32, height: u32, language: &str) -> Browser {
        let chromium = program("SIGNAAL_CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = program("SIGNAAL_CHROMEDRIVER", &["chromedriver"]);
        let profile = TempDir::new();
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(profile.0.join("chromedriver.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let http = Client::new(&format!("http://127.0.0.1:{port}"));
        let mut browser = Browser {
            driver,
            http,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = browser.driver.try_wait().unwrap() {
                panic!(
                    "chromedriver exited with {status}: {}",
                    browser.driver_log()
                );
            }
            if let Ok(reply) = browser.http.send("GET", "/status", &[], None).await {
                if reply.json()["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never got ready: {}",
                browser.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--lang={language}"),
                    format!("--user-data-dir={}", browser._profile.0.join("profile").display()),
                ],
                "prefs": {"intl.accept_languages": language},
            },
        }}});
        let answer = browser
            .command("POST", "/session", Some(capabilities))
            .await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        browser
    }

    /// Ends the browser session (the driver ends when dropped).
    pub async fn quit(mut self) {
        let session = std::mem::take(&mut self.session);
        let _ = self
            .http
            .send("DELETE", &format!("/session/{session}"), &[], None)
            .await;
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self._profile.0.join("chromedriver.log")).unwrap_or_default()
    }

    /// A WebDriver command; its `value`. A WebDriver error fails the test with its message.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.send(method, path, body).await;
        let answer = reply.json();
        assert!(
            reply.status == 200,
            "WebDriver {method} {path}: {} {}",
            reply.status,
            answer["value"]
        );
        answer["value"].clone()
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let path = if path.starts_with("/session/") || path == "/session" {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = body.map(|b| b.to_string().into_bytes());
        self.http
            .send(
                method,
                &path,
                &[("content-type", "application/json; charset=utf-8")],
                body,
            )
            .await
            .expect("chromedriver answers")
    }

    pub async fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        self.command("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `script` returns something truthy (not null, false, 0 or ""); returns it.
    /// Fails with `what`, the page's URL and a screenshot when it never does.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let reply = self
                .send(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": script, "args": args})),
                )
                .await;
            let value = reply.json()["value"].clone();
            let truthy = reply.status == 200
                && match &value {
                    Value::Null | Value::Bool(false) => false,
                    Value::String(s) => !s.is_empty(),
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    _ => true,
                };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let shot = artifacts("failures").join(format!("{}.png", uuid::Uuid::new_v4()));
                self.screenshot(&shot).await;
                let text = self
                    .run(
                        "return document.body ? document.body.innerText : ''",
                        json!([]),
                    )
                    .await;
                panic!(
                    "the page never showed {what} (at {}; screenshot {}): {}",
                    self.url().await,
                    shot.display(),
                    text
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// The element `css` selects, once it is there.
    pub async fn find(&self, css: &str) -> String {
        self.wait_for(
            &format!("an element {css}"),
            "return document.querySelector(arguments[0]) !== null",
            json!([css]),
        )
        .await;
        let found = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks the element `css` selects, as a user does (WebDriver's element click).
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the field `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> u64 {
        self.run(
            "return document.querySelectorAll(arguments[0]).length",
            json!([css]),
        )
        .await
        .as_u64()
        .unwrap_or_else(|| panic!("a count of {css}"))
    }

    /// The visible text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.command("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG screenshot of the viewport at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Resizes the window (for a full-page screenshot).
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser through its driver when the runtime still runs; then the driver.
        if !self.session.is_empty() {
            let http = self.http.clone();
            let path = format!("/session/{}", self.session);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let _ = std::thread::spawn(move || {
                    handle.block_on(async {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(10),
                            http.send("DELETE", &path, &[], None),
                        )
                        .await;
                    })
                })
                .join();
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
