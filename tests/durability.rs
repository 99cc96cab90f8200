//! Crash and shutdown safety of the real `signaal` binary, on SQLite and (when available)
//! PostgreSQL.
//!
//! * SIGKILL while concurrent clients write: after a restart on the same database every
//!   acknowledged write is there with at least the acknowledged version, and nothing is half
//!   there (every resource parses, every history entry has its version, the search index agrees
//!   with the resources).
//! * SIGTERM while requests stream in: the server drains, exits 0, and acknowledged writes are
//!   there after a restart.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fresh_database, StoreKind, TempDir};
use serde_json::{json, Value};
use signaal::client::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const SYSTEM: &str = "http://example.org/durability";

/// A `signaal serve` process on a loopback port.
struct Server {
    child: Child,
    client: Client,
    log: PathBuf,
}

impl Server {
    /// Starts the binary on `database_url` and waits until `/health` answers 200.
    async fn start(database_url: &str, log_dir: &Path) -> Server {
        for _attempt in 0..3 {
            let port = free_port();
            let log = log_dir.join(format!("signaal-{port}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_signaal"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--database", database_url])
                .env_remove("SIGNAAL_BASE_URL")
                .env("SIGNAAL_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("a log file"))
                .spawn()
                .expect("the signaal binary starts");
            let mut server = Server {
                child,
                client: Client::new(&format!("http://127.0.0.1:{port}/fhir")),
                log,
            };
            let health = format!("http://127.0.0.1:{port}/health");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = server.child.try_wait().expect("try_wait") {
                    let log = server.log_text();
                    if log.contains("Address already in use") {
                        break; // someone took the port: try another
                    }
                    panic!("signaal exited at start with {status}:\n{log}");
                }
                if let Ok(reply) = server.client.get(&health).await {
                    if reply.status == 200 {
                        return server;
                    }
                }
                if Instant::now() > deadline {
                    let _ = server.child.kill();
                    panic!("signaal did not become healthy:\n{}", server.log_text());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("could not find a free port for signaal");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, at most `limit`.
    async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a server behind, whatever the test did.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// What the clients were told succeeded: the created resources by identifier value, and the
/// highest acknowledged version of every resource.
#[derive(Default)]
struct Acknowledged {
    created: BTreeMap<String, String>,
    versions: HashMap<String, i64>,
    /// Requests that got no answer (cut off by the kill, or refused afterwards).
    unanswered: usize,
}

impl Acknowledged {
    fn version(&mut self, id: &str, version: i64) {
        let v = self.versions.entry(id.to_owned()).or_insert(0);
        *v = (*v).max(version);
    }
}

fn version_of(body: &Value) -> Option<i64> {
    body["meta"]["versionId"].as_str()?.parse().ok()
}

/// `writers` clients write until `stop` is set: each creates Patients with a unique identifier,
/// every third request updates one of the `hot` Patients instead, and some others create three
/// in a batch Bundle. `pause` is the time
/// between a client's requests. Failed requests (refused connections once the server is gone)
/// are not acknowledged and are not retried.
fn stream_writes(
    client: &Client,
    hot: &[String],
    writers: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let (client, hot, stop, acknowledged) = (
            client.clone(),
            hot.to_vec(),
            stop.clone(),
            acknowledged.clone(),
        );
        tasks.spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if n.is_multiple_of(3) {
                    let id = &hot[(w + n) % hot.len()];
                    let body = json!({"resourceType": "Patient", "id": id,
                        "identifier": [{"system": SYSTEM, "value": id}],
                        "name": [{"family": format!("Writer{w}"), "given": [n.to_string()]}]});
                    match client.put(&format!("Patient/{id}"), &body).await {
                        Ok(reply) if reply.status == 200 => {
                            let version = version_of(&reply.json()).expect("a versionId");
                            acknowledged.lock().unwrap().version(id, version);
                        }
                        Ok(_) => {}
                        Err(_) => acknowledged.lock().unwrap().unanswered += 1,
                    }
                } else if n.is_multiple_of(5) {
                    batch_create(&client, w, n, &acknowledged).await;
                } else {
                    let value = format!("w{w}-{n}");
                    let body = json!({"resourceType": "Patient",
                        "identifier": [{"system": SYSTEM, "value": value}],
                        "name": [{"family": format!("Writer{w}"), "given": [n.to_string()]}]});
                    match client.post("Patient", &body).await {
                        Ok(reply) if reply.status == 201 => {
                            let body = reply.json();
                            let id = body["id"].as_str().expect("an id").to_owned();
                            let mut ack = acknowledged.lock().unwrap();
                            ack.version(&id, version_of(&body).expect("a versionId"));
                            ack.created.insert(value, id);
                        }
                        Ok(_) => {}
                        Err(_) => acknowledged.lock().unwrap().unanswered += 1,
                    }
                }
                tokio::time::sleep(pause).await;
            }
        });
    }
    tasks
}

/// A batch Bundle of three Patient creates, whose entries are acknowledged together (group
/// commit): each entry answered 201 is acknowledged.
async fn batch_create(client: &Client, w: usize, n: usize, acknowledged: &Mutex<Acknowledged>) {
    let values: Vec<String> = (0..3).map(|k| format!("w{w}-{n}-{k}")).collect();
    let entries: Vec<Value> = values
        .iter()
        .map(|value| {
            json!({"resource": {"resourceType": "Patient",
                    "identifier": [{"system": SYSTEM, "value": value}],
                    "name": [{"family": format!("Batch{w}"), "given": [n.to_string()]}]},
                   "request": {"method": "POST", "url": "Patient"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    match client.post("", &bundle).await {
        Ok(reply) if reply.status == 200 => {
            let body = reply.json();
            let mut ack = acknowledged.lock().unwrap();
            for (value, entry) in values
                .iter()
                .zip(body["entry"].as_array().expect("entries"))
            {
                let response = &entry["response"];
                if !response["status"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("201"))
                {
                    continue;
                }
                let location = response["location"].as_str().expect("a location");
                let id = location
                    .split("Patient/")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .expect("a Patient location");
                ack.version(id, 1);
                ack.created.insert(value.clone(), id.to_owned());
            }
        }
        Ok(_) => {}
        Err(_) => acknowledged.lock().unwrap().unanswered += 1,
    }
}

/// Creates the Patients the writers update.
async fn create_hot(client: &Client, acknowledged: &Mutex<Acknowledged>) -> Vec<String> {
    let mut hot = Vec::new();
    for i in 0..3 {
        let id = format!("hot-{i}");
        let body = json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": SYSTEM, "value": id}]});
        let reply = client.put(&format!("Patient/{id}"), &body).await.unwrap();
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        acknowledged.lock().unwrap().version(&id, 1);
        hot.push(id);
    }
    hot
}

/// Checks, on a restarted server, that every acknowledged write is there and nothing is half
/// there. Returns the number of resources checked.
async fn check_consistent(client: &Client, acknowledged: &Acknowledged) -> usize {
    // Every resource of the test, found through the index (including writes that committed but
    // whose response was lost in the crash).
    let mut found: BTreeMap<String, Value> = BTreeMap::new();
    let mut next = Some(format!("Patient?identifier={SYSTEM}%7C&_count=500"));
    while let Some(page) = next.take() {
        let reply = client.get(&page).await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let bundle = reply.json();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = entry["resource"].clone();
            let id = resource["id"]
                .as_str()
                .expect("a searched resource has an id")
                .to_owned();
            assert!(
                found.insert(id.clone(), resource).is_none(),
                "search returned Patient/{id} twice"
            );
        }
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
    }
    for (id, version) in &acknowledged.versions {
        assert!(
            found.contains_key(id),
            "acknowledged Patient/{id} (version {version}) is not found by search"
        );
    }

    let limit = Arc::new(Semaphore::new(8));
    let mut checks = JoinSet::new();
    for (id, searched) in found.clone() {
        let (client, limit) = (client.clone(), limit.clone());
        let acknowledged_version = acknowledged.versions.get(&id).copied();
        checks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            check_resource(&client, &id, &searched, acknowledged_version).await;
        });
    }
    while let Some(joined) = checks.join_next().await {
        joined.expect("resource check");
    }

    // The index agrees with the resources: each acknowledged identifier finds its resource,
    // and only it.
    let mut checks = JoinSet::new();
    for (value, id) in acknowledged.created.clone() {
        let (client, limit) = (client.clone(), limit.clone());
        checks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let reply = client
                .get(&format!("Patient?identifier={SYSTEM}%7C{value}"))
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            let ids: Vec<String> = reply.json()["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids, vec![id], "search by identifier {value}");
        });
    }
    while let Some(joined) = checks.join_next().await {
        joined.expect("identifier check");
    }
    found.len()
}

/// One resource after the restart: readable, valid JSON, at least the acknowledged version,
/// its history complete (every version 1..=current present with its content), what search
/// returned is its current version, and its identifier finds it.
async fn check_resource(client: &Client, id: &str, searched: &Value, acknowledged: Option<i64>) {
    let reply = client.get(&format!("Patient/{id}")).await.unwrap();
    assert_eq!(reply.status, 200, "Patient/{id} is readable");
    let current: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("Patient/{id} is not valid JSON ({e})"));
    let version = version_of(&current).expect("a versionId");
    if let Some(acknowledged) = acknowledged {
        assert!(
            version >= acknowledged,
            "Patient/{id} is at version {version}, but version {acknowledged} was acknowledged"
        );
    }
    assert_eq!(
        &current, searched,
        "search returns the current Patient/{id}"
    );

    let reply = client
        .get(&format!("Patient/{id}/_history?_count=1000"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let history = reply.json();
    let versions: Vec<i64> = history["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let resource = &entry["resource"];
            assert_eq!(
                resource["id"], id,
                "a history entry of Patient/{id} has its resource"
            );
            version_of(resource).expect("a history entry has a versionId")
        })
        .collect();
    assert_eq!(
        versions,
        (1..=version).rev().collect::<Vec<_>>(),
        "Patient/{id} has every version up to {version}"
    );

    let value = current["identifier"][0]["value"]
        .as_str()
        .expect("an identifier");
    let reply = client
        .get(&format!("Patient?identifier={SYSTEM}%7C{value}"))
        .await
        .unwrap();
    let ids: Vec<Value> = reply.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(id)],
        "identifier {value} finds Patient/{id}"
    );
}

/// Waits until the writers have `n` acknowledged creates, so the signal lands mid-stream
/// however fast the machine is.
async fn wait_for_creates(acknowledged: &Mutex<Acknowledged>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().created.len() < n {
        assert!(
            Instant::now() < deadline,
            "the writers made fewer than {n} creates in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn database(kind: StoreKind) -> Option<(String, TempDir)> {
    let (url, dir) = fresh_database(kind).await?;
    Some((url, dir.unwrap_or_else(TempDir::new)))
}

async fn sigkill_keeps_acknowledged_writes(kind: StoreKind) {
    let Some((url, dir)) = database(kind).await else {
        return;
    };
    let mut server = Server::start(&url, &dir.0).await;
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let hot = create_hot(&server.client, &acknowledged).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = stream_writes(
        &server.client,
        &hot,
        8,
        Duration::ZERO,
        stop.clone(),
        acknowledged.clone(),
    );
    wait_for_creates(&acknowledged, 50).await;
    server.child.kill().expect("SIGKILL"); // SIGKILL on Unix: no chance to drain
    let status = server.wait(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = writers.join_next().await {
        joined.expect("a writer does not panic");
    }
    assert!(
        status.is_some_and(|s| !s.success()),
        "the server was killed"
    );
    drop(server);

    let server = Server::start(&url, &dir.0).await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let checked = check_consistent(&server.client, &acknowledged).await;
    eprintln!(
        "{kind:?}: SIGKILL after {} acknowledged creates and updates of {} resources, {} \
         requests unanswered; {checked} resources consistent after the restart ({} written but \
         not acknowledged)",
        acknowledged.created.len(),
        hot.len(),
        acknowledged.unanswered,
        checked - acknowledged.versions.len()
    );
}

async fn sigterm_drains(kind: StoreKind) {
    let Some((url, dir)) = database(kind).await else {
        return;
    };
    let mut server = Server::start(&url, &dir.0).await;
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let hot = create_hot(&server.client, &acknowledged).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = stream_writes(
        &server.client,
        &hot,
        4,
        Duration::from_millis(20),
        stop.clone(),
        acknowledged.clone(),
    );
    wait_for_creates(&acknowledged, 20).await;
    let term = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill -TERM runs");
    assert!(term.success(), "kill -TERM {}", server.pid());
    let signalled = Instant::now();
    let status = server.wait(Duration::from_secs(30)).await;
    let drain = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = writers.join_next().await {
        joined.expect("a writer does not panic");
    }
    let log = server.log_text();
    let status =
        status.unwrap_or_else(|| panic!("the server did not exit within 30 s of SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0 ({status}):\n{log}");
    // Draining finishes the requests in flight, which take milliseconds; nothing else may hold
    // the exit up (a schema warm-up still running once did, for 20 s).
    assert!(
        drain < Duration::from_secs(10),
        "the server took {drain:?} to exit after SIGTERM:\n{log}"
    );
    assert!(
        log.contains("draining"),
        "the server said it drains:\n{log}"
    );
    drop(server);

    let server = Server::start(&url, &dir.0).await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let checked = check_consistent(&server.client, &acknowledged).await;
    eprintln!(
        "{kind:?}: SIGTERM drained in {:.2} s with {} acknowledged creates, {} requests \
         unanswered; {checked} resources consistent after the restart",
        drain.as_secs_f64(),
        acknowledged.created.len(),
        acknowledged.unanswered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_sqlite() {
    sigkill_keeps_acknowledged_writes(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_postgres() {
    sigkill_keeps_acknowledged_writes(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sqlite() {
    sigterm_drains(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_postgres() {
    sigterm_drains(StoreKind::Postgres).await;
}

/// SQLite: a server stopped with SIGTERM after a busy run closes every connection and
/// checkpoints its write-ahead logs, leaving only the database and audit log files (no `-wal`,
/// no `-shm`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_only_the_sqlite_database_file() {
    let Some((url, dir)) = database(StoreKind::Sqlite).await else {
        return;
    };
    let mut server = Server::start(&url, &dir.0).await;
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let hot = create_hot(&server.client, &acknowledged).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = stream_writes(
        &server.client,
        &hot,
        4,
        Duration::ZERO,
        stop.clone(),
        acknowledged.clone(),
    );
    wait_for_creates(&acknowledged, 50).await;
    // Reads too, so the reader pool holds connections of its own.
    for _ in 0..20 {
        let reply = server.client.get("Patient?_count=5").await.unwrap();
        assert_eq!(reply.status, 200);
    }
    // And reads by id that go on through the shutdown: they take SQLite connections of their
    // own (decision 0046), which must not be opened again, or kept, once the store closes.
    for _ in 0..2 {
        let (client, hot, stop) = (server.client.clone(), hot.clone(), stop.clone());
        writers.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if client
                    .get(&format!("Patient/{}", hot[i % hot.len()]))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i += 1;
            }
        });
    }
    let wal = dir.0.join("signaal.db-wal");
    assert!(wal.exists(), "a busy server has a write-ahead log");
    let term = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill -TERM runs");
    assert!(term.success());
    let status = server.wait(Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = writers.join_next().await {
        joined.expect("a writer does not panic");
    }
    let log = server.log_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM exits 0:\n{log}"
    );
    // The background workers end their rounds before the store closes: none fails for it.
    assert!(
        !log.contains("scoring failed") && !log.contains("failed a round"),
        "a worker met the closing store:\n{log}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("signaal.db"))
        .collect();
    files.sort();
    // The database and its audit log (decision 0032), each without `-wal` or `-shm`.
    assert_eq!(
        files,
        ["signaal.db", "signaal.db-audit"],
        "what the stopped server left:\n{log}"
    );
}
