//! Several `signaal serve` instances on one PostgreSQL database behave as one (issue 13 item 6,
//! decision 0036): each subscription event is matched, numbered and delivered by one server
//! (the holder of the worker lease), and by another when that one dies; each queued patient is
//! claimed by one server; search parameters, subscription topics and client registrations
//! written through one server are in force on the others.
//!
//! On SQLite a database file has one process (docs/operations.md), so the server tests here run
//! on PostgreSQL only; the claim test runs on both.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::auth::{fixture, Secured};
use common::process::Process;
use common::receiver::Receiver;
use common::{expect_status, StoreKind, TestServer};
use serde_json::{json, Value};
use signaal::store::auth::ClientRecord;

const IG: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
const FLAG_TOPIC: &str = "https://signaal.dev/fhir/SubscriptionTopic/flag";
const WAIT: Duration = Duration::from_secs(30);

fn flag_subscription(patient: &str, endpoint: &str) -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "two servers, one subscriber",
        "criteria": FLAG_TOPIC,
        "_criteria": {"extension": [{"url": format!("{IG}/backport-filter-criteria"),
            "valueString": format!("Flag?patient=Patient/{patient}")}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{IG}/backport-payload-content"), "valueCode": "id-only"}]},
        }
    })
}

fn flag(patient: &str) -> Value {
    json!({
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "two servers"},
        "subject": {"reference": format!("Patient/{patient}")},
    })
}

/// The notified Flag ids and their event numbers, until every id of `expected` came (or the
/// wait is over: panics with what is missing).
async fn notified_until(
    receiver: &Receiver,
    expected: &BTreeSet<String>,
    notified: &mut Vec<(i64, String)>,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen: BTreeSet<String> = notified.iter().map(|(_, id)| id.clone()).collect();
        if expected.is_subset(&seen) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(received) = receiver.next_of("event-notification", left).await else {
            panic!(
                "not notified: {:?}",
                expected.difference(&seen).collect::<Vec<_>>()
            );
        };
        let numbers = received.event_numbers();
        let entries = received.body["entry"].as_array().unwrap();
        for (number, entry) in numbers.iter().zip(entries.iter().skip(1)) {
            let url = entry["fullUrl"].as_str().unwrap();
            notified.push((*number, url.rsplit('/').next().unwrap().to_owned()));
        }
    }
}

async fn post_flag(server: &Process, patient: &str) -> String {
    let reply = server.client.post("Flag", &flag(patient)).await.unwrap();
    assert_eq!(reply.status, 201);
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// Two servers, writes through both: one handshake, and every event notified once, in order;
/// kill -9 the server that delivers and the other takes over, losing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_delivered_once_and_taken_over_when_its_server_dies() {
    let Some((url, _)) = common::fresh_database(StoreKind::Postgres).await else {
        return;
    };
    let logs = common::TempDir::new();
    // The first server takes the worker lease; the second finds it held.
    let mut first = Process::start(&url, &logs.0).await;
    let second = Process::start(&url, &logs.0).await;
    let receiver = Receiver::start().await;
    let patient = json!({"resourceType": "Patient", "id": "two-p1"});
    assert_eq!(
        second
            .client
            .put("Patient/two-p1", &patient)
            .await
            .unwrap()
            .status,
        201
    );
    // Created through the server that does not deliver.
    let created = second
        .client
        .post("Subscription", &flag_subscription("two-p1", &receiver.url))
        .await
        .unwrap();
    assert_eq!(created.status, 201);
    receiver
        .next_of("handshake", WAIT)
        .await
        .expect("a handshake");

    let mut written = BTreeSet::new();
    for i in 0..20 {
        let server = if i % 2 == 0 { &first } else { &second };
        written.insert(post_flag(server, "two-p1").await);
    }
    let mut notified = Vec::new();
    notified_until(&receiver, &written, &mut notified).await;
    // Once each, numbered 1..=20 in order.
    let numbers: Vec<i64> = notified.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>(), "{notified:?}");
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, id) in &notified {
        *times.entry(id).or_default() += 1;
    }
    assert!(times.values().all(|n| *n == 1), "{times:?}");
    assert!(
        receiver
            .next_of("handshake", Duration::from_millis(500))
            .await
            .is_none(),
        "a second handshake: both servers handled the subscription"
    );

    // The server that delivers dies; the other takes the lease and goes on.
    first.kill();
    let mut after = BTreeSet::new();
    for _ in 0..10 {
        after.insert(post_flag(&second, "two-p1").await);
    }
    let mut later = Vec::new();
    notified_until(&receiver, &after, &mut later).await;
    let numbers: BTreeSet<i64> = later
        .iter()
        .filter(|(_, id)| after.contains(id))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(numbers, (21..=30).collect(), "{later:?}");
    assert!(
        second
            .log_text()
            .contains("this server runs the subscription worker"),
        "{}",
        second.log_text()
    );
}

