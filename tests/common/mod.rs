//! Test harness: starts a real Signaal server on a loopback port over a fresh database, and
//! talks to it with the project's HTTP client, as any FHIR client would.
//!
//! Every storage test runs on both stores through [`both_stores!`]. PostgreSQL comes from
//! `SIGNAAL_TEST_POSTGRES_URL` (a superuser URL; `scripts/test.sh` starts a throwaway server
//! and sets it); each test gets a database of its own. Without that variable the PostgreSQL
//! variants are skipped with a note, unless `SIGNAAL_TEST_REQUIRE_POSTGRES=1`.
//!
//! Every reply the client receives is held to the server's own input rules ([`output`]).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use signaal::client::{Client, Reply};
use signaal::server::{self, Settings};
use sqlx::Connection;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A running server; stopped (gracefully) when dropped.
pub struct TestServer {
    pub client: Client,
    pub base: String,
    /// Where `/metrics` is served, when the settings asked for it (`metrics_listen`).
    pub metrics: Option<SocketAddr>,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh database of the given kind, or `None` when that kind is not
    /// available in this environment (PostgreSQL without `SIGNAAL_TEST_POSTGRES_URL`).
    pub async fn start(kind: StoreKind) -> Option<TestServer> {
        Self::start_with(kind, signaal::app::DEFAULT_BODY_LIMIT).await
    }

    pub async fn start_with(kind: StoreKind, body_limit: usize) -> Option<TestServer> {
        Self::start_configured(kind, |settings| settings.body_limit = body_limit).await
    }

    /// Starts a server with settings changed from the defaults by `configure`.
    pub async fn start_configured(
        kind: StoreKind,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<TestServer> {
        let (database_url, dir) = fresh_database(kind).await?;
        Some(Self::start_on(database_url, dir, configure).await)
    }

    /// Starts a server on an existing database (`dir`: the directory to remove with it).
    pub async fn start_on(
        database_url: String,
        dir: Option<TempDir>,
        configure: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let listen = "127.0.0.1:0".parse::<SocketAddr>().unwrap();
        let mut settings = Settings::new(listen, database_url.clone());
        configure(&mut settings);
        let (listener, app) = server::start(&settings).await.expect("server starts");
        let base = app.base_url.clone();
        let metrics = app.metrics.listening();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(listener, app, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            client: Client::new(&base).with_check(output::check_reply),
            base,
            metrics,
            database_url,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server and starts a new one on the same database (at another port), as a
    /// restart of the process does; `configure` changes the new one's settings.
    pub async fn restart(mut self, configure: impl FnOnce(&mut Settings)) -> TestServer {
        self.shut_down().await;
        let dir = self._dir.take();
        Self::start_on(self.database_url.clone(), dir, configure).await
    }

    /// Stops the server and waits until it has drained and closed the store, keeping its
    /// database (for checks after shutdown).
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the server and waits until it has drained and closed the store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("signaal-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database URL for a new, empty database of the given kind.
pub async fn fresh_database(kind: StoreKind) -> Option<(String, Option<TempDir>)> {
    match kind {
        StoreKind::Sqlite => {
            let dir = TempDir::new();
            let url = format!("sqlite://{}", dir.0.join("signaal.db").display());
            Some((url, Some(dir)))
        }
        StoreKind::Postgres => {
            let admin = match std::env::var("SIGNAAL_TEST_POSTGRES_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    if std::env::var("SIGNAAL_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                        panic!("SIGNAAL_TEST_REQUIRE_POSTGRES=1 but SIGNAAL_TEST_POSTGRES_URL is not set");
                    }
                    eprintln!("skipping the PostgreSQL variant: SIGNAAL_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)");
                    return None;
                }
            };
            let name = format!("signaal_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin).expect("SIGNAAL_TEST_POSTGRES_URL is a URL");
            url.set_path(&format!("/{name}"));
            Some((url.to_string(), None))
        }
    }
}

/// Defines a test that runs once per store: `mod name { fn sqlite(); fn postgres(); }`.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, |$server:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($server: $crate::common::TestServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = $crate::common::TestServer::start($crate::common::StoreKind::Sqlite).await.unwrap();
                run(server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(server) = $crate::common::TestServer::start($crate::common::StoreKind::Postgres).await {
                    run(server).await;
                }
            }
        }
    };
}

/// Asserts a status and that error responses are OperationOutcomes.
pub fn expect_status(reply: &Reply, status: u16) -> Value {
    let body = reply.json();
    assert_eq!(
        reply.status,
        status,
        "unexpected status; body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    if status >= 400 {
        assert_eq!(
            body["resourceType"], "OperationOutcome",
            "errors are OperationOutcomes: {body}"
        );
        assert!(
            body["issue"][0]["diagnostics"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "errors explain themselves: {body}"
        );
    }
    body
}

/// A file of the shared reference data (`../shared/…` next to the crate, or the path in the
/// environment variable `env`), or `None` when it is missing and fixtures are not required
/// (`SIGNAAL_REQUIRE_FIXTURES=1` makes a missing file fail the test). `how` tells a user
/// without that folder where to get the same file.
#[allow(dead_code)]
pub fn shared_fixture(env: &str, relative: &str, how: &str) -> Option<PathBuf> {
    let path = match std::env::var(env) {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared")
            .join(relative),
    };
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "{} is missing: {how}, and put it there or point {env} at it",
        path.display()
    );
    if std::env::var("SIGNAAL_REQUIRE_FIXTURES").as_deref() == Ok("1") {
        panic!("SIGNAAL_REQUIRE_FIXTURES=1 but {message}");
    }
    eprintln!("skipping: {message}");
    None
}

// ---- The fluent helper API: what tests send and read, one contract each ----------------------

/// What talks to a server: a [`TestServer`], or a [`Client`] of one started otherwise.
pub trait Api {
    fn client(&self) -> &Client;
}

impl Api for TestServer {
    fn client(&self) -> &Client {
        &self.client
    }
}

impl Api for Client {
    fn client(&self) -> &Client {
        self
    }
}

/// A resource to send, built fluently:
/// `patient().family("Jansen").given("Anna").set("gender", "female").json()`.
#[derive(Debug, Clone)]
pub struct Resource(Value);

/// An empty resource of type `rtype`, to build on.
pub fn resource(rtype: &str) -> Resource {
    Resource(serde_json::json!({ "resourceType": rtype }))
}

/// An empty Patient, to build on.
pub fn patient() -> Resource {
    resource("Patient")
}

impl Resource {
    pub fn id(self, id: &str) -> Self {
        self.set("id", id)
    }

