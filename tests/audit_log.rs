//! The audit log (issue 13, decision 0032) through the HTTP API, on both stores: a request
//! leaves one compact row and no resource, the rows are AuditEvents to read and search by each
//! parameter, retention removes old entries, a transaction has one Provenance naming every
//! target, and commits wake the risk scorer without its poll.

mod common;

use std::time::Duration;

use chrono::{Duration as Span, SecondsFormat, Utc};
use common::auth::{audit_events_until, observation, Secured};
use common::{expect_status, fresh_database, StoreKind, TestServer};
use serde_json::{json, Value};
use signaal::store::audit::{self, Actor, AuditEntry, AuditQuery, EventKind};
use signaal::store::HistoryQuery;

/// The rows of the audit log, newest first, read from the store once `done` holds for them
/// (the log is written behind the requests; bounded wait).
async fn rows_until(url: &str, done: impl Fn(&[AuditEntry]) -> bool) -> Vec<AuditEntry> {
    let log = audit::open(url).await.unwrap();
    let query = AuditQuery {
        count: 1_000,
        ..Default::default()
    };
    for _ in 0..200 {
        let rows = log.search(&query).await.unwrap();
        if done(&rows) {
            log.close().await;
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the audit log never became what was expected");
}

/// How many resource versions the store holds (system history).
async fn resource_versions(url: &str) -> usize {
    let store = signaal::store::open(url).await.unwrap();
    let versions = store
        .history(&HistoryQuery {
            count: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    store.close().await;
    versions
}

both_stores!(
    a_read_leaves_one_compact_audit_row_and_no_resource,
    |server| {
        let patient = json!({"resourceType": "Patient", "id": "read-me"});
        expect_status(
            &server
                .client
                .put("Patient/read-me", &patient)
                .await
                .unwrap(),
            201,
        );
        let url = &server.database_url;
        let before = rows_until(url, |rows| rows.iter().any(|r| r.method == "PUT"))
            .await
            .len();
        let versions = resource_versions(url).await;
        let reply = server
            .client
            .send(
                "GET",
                "Patient/read-me",
                &[("X-Request-Id", "read-once")],
                None,
            )
            .await
            .unwrap();
        expect_status(&reply, 200);
        let once = |r: &AuditEntry| r.request_id.as_deref() == Some("read-once");
        let rows = rows_until(url, |rows| rows.iter().any(once)).await;
        assert_eq!(rows.len(), before + 1, "one row for the read");
        let row = rows.iter().find(|r| once(r)).unwrap();
        assert_eq!(row.interaction.as_deref(), Some("read"));
        assert_eq!(row.actor, Actor::Anonymous);
        assert_eq!(row.patient.as_deref(), Some("read-me"));
        // Compact: the patient tells both the entity and the path.
        assert_eq!((row.entity.as_deref(), row.path.as_deref()), (None, None));
        assert_eq!(
            resource_versions(url).await,
            versions,
            "a read writes no resource"
        );
        // The row, served as an AuditEvent.
        let event = expect_status(
            &server
                .client
                .get(&format!("AuditEvent/{}", row.id()))
                .await
                .unwrap(),
            200,
        );
        assert_eq!(event["id"], row.id().as_str());
        assert_eq!(event["subtype"][0]["code"], "read");
        assert_eq!(event["entity"][0]["what"]["reference"], "Patient/read-me");
        assert_eq!(event["entity"][1]["name"], "GET /Patient/read-me");
        assert_eq!(event["entity"][1]["detail"][0]["valueString"], "read-once");
    }
);

both_stores!(audit_events_cannot_be_written_through_the_api, |server| {
    let event = json!({"resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "recorded": "2025-03-01T10:00:00Z", "agent": [{"requestor": true}],
        "source": {"observer": {"display": "x"}}});
    expect_status(
        &server.client.post("AuditEvent", &event).await.unwrap(),
        403,
    );
    expect_status(
        &server.client.put("AuditEvent/x-1", &event).await.unwrap(),
        403,
    );
    expect_status(&server.client.delete("AuditEvent/x-1").await.unwrap(), 403);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": event, "request": {"method": "POST", "url": "AuditEvent"}}]});
    expect_status(&server.client.post("", &transaction).await.unwrap(), 403);
});

/// The AuditEvents of a search by `token` (first page, up to 100).
async fn found(s: &Secured, token: &str, query: &str) -> Vec<Value> {
    let bundle = expect_status(
        &s.call(
            token,
            "GET",
            &format!("AuditEvent?{query}&_count=100"),
            None,
        )
        .await,
        200,
    );
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

fn agent(event: &Value) -> &str {
    event["agent"][0]["who"]["identifier"]["value"]
        .as_str()
        .unwrap_or("")
}

fn request_line(event: &Value) -> String {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["name"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn lines(events: &[Value]) -> Vec<String> {
    let mut lines: Vec<String> = events.iter().map(request_line).collect();
    lines.sort();
    lines
}

secured!(audit_events_are_searched_by_each_parameter, |s| {
    s.register("writer", "system/*.cruds", None).await;
    s.register("auditor", "system/AuditEvent.rs", None).await;
    let writer = s.token("writer", "system/*.cruds").await;
    let auditor = s.token("auditor", "system/AuditEvent.rs").await;
    let patient = json!({"resourceType": "Patient", "id": "searched"});
    expect_status(
        &s.call(&writer, "PUT", "Patient/searched", Some(&patient))
            .await,
        201,
    );
    let created = expect_status(
        &s.call(
            &writer,
            "POST",
            "Observation",
            Some(&observation("searched", "vital-signs")),
        )
        .await,
        201,
    );
    let obs = created["id"].as_str().unwrap().to_owned();
    expect_status(
        &s.call(&writer, "GET", &format!("Observation/{obs}"), None)
            .await,
        200,
    );
    expect_status(&s.call(&writer, "GET", "Patient/searched", None).await, 200);
    expect_status(
        &s.call(&writer, "GET", "Observation/not-there", None).await,
        404,
    );
    // The log is written in order: once the 404 is there, so is everything before it.
    audit_events_until(&s, &auditor, "outcome=4", |e| !e.is_empty()).await;

    // agent: the client, by id or by its identifier; its token request is a login.
    let by_writer = found(&s, &auditor, "agent=writer").await;
    assert_eq!(by_writer.len(), 6, "{by_writer:#?}");
    assert!(by_writer.iter().all(|e| agent(e) == "writer"));
    let by_identifier = found(&s, &auditor, "agent:identifier=urn:signaal:client|writer").await;
    assert_eq!(lines(&by_identifier), lines(&by_writer));
    assert!(found(&s, &auditor, "agent=nobody").await.is_empty());

    // patient: the events about Patient/searched (its own path), not those of the type.
    assert_eq!(
        lines(&found(&s, &auditor, "patient=searched").await),
        vec!["GET /Patient/searched", "PUT /Patient/searched"]
    );
    // entity: the resource named by the path.
    assert_eq!(
        lines(&found(&s, &auditor, &format!("entity=Observation/{obs}")).await),
        vec![format!("GET /Observation/{obs}")]
    );
    assert_eq!(
        lines(&found(&s, &auditor, "entity=Patient/searched").await),
        vec!["GET /Patient/searched", "PUT /Patient/searched"]
    );
    // outcome: the failure alone, and no failure among the successes.
    let failures = found(&s, &auditor, "outcome=4").await;
    assert_eq!(lines(&failures), vec!["GET /Observation/not-there"]);
    assert_eq!(failures[0]["outcomeDesc"], "HTTP 404");
    let successes = found(&s, &auditor, "outcome=0&agent=writer").await;
    assert_eq!(successes.len(), 5);
    assert!(successes.iter().all(|e| e["outcome"] == "0"));
    // type: the token requests (DICOM User Authentication) and the RESTful ones.
    let logins = found(
        &s,
        &auditor,
        "type=http://dicom.nema.org/resources/ontology/DCM|110114",
    )
    .await;
    let mut clients: Vec<&str> = logins.iter().map(agent).collect();
    clients.sort();
    assert_eq!(clients, vec!["auditor", "writer"]);
    let rest = found(&s, &auditor, "type=rest&agent=writer").await;
    assert_eq!(rest.len(), 5);
    assert!(rest.iter().all(|e| e["type"]["code"] == "rest"));
    // subtype: the restful-interaction, and the login.
    let mut reads = vec![
        "GET /Observation/not-there".to_owned(),
        format!("GET /Observation/{obs}"),
        "GET /Patient/searched".to_owned(),
    ];
    reads.sort();
    assert_eq!(
        lines(&found(&s, &auditor, "subtype=read&agent=writer").await),
        reads
    );
    assert_eq!(
        lines(
            &found(
                &s,
                &auditor,
                "subtype=http://hl7.org/fhir/restful-interaction|create"
            )
            .await
        ),
        vec!["POST /Observation"]
    );
    assert_eq!(found(&s, &auditor, "subtype=110122").await.len(), 2);
    // action.
    assert_eq!(
        lines(&found(&s, &auditor, "action=C").await),
        vec!["POST /Observation"]
    );
    // date: the instant of the create, and what lies after it.
    let create = &found(&s, &auditor, "action=C").await[0];
    let recorded = create["recorded"].as_str().unwrap();
    assert_eq!(
        lines(&found(&s, &auditor, &format!("date={recorded}&agent=writer")).await),
        vec!["POST /Observation"]
    );
    let after = found(&s, &auditor, &format!("date=gt{recorded}&agent=writer")).await;
    assert_eq!(after.len(), 3, "the three reads after it: {after:#?}");
    assert!(found(&s, &auditor, "date=lt2000-01-01").await.is_empty());
    assert_eq!(
        found(&s, &auditor, "date=ge2000-01-01&agent=writer")
            .await
            .len(),
        6
    );

    // Paging, newest first: three pages of two, each entry once.
    let mut seen = Vec::new();
    let mut next = Some("AuditEvent?agent=writer&_count=2".to_owned());
    while let Some(path) = next {
        let page = expect_status(&s.call(&auditor, "GET", &path, None).await, 200);
        for e in page["entry"].as_array().unwrap() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| {
                l["url"]
                    .as_str()
                    .unwrap()
                    .strip_prefix(&format!("{}/", s.server.base))
                    .unwrap()
                    .to_owned()
            });
    }
    let all: Vec<String> = by_writer
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, all, "pages in the order of the whole search");

    // Read by id, and what is not there.
    let id = create["id"].as_str().unwrap();
    let read = expect_status(
        &s.call(&auditor, "GET", &format!("AuditEvent/{id}"), None)
            .await,
        200,
    );
    assert_eq!(&read, create);
    expect_status(
        &s.call(&auditor, "GET", "AuditEvent/1-999999999", None)
            .await,
        404,
    );
    expect_status(
        &s.call(&auditor, "GET", "AuditEvent?no-such-parameter=1", None)
            .await,
        400,
    );

    // Protection: `*` does not reach the log; a patient-bound auditor sees its patient's.
    expect_status(
        &s.call(&writer, "GET", "AuditEvent?agent=writer", None)
            .await,
        403,
    );
    expect_status(
        &s.call(&writer, "GET", &format!("AuditEvent/{id}"), None)
            .await,
        403,
    );
    s.register("ward", "patient/AuditEvent.rs", Some("searched"))
        .await;
    let ward = s.token("ward", "patient/AuditEvent.rs").await;
    let about = found(&s, &ward, "agent=writer").await;
    assert_eq!(
        lines(&about),
        vec!["GET /Patient/searched", "PUT /Patient/searched"]
    );
    expect_status(
        &s.call(&ward, "GET", &format!("AuditEvent/{id}"), None)
            .await,
        404,
    );
});

/// An entry as an earlier run of the server wrote it.
fn entry_at(recorded: i64, request_id: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        recorded,
        event: EventKind::Rest,
        actor: Actor::Anonymous,
        status: 200,
        action: "R".into(),
        method: "GET".into(),
        interaction: Some("search-type".into()),
        client: None,
        patient: None,
        entity: None,
        path: Some("Observation".into()),
        query: None,
        request_id: Some(request_id.into()),
        detail: None,
    }
}

async fn retention_removes_entries_older_than_its_days(kind: StoreKind) {
    let Some((url, dir)) = fresh_database(kind).await else {
        return;
    };
    const DAY: i64 = 86_400_000;
    let now = signaal::fhir::datetime::now_ms();
    let log = audit::open(&url).await.unwrap();
    let mut earlier = vec![
        entry_at(now - 10 * DAY, "ten-days-ago"),
        entry_at(now - 6 * DAY, "six-days-ago"),
    ];
    log.append(&mut earlier).await.unwrap();
    log.close().await;
    let server = TestServer::start_on(url.clone(), dir, |settings| {
        settings.audit.retention_days = Some(7);
    })
    .await;
    let named =
        |rows: &[AuditEntry], id: &str| rows.iter().any(|r| r.request_id.as_deref() == Some(id));
    let rows = rows_until(&url, |rows| !named(rows, "ten-days-ago")).await;
    assert!(named(&rows, "six-days-ago"), "younger than 7 days: kept");
    if kind == StoreKind::Postgres {
        // The old day went as a whole partition.
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&url).await.unwrap();
        let partition = format!("audit_log_d{}", (now - 10 * DAY).div_euclid(DAY));
        let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_class WHERE relname = $1")
            .bind(&partition)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(left, 0, "{partition} dropped");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_entries_sqlite() {
    retention_removes_entries_older_than_its_days(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_entries_postgres() {
    retention_removes_entries_older_than_its_days(StoreKind::Postgres).await;
}

both_stores!(
    the_provenance_of_a_transaction_names_every_target,
    |server| {
        let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "tx-p"},
             "request": {"method": "PUT", "url": "Patient/tx-p"}},
            {"resource": observation("tx-p", "vital-signs"),
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation", "id": "tx-o", "status": "final",
                          "code": {"text": "x"}, "subject": {"reference": "Patient/tx-p"}},
             "request": {"method": "PUT", "url": "Observation/tx-o"}},
        ]});
        let answer = expect_status(&server.client.post("", &transaction).await.unwrap(), 200);
        let mut written: Vec<String> = answer["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let location = e["response"]["location"].as_str().unwrap();
                location
                    .strip_prefix(&format!("{}/", server.base))
                    .unwrap_or(location)
                    .to_owned()
            })
            .collect();
        written.sort();
        for target in ["Patient/tx-p", "Observation/tx-o"] {
            let bundle = expect_status(
                &server
                    .client
                    .get(&format!("Provenance?target={target}"))
                    .await
                    .unwrap(),
                200,
            );
            let entries = bundle["entry"].as_array().unwrap();
            assert_eq!(entries.len(), 1, "one Provenance: {bundle}");
            let provenance = &entries[0]["resource"];
            let mut targets: Vec<String> = provenance["target"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["reference"].as_str().unwrap().to_owned())
                .collect();
            targets.sort();
            assert_eq!(targets, written, "{provenance}");
            assert_eq!(provenance["activity"]["coding"][0]["code"], "CREATE");
        }
        // A single write: one Provenance, one target.
        let mut update = observation("tx-p", "vital-signs");
        update["id"] = json!("tx-o");
        expect_status(
            &server
                .client
                .put("Observation/tx-o", &update)
                .await
                .unwrap(),
            200,
        );
        let bundle = expect_status(
            &server
                .client
                .get("Provenance?target=Observation/tx-o")
                .await
                .unwrap(),
            200,
        );
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(
            entries.len(),
            2,
            "the transaction's and the update's: {bundle}"
        );
        let update = entries
            .iter()
            .map(|e| &e["resource"])
            .find(|p| p["target"].as_array().unwrap().len() == 1)
            .unwrap_or_else(|| panic!("{bundle}"));
        assert_eq!(
            update["target"],
            json!([{"reference": "Observation/tx-o/_history/2"}])
        );
        assert_eq!(update["activity"]["coding"][0]["code"], "UPDATE");
    }
);

