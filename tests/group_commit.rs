//! Writes committed together (group commit, decisions 0042 and 0049), on both stores:
//! concurrent writes are all acknowledged and readable with their versions, a write that fails
//! among concurrent ones fails alone (or, written without a savepoint, makes the others of its
//! group write again: decision 0055), a write whose client goes away is stored whole or not at
//! all, and a batch Bundle's entries are answered once durable, each on its own.
//! (That acknowledged writes survive `kill -9` is `tests/durability.rs`.)

mod common;

use common::concurrent::all_at_once;
use common::{expect_status, TestServer};
use serde_json::{json, Value};
use signaal::client::Client;

const SYSTEM: &str = "http://example.org/group-commit";

/// A heart-rate Observation with identifier `value`.
fn observation(value: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": SYSTEM, "value": value}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 61, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
    })
}

fn version_of(body: &Value) -> String {
    body["meta"]["versionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no meta.versionId in {body}"))
        .to_owned()
}

/// Request `i` of many sent at once: every other one (even `i`) is given up by its client after
/// 1 to 200 ms, whatever stage its write has reached (`None`); the others are waited for.
async fn impatient_every_other<F: std::future::Future>(i: usize, request: F) -> Option<F::Output> {
    if i.is_multiple_of(2) {
        let patience = std::time::Duration::from_millis((i * 7 % 200) as u64 + 1);
        tokio::time::timeout(patience, request).await.ok()
    } else {
        Some(request.await)
    }
}