    /// Sets a top-level element.
    pub fn set(mut self, element: &str, value: impl Into<Value>) -> Self {
        self.0[element] = value.into();
        self
    }

    /// Adds an identifier.
    pub fn identifier(mut self, system: &str, value: &str) -> Self {
        push(
            &mut self.0,
            "identifier",
            serde_json::json!({"system": system, "value": value}),
        );
        self
    }

    /// Sets the family name of the first name.
    pub fn family(mut self, family: &str) -> Self {
        first_name(&mut self.0)["family"] = family.into();
        self
    }

    /// Adds a given name to the first name.
    pub fn given(mut self, given: &str) -> Self {
        push(first_name(&mut self.0), "given", given.into());
        self
    }

    pub fn json(self) -> Value {
        self.0
    }
}

impl From<Resource> for Value {
    fn from(resource: Resource) -> Value {
        resource.0
    }
}

fn push(parent: &mut Value, element: &str, item: Value) {
    match parent[element].as_array_mut() {
        Some(items) => items.push(item),
        None => parent[element] = Value::Array(vec![item]),
    }
}

fn first_name(resource: &mut Value) -> &mut Value {
    if resource["name"].as_array().is_none_or(Vec::is_empty) {
        resource["name"] = serde_json::json!([{}]);
    }
    &mut resource["name"][0]
}

/// Creates `resource` (POST to its type), expecting 201; the id the server gave it.
pub async fn create(server: &impl Api, resource: &Value) -> String {
    let rtype = resource["resourceType"].as_str().unwrap();
    let body = expect_status(&server.client().post(rtype, resource).await.unwrap(), 201);
    body["id"].as_str().unwrap().to_owned()
}

/// Sends `resource` as the JSON body of `method path`, with `headers`.
pub async fn send_json(
    server: &impl Api,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    resource: &Value,
) -> Reply {
    let body = Some(resource.to_string().into_bytes());
    server
        .client()
        .send(method, path, headers, body)
        .await
        .unwrap()
}

/// Creates or updates a resource under its own id (PUT), expecting 200 or 201; the status.
pub async fn put(server: &impl Api, resource: Value) -> u16 {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let reply = server.client().put(&path, &resource).await.unwrap();
    assert!(
        reply.status == 200 || reply.status == 201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.status
}

/// Ids of the matches of a search, sorted.
pub async fn ids(server: &impl Api, query: &str) -> Vec<String> {
    let reply = server.client().get(query).await.unwrap();
    sorted(match_ids(&expect_status(&reply, 200)))
}

/// Ids of the matches of a search with `Prefer: handling=strict` (an unknown parameter is a
/// 400, not ignored), sorted.
pub async fn strict_ids(server: &impl Api, query: &str) -> Vec<String> {
    let reply = server
        .client()
        .send("GET", query, &[("prefer", "handling=strict")], None)
        .await
        .unwrap();
    sorted(match_ids(&expect_status(&reply, 200)))
}

/// The ids of a searchset's matches (`search.mode = match`), in answer order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The `response.status` of each entry of a batch-response or transaction-response Bundle.
pub fn statuses(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The diagnostics of a 400 OperationOutcome.
#[allow(dead_code)]
pub async fn refused(server: &TestServer, query: &str) -> String {
    let reply = server.client.get(query).await.unwrap();
    let outcome = expect_status(&reply, 400);
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{query}");
    outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The resources a search matched (entries with `search.mode = match`), in answer order.
#[allow(dead_code)]
pub async fn matches(server: &TestServer, query: &str) -> Vec<Value> {
    let body = expect_status(&server.client.get(query).await.unwrap(), 200);
    body["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"].clone())
        .collect()
}

/// The entries of a Bundle other than AuditEvents (the audit trail the server writes behind
/// every request, at moments a test does not control) and the canonical resources the server
/// ships and writes at start (`signaal::fhir::canonical`). (The Provenance of each write is
/// written with it, so tests see those and count them.)
pub fn without_audit_events(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            let url = e["request"]["url"].as_str().unwrap_or_default();
            let shipped = match url.split_once('/') {
                Some((rtype, id)) => signaal::fhir::canonical::is_shipped(rtype, id),
                None => e["resource"]["id"].as_str().is_some_and(|id| {
                    signaal::fhir::canonical::is_shipped(
                        e["resource"]["resourceType"].as_str().unwrap_or_default(),
                        id,
                    )
                }),
            };
            e["resource"]["resourceType"] != "AuditEvent"
                && !url.starts_with("AuditEvent")
                && !shipped
        })
        .collect()
}
pub mod auth;
pub mod browser;
pub mod bulk;
pub mod concurrent;
pub mod examples;
pub mod oidc_provider;
pub mod outcome;
pub mod output;
pub mod package;
pub mod process;
pub mod receiver;
pub mod smart;
