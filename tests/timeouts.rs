//! Work bounded in time: clients too slow to send a request, idle connections, the connection
//! limit, the shutdown deadline, and the time budget of searches.

mod common;

use std::time::{Duration, Instant};

use common::{expect_status, patient, StoreKind, TestServer};
use signaal::http::connection::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short connection timeouts, for the tests that wait for them.
fn short() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

async fn sqlite_with(limits: Limits) -> TestServer {
    TestServer::start_configured(StoreKind::Sqlite, |s| s.connections = limits)
        .await
        .unwrap()
}

/// The server's `host:port`.
fn address(server: &TestServer) -> String {
    server
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir")
        .to_owned()
}

/// Reads until the server closes the connection (or resets it); what was read. Gives up
/// (panics) after a minute.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed the connection");
    bytes
}

#[tokio::test]
async fn a_client_sending_half_a_head_is_disconnected_after_the_header_read_timeout() {
    let server = sqlite_with(short()).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nAccept: application/fhir")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_disconnected_after_the_header_read_timeout() {
    let limits = Limits {
        keep_alive_timeout: Duration::from_secs(600),
        ..short()
    };
    let server = sqlite_with(limits).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    until_closed(&mut stream).await;
}

#[tokio::test]
async fn a_half_sent_body_gets_408_after_the_body_read_timeout() {
    let server = sqlite_with(short()).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    stream
        .write_all(
            b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n\
              Content-Length: 100\r\n\r\n{\"resourceType\":",
        )
        .await
        .unwrap();
    let answer = String::from_utf8(until_closed(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"OperationOutcome\""), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    // Nothing was created.
    let reply = server.client.get("Patient").await.unwrap();
    assert_eq!(expect_status(&reply, 200)["total"], 0);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_keep_alive_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(600),
        ..short()
    };
    let server = sqlite_with(limits).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then the connection stays open until it has been idle too long.
    let answer = String::from_utf8(until_closed(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(600),
        keep_alive_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let server = sqlite_with(limits).await;
    let first = TcpStream::connect(address(&server)).await.unwrap();
    let _second = TcpStream::connect(address(&server)).await.unwrap();
    let client = server.client.clone();
    let third = tokio::spawn(async move { client.get("metadata").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served");
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(60), third)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    expect_status(&reply, 200);
}

#[tokio::test]
async fn sigterm_with_a_stuck_client_exits_by_the_shutdown_deadline() {
    use std::process::{Command, Stdio};
    let dir = common::TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_signaal"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-scoring",
        ])
        .args([
            "--database",
            &format!("sqlite://{}", dir.0.join("db").display()),
        ])
        .args(["--body-read-timeout", "600", "--header-read-timeout", "600"])
        .args(["--shutdown-timeout", "1"])
        .env_remove("SIGNAAL_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = signaal::client::Client::new(&format!("http://127.0.0.1:{port}/fhir"));
    let mut ready = false;
    for _ in 0..600 {
        if client.get("metadata").await.is_ok_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A transaction whose body never ends: its request is in progress when SIGTERM comes.
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stuck
        .write_all(
            b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n\
              Content-Length: 100000\r\n\r\n{\"resourceType\":\"Bundle\",",
        )
        .await
        .unwrap();
    // And one that never ends its head.
    let mut half = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    half.write_all(b"GET /fhir/metadata HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut status = None;
    while signalled.elapsed() < Duration::from_secs(60) {
        if let Some(exit) = child.try_wait().unwrap() {
            status = Some(exit);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // (Reaped already when it exited.)
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "the server did not start");
    let status = status.expect("the server exits after SIGTERM although clients are stuck");
    assert!(status.success(), "{status:?}");
    // The deadline, not the stuck clients, ended it.
    assert!(signalled.elapsed() >= Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// the time budget of searches
// ---------------------------------------------------------------------------------------------

/// A Patient with a thousand given names of a thousand characters each (each its own index
/// row).
fn patient_with_long_names() -> serde_json::Value {
    let given: Vec<String> = (0..1000)
        .map(|i| format!("{i:04}{}", "q".repeat(996)))
        .collect();
    serde_json::json!({"resourceType": "Patient", "name": [{"family": "Long", "given": given}]})
}

/// Criteria that cost far more than their size: `name:contains` with a thousand values that
/// match nothing, so that each is compared with every kilobyte name of every Patient.
fn expensive_criteria() -> String {
    let values: Vec<String> = (0..1000).map(|v| format!("z{v}")).collect();
    format!("name:contains={}", values.join(","))
}

/// A server whose requests' searches may run `timeout` in all, with `patients` Patients of a
/// thousand long names: the expensive criteria take about 9 s per Patient on SQLite, 5 s on
/// PostgreSQL (debug build).
async fn seeded(kind: StoreKind, timeout: Duration, patients: usize) -> Option<TestServer> {
    let server = TestServer::start_configured(kind, |s| s.search_budget.timeout = timeout).await?;
    for _ in 0..patients {
        common::create(&server, &patient_with_long_names()).await;
    }
    Some(server)
}

/// A test run once per store on a server made by `start(kind)`.
macro_rules! both_stores_with {
    ($name:ident, |$kind:ident| $start:expr, |$server:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($kind: StoreKind) {
                let Some($server) = $start else { return };
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(StoreKind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(StoreKind::Postgres).await;
            }
        }
    };
}

/// The diagnostics of a 400 `too-costly` OperationOutcome.
fn too_costly(reply: &signaal::client::Reply) -> String {
    let outcome = expect_status(reply, 400);
    assert_eq!(outcome["issue"][0]["code"], "too-costly", "{outcome}");
    outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_owned()
}

both_stores_with!(
    a_search_past_its_time_budget_is_stopped_with_400_too_costly,
    |kind| seeded(kind, Duration::from_millis(200), 1).await,
    |server| {
        let reply = server
            .client
            .get(&format!("Patient?{}", expensive_criteria()))
            .await
            .unwrap();
        assert!(too_costly(&reply).contains("search-timeout"));
    }
);

both_stores_with!(
    a_conditional_create_whose_search_is_past_the_time_budget_is_stopped_with_400,
    |kind| seeded(kind, Duration::from_millis(200), 1).await,
    |server| {
        let reply = server
            .client
            .send(
                "POST",
                "Patient",
                &[("if-none-exist", &expensive_criteria())],
                Some(patient().family("New").json().to_string().into_bytes()),
            )
            .await
            .unwrap();
        too_costly(&reply);
        // Nothing was created.
        let all = server.client.get("Patient?family=New").await.unwrap();
        assert_eq!(expect_status(&all, 200)["total"], 0);
    }
);

/// Sends `request` on a new connection and goes away after a while, without waiting for
/// the answer (its search is running by then).
async fn abandon(server: &TestServer, request: String) {
    let mut stream = TcpStream::connect(address(server)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(stream);
}

// Four searches that would run for a minute hold all of SQLite's reader connections; once
// their clients have gone, the connections are free for the next search at once (were the
// searches still running, it would wait for one for 30 s and get 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_searches_stop_and_free_their_connections_on_sqlite() {
    let server = seeded(StoreKind::Sqlite, Duration::from_secs(600), 6)
        .await
        .unwrap();
    let request = format!(
        "GET /fhir/Patient?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        expensive_criteria()
    );
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (server_address, request) = (address(&server), request.clone());
        clients.spawn(async move {
            let mut stream = TcpStream::connect(server_address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        });
    }
    while clients.join_next().await.is_some() {}
    let reply = server
        .client
        .get("Patient?family=Long&_summary=count")
        .await
        .unwrap();
    assert_eq!(expect_status(&reply, 200)["total"], 6);
}

// A conditional create whose search would run for a minute holds SQLite's one writer; once
// its client has gone, the next write goes ahead at once (it would wait 30 s and get 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_conditional_create_stops_and_frees_the_writer_on_sqlite() {
    let server = seeded(StoreKind::Sqlite, Duration::from_secs(600), 6)
        .await
        .unwrap();
    let body = patient().family("New").json().to_string();
    abandon(
        &server,
        format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n\
             If-None-Exist: {}\r\nContent-Length: {}\r\n\r\n{body}",
            expensive_criteria(),
            body.len()
        ),
    )
    .await;
    common::create(&server, &patient().family("After").json()).await;
    let abandoned = server.client.get("Patient?family=New").await.unwrap();
    assert_eq!(expect_status(&abandoned, 200)["total"], 0);
}

// On PostgreSQL the statement of a search whose client went away disappears from
// pg_stat_activity within seconds (it would run for most of a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_search_stops_running_on_postgres() {
    use sqlx::Connection;
    let Some(server) = seeded(StoreKind::Postgres, Duration::from_secs(600), 8).await else {
        return;
    };
    let mut admin = sqlx::PgConnection::connect(&server.database_url)
        .await
        .unwrap();
    const RUNNING: &str =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%idx_string%'";
    macro_rules! running {
        () => {
            sqlx::query_scalar::<_, i64>(RUNNING).fetch_one(&mut admin)
        };
    }
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let request = format!(
        "GET /fhir/Patient?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        expensive_criteria()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        running!().await.unwrap(),
        1,
        "the search runs while its client waits"
    );
    drop(stream);
    let mut left = Vec::new();
    for _ in 0..200 {
        let n = running!().await.unwrap();
        left.push(n);
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        left.last(),
        Some(&0),
        "still running after its client went away: {left:?}"
    );
}