/// The ids the identifier `value` finds.
async fn found_by_identifier(client: &Client, value: &str) -> Vec<String> {
    let reply = client
        .get(&format!("Observation?identifier={SYSTEM}%7C{value}"))
        .await
        .unwrap();
    expect_status(&reply, 200)["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates an Observation and returns its id.
async fn created(server: &TestServer, value: &str) -> String {
    let reply = server
        .client
        .post("Observation", &observation(value))
        .await
        .unwrap();
    expect_status(&reply, 201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

both_stores!(
    concurrent_creates_are_all_acknowledged_and_readable,
    |server| {
        let client = &server.client;
        let replies = all_at_once(client, 32, |client, i| async move {
            client
                .post("Observation", &observation(&format!("c{i}")))
                .await
                .unwrap()
        })
        .await;
        let mut ids = Vec::new();
        for (i, reply) in replies.iter().enumerate() {
            let body = expect_status(reply, 201);
            assert_eq!(version_of(&body), "1", "create {i} is version 1");
            ids.push(body["id"].as_str().unwrap().to_owned());
        }
        // Then each updated at once: every one at version 2.
        let targets = ids.clone();
        let replies = all_at_once(client, 32, move |client, i| {
            let id = targets[i].clone();
            async move {
                let mut body = observation(&format!("c{i}"));
                body["id"] = json!(id);
                body["status"] = json!("amended");
                client
                    .put(&format!("Observation/{id}"), &body)
                    .await
                    .unwrap()
            }
        })
        .await;
        for reply in &replies {
            assert_eq!(version_of(&expect_status(reply, 200)), "2");
        }
        for (i, id) in ids.iter().enumerate() {
            let reply = client.get(&format!("Observation/{id}")).await.unwrap();
            let body = expect_status(&reply, 200);
            assert_eq!(version_of(&body), "2", "Observation/{id}");
            assert_eq!(body["status"], "amended");
            let reply = client
                .get(&format!("Observation/{id}/_history/1"))
                .await
                .unwrap();
            assert_eq!(expect_status(&reply, 200)["status"], "final");
            assert_eq!(
                found_by_identifier(client, &format!("c{i}")).await,
                vec![id.clone()]
            );
        }
    }
);

both_stores!(
    a_failing_write_among_concurrent_writes_fails_alone,
    |server| {
        let client = &server.client;
        // A resource the mismatching If-Match updates aim at, and two that make a conditional
        // create's criteria ambiguous (412).
        let target = created(&server, "target").await;
        created(&server, "twice").await;
        created(&server, "twice").await;
        let target_for = target.clone();
        let replies = all_at_once(client, 30, move |client, i| {
            let target = target_for.clone();
            async move {
                match i % 3 {
                    0 => {
                        let mut body = observation("target");
                        body["id"] = json!(target);
                        body["status"] = json!("cancelled");
                        client
                            .send(
                                "PUT",
                                &format!("Observation/{target}"),
                                &[("if-match", "W/\"7\"")],
                                Some(body.to_string().into_bytes()),
                            )
                            .await
                            .unwrap()
                    }
                    1 => client
                        .send(
                            "POST",
                            "Observation",
                            &[("if-none-exist", &format!("identifier={SYSTEM}|twice"))],
                            Some(observation("twice").to_string().into_bytes()),
                        )
                        .await
                        .unwrap(),
                    _ => client
                        .post("Observation", &observation(&format!("ok{i}")))
                        .await
                        .unwrap(),
                }
            }
        })
        .await;
        for (i, reply) in replies.iter().enumerate() {
            match i % 3 {
                0 | 1 => {
                    expect_status(reply, 412);
                }
                _ => {
                    let id = expect_status(reply, 201)["id"].as_str().unwrap().to_owned();
                    let found = found_by_identifier(client, &format!("ok{i}")).await;
                    assert_eq!(found, vec![id], "create {i} committed");
                }
            }
        }
        let reply = client.get(&format!("Observation/{target}")).await.unwrap();
        let body = expect_status(&reply, 200);
        assert_eq!(version_of(&body), "1", "no mismatching If-Match wrote");
        assert_eq!(body["status"], "final");
        assert_eq!(found_by_identifier(client, "twice").await.len(), 2);
    }
);

both_stores!(
    a_batch_answers_each_entry_once_its_writes_are_durable,
    |server| {
        let client = &server.client;
        let target = created(&server, "batch-target").await;
        let mut entries: Vec<Value> = (0..10)
            .map(|i| {
                json!({"resource": observation(&format!("b{i}")),
                   "request": {"method": "POST", "url": "Observation"}})
            })
            .collect();
        // An update with a mismatching If-Match fails alone.
        let mut stale = observation("batch-target");
        stale["id"] = json!(target);
        stale["status"] = json!("cancelled");
        entries.push(json!({"resource": stale, "request":
        {"method": "PUT", "url": format!("Observation/{target}"), "ifMatch": "W/\"3\""}}));
        // An update of the same resource that matches, then a read that sees it.
        let mut fresh = observation("batch-target");
        fresh["id"] = json!(target);
        fresh["status"] = json!("amended");
        entries.push(json!({"resource": fresh, "request":
        {"method": "PUT", "url": format!("Observation/{target}"), "ifMatch": "W/\"1\""}}));
        entries.push(json!({"request": {"method": "GET", "url": format!("Observation/{target}")}}));
        let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
        let reply = client.post("", &bundle).await.unwrap();
        let body = expect_status(&reply, 200);
        let answers = body["entry"].as_array().unwrap();
        assert_eq!(answers.len(), 13);
        for (i, answer) in answers[..10].iter().enumerate() {
            assert!(
                answer["response"]["status"]
                    .as_str()
                    .unwrap()
                    .starts_with("201"),
                "entry {i}: {answer}"
            );
            assert_eq!(found_by_identifier(client, &format!("b{i}")).await.len(), 1);
        }
        assert!(answers[10]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("412"));
        assert!(answers[11]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("200"));
        assert_eq!(
            answers[12]["resource"]["status"], "amended",
            "the read sees the update"
        );
        assert_eq!(version_of(&answers[12]["resource"]), "2");
    }
);

both_stores!(writes_whose_clients_go_away_are_whole_or_absent, |server| {
    let client = &server.client;
    // Updates that create (client-chosen ids), sent at once; every other one is given up
    // by its client after a few milliseconds, at whatever stage its write has reached
    // (preparing, waiting for the writer, writing, waiting for the commit).
    created(&server, "before").await;
    let n = 40;
    let replies = all_at_once(client, n, |client, i| async move {
        let id = format!("gone-{i}");
        let mut body = observation(&id);
        body["id"] = json!(id);
        let path = format!("Observation/{id}");
        impatient_every_other(i, client.put(&path, &body)).await
    })
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        if let Some(reply) = reply {
            expect_status(&reply.unwrap(), 201);
        } else {
            assert_eq!(i % 2, 0, "only the impatient give up");
        }
    }
    // Each write is all there (its version and its index rows) or not at all; the
    // answered ones are all there.
    for i in 0..n {
        let id = format!("gone-{i}");
        let reply = client.get(&format!("Observation/{id}")).await.unwrap();
        let found = found_by_identifier(client, &id).await;
        match reply.status {
            200 => assert_eq!(found, vec![id.clone()], "{id} is found by its identifier"),
            404 => {
                assert_eq!(i % 2, 0, "{id} was answered, so it is stored");
                assert!(found.is_empty(), "{id} has index rows without its version");
            }
            other => panic!("{id}: status {other}"),
        }
    }
    // And the writer goes on.
    created(&server, "after").await;
    assert_eq!(found_by_identifier(client, "after").await.len(), 1);
});

both_stores!(
    creates_whose_clients_go_away_are_whole_or_absent,
    |server| {
        let client = &server.client;
        // Creates sent at once: on SQLite most join a group without a savepoint (decision 0055),
        // so one that goes away after it began writing rolls its group back, and the others of
        // that group write again. Every other one is given up by its client after a few
        // milliseconds, at whatever stage its write has reached.
        created(&server, "before-create").await;
        let n = 40;
        let replies = all_at_once(client, n, |client, i| async move {
            let body = observation(&format!("gone-create-{i}"));
            impatient_every_other(i, client.post("Observation", &body)).await
        })
        .await;
        let mut answered = std::collections::HashMap::new();
        for (i, reply) in replies.into_iter().enumerate() {
            if let Some(reply) = reply {
                let body = expect_status(&reply.unwrap(), 201);
                answered.insert(i, body["id"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(i % 2, 0, "only the impatient give up");
            }
        }
        // Each create is stored once with its index rows (a write written again after its
        // group was rolled back is not stored twice), or not at all; the answered ones are
        // stored under the id they were answered with.
        for i in 0..n {
            let found = found_by_identifier(client, &format!("gone-create-{i}")).await;
            match answered.get(&i) {
                Some(id) => {
                    assert_eq!(
                        &found,
                        &vec![id.clone()],
                        "create {i} was answered, so it is stored"
                    );
                    let reply = client.get(&format!("Observation/{id}")).await.unwrap();
                    expect_status(&reply, 200);
                }
                None => assert!(
                    found.len() <= 1,
                    "create {i} is stored at most once: {found:?}"
                ),
            }
        }
        // And the writer goes on.
        created(&server, "after-create").await;
        assert_eq!(found_by_identifier(client, "after-create").await.len(), 1);
    }
);

/// A transaction Bundle creating `resources` (each a `POST` of its type).
fn transaction_of(resources: Vec<Value>) -> Value {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            let rtype = resource["resourceType"].as_str().unwrap().to_owned();
            json!({"resource": resource, "request": {"method": "POST", "url": rtype}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
}

both_stores!(
    conditional_creates_given_up_at_any_stage_do_not_stop_the_writes_after_them,
    |server| {
        let client = &server.client;
        // Enough Patients that a `:contains` search over their names takes a while.
        for batch in 0..10 {
            let patients = (0..200)
                .map(|i| {
                    json!({"resourceType": "Patient",
                           "name": [{"family": format!("Seedfamily{batch}x{i}"),
                                     "given": [format!("Seedgiven{batch}x{i}")]}]})
                })
                .collect();
            let reply = client.post("", &transaction_of(patients)).await.unwrap();
            expect_status(&reply, 200);
        }
        // Conditional creates whose clients give up at every stage (waiting for the writer,
        // beginning the group's transaction, their search, the first statement of their
        // transaction, and after): patience from nothing to as long as one takes. After each,
        // a write of a few resources is stored and answered: the one given up leaves neither
        // its search's time limit armed on the writer nor a transaction that nothing ends.
        let conditional_create = |attempt: u64| {
            let patient = json!({"resourceType": "Patient", "name": [{"family": "Nowhere"}]});
            let condition = format!("name:contains=zq{attempt}qz");
            async move {
                let headers = [("If-None-Exist", condition.as_str())];
                client
                    .send(
                        "POST",
                        "Patient",
                        &headers,
                        Some(patient.to_string().into_bytes()),
                    )
                    .await
            }
        };
        let started = std::time::Instant::now();
        expect_status(&conditional_create(1000).await.unwrap(), 201);
        let whole = started.elapsed();
        let attempts = 150u32;
        for attempt in 0..attempts {
            let patience = whole * (attempt % 50) / 50;
            let _ = tokio::time::timeout(patience, conditional_create(attempt.into())).await;
            let observations = (0..8)
                .map(|i| observation(&format!("after-{attempt}-{i}")))
                .collect();
            let reply = client
                .post("", &transaction_of(observations))
                .await
                .unwrap();
            expect_status(&reply, 200);
        }
        assert_eq!(found_by_identifier(client, "after-149-7").await.len(), 1);
    }
);

both_stores!(values_that_look_like_sql_are_written_as_sent, |server| {
    let client = &server.client;
    // A write's statements go together as one text (decision 0049): its values are bound,
    // never spliced into that text, so quotes, `;`, `?` and `?1` are only characters.
    let tricky = "x'); DELETE FROM resource; SELECT ('?1 ? ?2; --";
    let mut body = observation(tricky);
    body["note"] = json!([{"text": tricky}]);
    let reply = client.post("Observation", &body).await.unwrap();
    let id = expect_status(&reply, 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = created(&server, "plain").await;
    // And updated: its old index rows removed, the new ones written, in one call.
    body["id"] = json!(id);
    body["identifier"][0]["value"] = json!(format!("{tricky} again"));
    let reply = client
        .put(&format!("Observation/{id}"), &body)
        .await
        .unwrap();
    expect_status(&reply, 200);
    let read = client.get(&format!("Observation/{id}")).await.unwrap();
    let read = expect_status(&read, 200);
    assert_eq!(read["note"][0]["text"], json!(tricky));
    assert_eq!(read["meta"]["versionId"], json!("2"));
    let encoded = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let again = encoded(&format!("{tricky} again"));
    assert_eq!(found_by_identifier(client, &again).await, vec![id.clone()]);
    assert!(found_by_identifier(client, &encoded(tricky))
        .await
        .is_empty());
    assert_eq!(found_by_identifier(client, "plain").await, vec![other]);
});

both_stores!(
    transactions_whose_clients_go_away_are_whole_or_absent,
    |server| {
        let client = &server.client;
        // Transactions of more than 8 writes (their statements sent one by one, the member's
        // savepoint released by the last) and of a few (sent as one text), given up by their
        // clients after anything from nothing to as long as one takes, beside others.
        let transaction = |tag: String, size: usize| {
            let resources = (0..size)
                .map(|i| observation(&format!("{tag}-{i}")))
                .collect();
            transaction_of(resources)
        };
        let started = std::time::Instant::now();
        let reply = client
            .post("", &transaction("whole".into(), 20))
            .await
            .unwrap();
        expect_status(&reply, 200);
        let whole = started.elapsed();
        let mut tasks = tokio::task::JoinSet::new();
        for attempt in 0..24u32 {
            let size = if attempt % 2 == 0 { 20 } else { 4 };
            let (client, body) = (client.clone(), transaction(format!("t{attempt}"), size));
            let patience = whole * (attempt % 12) / 10;
            tasks.spawn(async move {
                let post = client.post("", &body);
                let answered = tokio::time::timeout(patience, post).await.ok();
                (attempt, size, answered.map(|reply| reply.unwrap().status))
            });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined.unwrap());
        }
        for (attempt, size, status) in outcomes {
            let mut stored = 0;
            for i in 0..size {
                stored += found_by_identifier(client, &format!("t{attempt}-{i}"))
                    .await
                    .len();
            }
            match status {
                Some(status) => {
                    assert_eq!(status, 200, "transaction {attempt}");
                    assert_eq!(stored, size, "transaction {attempt} was answered");
                }
                None => assert!(
                    stored == 0 || stored == size,
                    "transaction {attempt} given up: {stored} of its {size} resources stored"
                ),
            }
        }
        let reply = client
            .post("", &transaction("after".into(), 12))
            .await
            .unwrap();
        expect_status(&reply, 200);
    }
);