// ---- Scoring without polling ------------------------------------------------------------------

/// An instant `hours` from now (negative: in the past).
fn at(hours: i64) -> String {
    (Utc::now() + Span::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A patient with heart failure whose weight rose 2.4 kg in two days: a Flag's worth.
fn weight_gain() -> Value {
    let weight = |when: String, kg: f64| {
        json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/woken"}, "effectiveDateTime": when,
            "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    };
    let post = |resource: Value| {
        let rtype = resource["resourceType"].as_str().unwrap().to_owned();
        json!({"resource": resource, "request": {"method": "POST", "url": rtype}})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "woken"},
         "request": {"method": "PUT", "url": "Patient/woken"}},
        post(json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "88805009"}]},
            "subject": {"reference": "Patient/woken"}})),
        post(weight(at(-48), 80.0)),
        post(weight(at(-1), 82.4)),
    ]})
}

/// Writes the weight gain through `writer` and waits (boundedly) for the Flag it raises.
async fn flag_appears(writer: &TestServer) {
    // The scorer has looked at the empty queue and waits: for a wake-up, or an hour.
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect_status(&writer.client.post("", &weight_gain()).await.unwrap(), 200);
    for _ in 0..300 {
        let reply = writer
            .client
            .get("Flag?status=active&patient=Patient/woken")
            .await
            .unwrap();
        if expect_status(&reply, 200)["entry"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no Flag: the scorer was not woken (its fallback poll is an hour)");
}

async fn a_commit_wakes_the_scorer(kind: StoreKind) {
    let Some(server) = TestServer::start_configured(kind, |settings| {
        settings.scoring.poll = Duration::from_secs(3_600);
    })
    .await
    else {
        return;
    };
    flag_appears(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_scorer_sqlite() {
    a_commit_wakes_the_scorer(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_scorer_postgres() {
    a_commit_wakes_the_scorer(StoreKind::Postgres).await;
}

/// Two servers on one PostgreSQL: the one without a scorer writes, the other's scorer is woken
/// by `NOTIFY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_another_server_wakes_the_scorer_through_notify() {
    let Some(writer) = TestServer::start_configured(StoreKind::Postgres, |settings| {
        settings.scoring.worker = false;
    })
    .await
    else {
        return;
    };
    let scorer = TestServer::start_on(writer.database_url.clone(), None, |settings| {
        settings.scoring.poll = Duration::from_secs(3_600);
    })
    .await;
    flag_appears(&writer).await;
    scorer.stop().await;
    writer.stop().await;
}
