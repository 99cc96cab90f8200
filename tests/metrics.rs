//! `GET /metrics` (issue 16, item 10): Prometheus text format on a listen address of its own,
//! off unless `--metrics-listen` asks for it; requests by interaction and status, latency
//! histograms, store pools, the scoring queue and asynchronous jobs, on both stores.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::{create, expect_status, patient, resource, StoreKind, TestServer};
use serde_json::json;
use signaal::client::Client;

/// A server with `/metrics` on a port of its own and no scoring worker (so queued patients
/// stay queued while the test looks).
async fn with_metrics(kind: StoreKind) -> Option<TestServer> {
    TestServer::start_configured(kind, |settings| {
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.scoring.worker = false;
    })
    .await
}

/// The samples of a scrape, by series (`name{labels}`), after checking the text format: every
/// sample belongs to a family announced by `# HELP` and `# TYPE`, and is `series value`.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let client = Client::new(&format!("http://{addr}"));
    let reply = client.get("metrics").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|f| typed.iter().any(|t| t == f))
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "no # TYPE for {line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

fn requests(samples: &BTreeMap<String, f64>, interaction: &str, status: u16) -> f64 {
    let series =
        format!("signaal_http_requests_total{{interaction=\"{interaction}\",status=\"{status}\"}}");
    samples.get(&series).copied().unwrap_or(0.0)
}

async fn requests_are_counted_by_interaction_and_status(kind: StoreKind) {
    let Some(server) = with_metrics(kind).await else {
        return;
    };
    let addr = server.metrics.expect("the metrics listener runs");
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    let id = create(&server, &patient().family("Meter").json()).await;
    expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    expect_status(
        &server.client.get("Patient/nobody-here").await.unwrap(),
        404,
    );
    expect_status(
        &server.client.get("Patient?family=Meter").await.unwrap(),
        200,
    );
    expect_status(&server.client.get("Patient?_count=ten").await.unwrap(), 400);
    expect_status(
        &server
            .client
            .get(&format!("Patient/{id}/$everything"))
            .await
            .unwrap(),
        200,
    );
    let samples = scrape(addr).await;
    assert_eq!(requests(&samples, "create", 201), 1.0, "{samples:#?}");
    assert_eq!(requests(&samples, "read", 200), 2.0);
    assert_eq!(requests(&samples, "read", 404), 1.0);
    assert_eq!(requests(&samples, "search-type", 200), 1.0);
    assert_eq!(requests(&samples, "search-type", 400), 1.0);
    assert_eq!(requests(&samples, "$everything", 200), 1.0);
    // Three reads in the histogram: cumulative buckets ending in all of them.
    let reads = "signaal_http_request_duration_seconds_count{interaction=\"read\"}";
    assert_eq!(samples[reads], 3.0);
    assert_eq!(
        samples["signaal_http_request_duration_seconds_bucket{interaction=\"read\",le=\"+Inf\"}"],
        3.0
    );
    let fastest =
        samples["signaal_http_request_duration_seconds_bucket{interaction=\"read\",le=\"0.001\"}"];
    assert!((0.0..=3.0).contains(&fastest));
    assert!(samples["signaal_http_request_duration_seconds_sum{interaction=\"read\"}"] > 0.0);
    // A scrape is not a FHIR request and does not count itself.
    let again = scrape(addr).await;
    assert_eq!(requests(&again, "read", 200), 2.0);
    assert_eq!(again["signaal_http_requests_in_flight"], 0.0);
}

async fn the_store_the_queue_and_the_jobs_are_reported(kind: StoreKind) {
    let Some(server) = with_metrics(kind).await else {
        return;
    };
    let addr = server.metrics.unwrap();
    let before = scrape(addr).await;
    assert_eq!(before["signaal_store_up"], 1.0);
    let pools: Vec<&str> = match kind {
        StoreKind::Sqlite => vec!["reader", "writer"],
        StoreKind::Postgres => vec!["main"],
    };
    for pool in &pools {
        let max = before[&format!("signaal_store_connections_max{{pool=\"{pool}\"}}")];
        let in_use =
            before[&format!("signaal_store_connections{{pool=\"{pool}\",state=\"in_use\"}}")];
        let idle = before[&format!("signaal_store_connections{{pool=\"{pool}\",state=\"idle\"}}")];
        assert!(max >= 1.0 && in_use + idle <= max, "{pool}: {before:#?}");
    }
    // Two patients' measurements queue them for scoring; no worker runs to take them off.
    for family in ["Queued", "Waiting"] {
        let id = create(&server, &patient().family(family).json()).await;
        create(
            &server,
            &resource("Observation")
                .set("status", "final")
                .set("code", json!({"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}))
                .set("subject", json!({"reference": format!("Patient/{id}")}))
                .set("valueQuantity", json!({"value": 80, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}))
                .json(),
        )
        .await;
    }
    let after = scrape(addr).await;
    assert_eq!(
        after["signaal_scoring_queue_patients{state=\"due\"}"], 2.0,
        "{after:#?}"
    );
    assert_eq!(
        after["signaal_scoring_queue_patients{state=\"parked\"}"],
        0.0
    );
    assert!(after["signaal_scoring_queue_oldest_due_seconds"] >= 0.0);
    for kind in ["export", "reindex"] {
        assert_eq!(
            after[&format!("signaal_async_jobs{{kind=\"{kind}\",state=\"running\"}}")],
            0.0
        );
    }
    // A synchronous $reindex of one type is counted as the operation.
    let reply = server
        .client
        .send("POST", "Observation/$reindex", &[], None)
        .await
        .unwrap();
    expect_status(&reply, 200);
    assert_eq!(requests(&scrape(addr).await, "$reindex", 200), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_interaction_and_status_sqlite() {
    requests_are_counted_by_interaction_and_status(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_interaction_and_status_postgres() {
    requests_are_counted_by_interaction_and_status(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_the_queue_and_the_jobs_are_reported_sqlite() {
    the_store_the_queue_and_the_jobs_are_reported(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_the_queue_and_the_jobs_are_reported_postgres() {
    the_store_the_queue_and_the_jobs_are_reported(StoreKind::Postgres).await;
}

#[tokio::test]
async fn metrics_are_off_unless_asked_for_and_never_on_the_fhir_port() {
    let server = TestServer::start(StoreKind::Sqlite).await.unwrap();
    assert!(server.metrics.is_none());
    let root = server.base.trim_end_matches("/fhir");
    let reply = server.client.get(&format!("{root}/metrics")).await.unwrap();
    expect_status(&reply, 404);
}

#[tokio::test]
async fn a_metrics_address_in_use_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (database_url, _dir) = common::fresh_database(StoreKind::Sqlite).await.unwrap();
    let mut settings = signaal::server::Settings::new("127.0.0.1:0".parse().unwrap(), database_url);
    settings.metrics_listen = Some(addr);
    match signaal::server::start(&settings).await {
        Err(e) => assert!(e.to_string().contains(&addr.to_string()), "{e}"),
        Ok(_) => panic!("started although {addr} is taken"),
    }
}