/// Two stores on one database claim queued patients at the same moment: never the same one,
/// and a claim whose server went away lapses.
async fn two_servers_claim_different_patients(kind: StoreKind) {
    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let one = signaal::store::open(&url).await.unwrap();
    let two = signaal::store::open(&url).await.unwrap();
    let now = 1_000_000;
    for i in 0..40 {
        one.queue_patient(&format!("claim-p{i:02}"), now)
            .await
            .unwrap();
    }
    let until = now + 60_000;
    let (a, b) = tokio::join!(one.claim(25, now, until), two.claim(25, now, until));
    let (a, b) = (a.unwrap(), b.unwrap());
    let a: BTreeSet<String> = a.into_iter().map(|q| q.patient).collect();
    let b: BTreeSet<String> = b.into_iter().map(|q| q.patient).collect();
    assert!(a.is_disjoint(&b), "claimed twice: {:?}", a.intersection(&b));
    assert_eq!(a.len() + b.len(), 40);
    assert!(two.claim(25, now + 1, until).await.unwrap().is_empty());
    // Scored and taken off by the one, while the other's claims lapse (its server died).
    for patient in &a {
        one.dequeue(patient, 1).await.unwrap();
    }
    let retaken = one.claim(50, until, until + 60_000).await.unwrap();
    let retaken: BTreeSet<String> = retaken.into_iter().map(|q| q.patient).collect();
    assert_eq!(retaken, b);
    one.close().await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_claim_different_patients_sqlite() {
    two_servers_claim_different_patients(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_claim_different_patients_postgres() {
    two_servers_claim_different_patients(StoreKind::Postgres).await;
}

/// Polls `check` until it holds; panics after `WAIT`. Returns how long it took.
async fn until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// A SearchParameter and a subscription topic posted through one server are in force on the
/// other: it searches and indexes with the parameter, lists the topic and runs subscriptions
/// on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_reach_the_other_server() {
    let Some((url, _)) = common::fresh_database(StoreKind::Postgres).await else {
        return;
    };
    let one = TestServer::start_on(url.clone(), None, |_| {}).await;
    let two = TestServer::start_on(url, None, |_| {}).await;
    let parameter = json!({
        "resourceType": "SearchParameter",
        "url": "http://example.org/fhir/SearchParameter/patient-birth-place-city",
        "name": "birth-place-city", "status": "active",
        "description": "The city in the patient's first address",
        "code": "birth-place-city", "base": ["Patient"], "type": "string",
        "expression": "Patient.address.city"
    });
    expect_status(
        &one.client
            .post("SearchParameter", &parameter)
            .await
            .unwrap(),
        201,
    );
    // Strict handling: a parameter the server does not know yet is a 400, not ignored.
    let took = until("the parameter on the other server", || async {
        two.client
            .send(
                "GET",
                "Patient?birth-place-city=Zwolle",
                &[("Prefer", "handling=strict")],
                None,
            )
            .await
            .unwrap()
            .status
            == 200
    })
    .await;
    eprintln!("SearchParameter in force on the other server after {took:?}");
    // The other server indexes its own writes with it.
    let patient = json!({"resourceType": "Patient", "address": [{"city": "Zwolle"}]});
    let id = expect_status(&two.client.post("Patient", &patient).await.unwrap(), 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let found = expect_status(
        &two.client
            .get("Patient?birth-place-city=Zwolle")
            .await
            .unwrap(),
        200,
    );
    assert_eq!(found["entry"][0]["resource"]["id"], id.as_str(), "{found}");

    // A topic posted through the second server is listed by the first.
    let x = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.";
    let topic_url = "https://example.org/topics/immunization-given";
    let topic = json!({
        "resourceType": "Basic",
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
        "extension": [
            {"url": format!("{x}url"), "valueUri": topic_url},
            {"url": format!("{x}resourceTrigger"), "extension": [
                {"url": "resource", "valueUri": "Immunization"},
                {"url": "supportedInteraction", "valueCode": "create"},
            ]},
            {"url": format!("{x}canFilterBy"), "extension": [
                {"url": "resource", "valueUri": "Immunization"},
                {"url": "filterParameter", "valueString": "patient"},
            ]},
        ],
    });
    expect_status(&two.client.post("Basic", &topic).await.unwrap(), 201);
    for server in [&one, &two] {
        let took = until("the topic in the CapabilityStatement", || async {
            let cs = server.client.get("metadata").await.unwrap().json();
            cs["rest"][0]["resource"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["type"] == "Subscription")
                .flat_map(|r| r["extension"].as_array().cloned().unwrap_or_default())
                .any(|e| e["valueCanonical"] == topic_url)
        })
        .await;
        eprintln!("topic listed after {took:?}");
    }
}

/// A client registered, or removed, is known to every server: a token from one server's token
/// endpoint works on the other (servers behind one load balancer share the public base URL, the
/// tokens' audience), and stops working there once the client is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_changes_reach_the_other_server() {
    let Some((url, _)) = common::fresh_database(StoreKind::Postgres).await else {
        return;
    };
    let server = TestServer::start_on(url.clone(), None, |s| s.auth.required = true).await;
    let (_, clients) = signaal::store::open_with_auth(&url).await.unwrap();
    let one = Secured { server, clients };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let public = one.server.base.clone();
    let _two = TestServer::start_on(url, None, |s| {
        s.auth.required = true;
        s.listen = format!("127.0.0.1:{port}").parse().unwrap();
        s.base_url = Some(public);
    })
    .await;
    let two = signaal::client::Client::new(&format!("http://127.0.0.1:{port}/fhir"));
    one.clients
        .add_client(&ClientRecord {
            id: "roaming".into(),
            name: "a client of both servers".into(),
            jwks: Some(fixture("client.jwks.json")),
            jwks_url: None,
            scope: "system/Patient.rs".into(),
            patient: None,
            created: 0,
        })
        .await
        .unwrap();
    let token = one.token("roaming", "system/Patient.rs").await;
    let bearer = format!("Bearer {token}");
    let status_on_two = || async {
        two.send("GET", "Patient", &[("authorization", &bearer)], None)
            .await
            .unwrap()
            .status
    };
    let took = until("the token accepted by the other server", || async {
        status_on_two().await == 200
    })
    .await;
    eprintln!("registration in force on the other server after {took:?}");
    one.clients.remove_client("roaming").await.unwrap();
    let took = until("the token refused by the other server", || async {
        status_on_two().await == 401
    })
    .await;
    eprintln!("removal in force on the other server after {took:?}");
}
