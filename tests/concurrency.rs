//! Concurrent writers on both stores: versions are never lost, duplicated or skipped, `If-Match`
//! lets exactly one of racing updates win, and racing conditional creates and update-as-creates
//! make exactly one resource.
//!
//! Every race starts its clients together behind a barrier, each on its own connection.

mod common;

use common::concurrent::all_at_once;
use common::{expect_status, patient};
use serde_json::{json, Value};
use signaal::client::{Client, Reply};

/// Clients in each race.
const N: usize = 20;

/// A Patient with family name `family`.
fn patient_named(family: &str) -> Value {
    patient().family(family).set("gender", "female").json()
}

/// Sends `N` requests at once: request `i` is `request(client, i)`. Returns the replies in
/// the order of `i`.
async fn race<F, Fut>(client: &Client, request: F) -> Vec<Reply>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    all_at_once(client, N, request).await
}

/// The version ids of a resource's history, newest first, checked to agree with each entry's
/// ETag.
async fn history_versions(client: &Client, path: &str) -> Vec<i64> {
    let reply = client
        .get(&format!("{path}/_history?_count=100"))
        .await
        .unwrap();
    let bundle = expect_status(&reply, 200);
    assert!(
        !bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["relation"] == "next"),
        "the history of {path} fits on one page"
    );
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let etag = entry["response"]["etag"].as_str().expect("an etag");
            let version: i64 = etag
                .trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse()
                .expect("a version etag");
            assert_eq!(
                entry["resource"]["meta"]["versionId"],
                version.to_string(),
                "history entry {entry}"
            );
            version
        })
        .collect()
}

fn version_of(body: &Value) -> i64 {
    body["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no meta.versionId in {body}"))
}

both_stores!(if_match_lets_exactly_one_racing_update_win, |server| {
    let client = &server.client;
    for round in 0..3 {
        let created = client
            .post("Patient", &patient_named("Start"))
            .await
            .unwrap();
        let id = expect_status(&created, 201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("Patient/{id}");
        let replies = {
            let (path, id) = (path.clone(), id.clone());
            race(client, move |client, i| {
                let (path, id) = (path.clone(), id.clone());
                async move {
                    let mut body = patient_named(&format!("Round{round}Writer{i}"));
                    body["id"] = json!(id);
                    client
                        .send(
                            "PUT",
                            &path,
                            &[("if-match", "W/\"1\"")],
                            Some(body.to_string().into_bytes()),
                        )
                        .await
                        .unwrap()
                }
            })
            .await
        };
        let winners: Vec<usize> = (0..N).filter(|i| replies[*i].status == 200).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one update wins");
        for (i, reply) in replies.iter().enumerate() {
            if i != winners[0] {
                expect_status(reply, 412);
            }
        }
        let winner = winners[0];
        assert_eq!(version_of(&replies[winner].json()), 2);
        assert_eq!(history_versions(client, &path).await, vec![2, 1]);
        let current = expect_status(&client.get(&path).await.unwrap(), 200);
        assert_eq!(
            current["name"][0]["family"],
            format!("Round{round}Writer{winner}"),
            "the current version is the winner's"
        );
    }
});

both_stores!(racing_updates_make_contiguous_versions, |server| {
    let client = &server.client;
    let created = client
        .post("Patient", &patient_named("Start"))
        .await
        .unwrap();
    let id = expect_status(&created, 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("Patient/{id}");
    let replies = {
        let (path, id) = (path.clone(), id.clone());
        race(client, move |client, i| {
            let (path, id) = (path.clone(), id.clone());
            async move {
                let mut body = patient_named(&format!("Writer{i}"));
                body["id"] = json!(id);
                client.put(&path, &body).await.unwrap()
            }
        })
        .await
    };
    let mut versions: Vec<i64> = replies
        .iter()
        .map(|reply| version_of(&expect_status(reply, 200)))
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        (2..=N as i64 + 1).collect::<Vec<_>>(),
        "each update got its own version"
    );
    let history = history_versions(client, &path).await;
    assert_eq!(history, (1..=N as i64 + 1).rev().collect::<Vec<_>>());
    // Each version holds what the update that got it sent.
    for (i, reply) in replies.iter().enumerate() {
        let v = version_of(&reply.json());
        let old = client.get(&format!("{path}/_history/{v}")).await.unwrap();
        assert_eq!(
            expect_status(&old, 200)["name"][0]["family"],
            format!("Writer{i}")
        );
    }
});

both_stores!(racing_conditional_creates_make_one_resource, |server| {
    let client = &server.client;
    let replies = race(client, |client, i| async move {
        let body = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "http://example.org/ids", "value": "42"}],
            "name": [{"family": format!("Creator{i}")}],
        });
        client
            .send(
                "POST",
                "Patient",
                &[("if-none-exist", "identifier=http://example.org/ids|42")],
                Some(body.to_string().into_bytes()),
            )
            .await
            .unwrap()
    })
    .await;
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "exactly one conditional create creates");
    let id = created[0].json()["id"].as_str().unwrap().to_owned();
    for reply in &replies {
        if reply.status != 201 {
            let body = expect_status(reply, 200);
            assert_eq!(body["id"], id, "the others find the one created");
        }
    }
    let search = client
        .get("Patient?identifier=http://example.org/ids%7C42")
        .await
        .unwrap();
    let bundle = expect_status(&search, 200);
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "a search finds exactly one");
    assert_eq!(
        history_versions(client, &format!("Patient/{id}")).await,
        vec![1]
    );
});

both_stores!(racing_update_as_create_makes_one_resource, |server| {
    let client = &server.client;
    let id = format!("race-{}", uuid::Uuid::new_v4().simple());
    let path = format!("Patient/{id}");
    let replies = {
        let (path, id) = (path.clone(), id.clone());
        race(client, move |client, i| {
            let (path, id) = (path.clone(), id.clone());
            async move {
                let mut body = patient_named(&format!("Writer{i}"));
                body["id"] = json!(id);
                client.put(&path, &body).await.unwrap()
            }
        })
        .await
    };
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "exactly one update-as-create creates");
    let mut versions = Vec::new();
    for reply in &replies {
        let body = expect_status(reply, if reply.status == 201 { 201 } else { 200 });
        versions.push(version_of(&body));
        if reply.status == 201 {
            assert_eq!(version_of(&body), 1, "the creating PUT made version 1");
        }
    }
    versions.sort();
    assert_eq!(versions, (1..=N as i64).collect::<Vec<_>>());
    assert_eq!(
        history_versions(client, &path).await,
        (1..=N as i64).rev().collect::<Vec<_>>()
    );
});

/// Transactions in the lock-order race: half update A then B, half B then A.
const CROSSED: usize = 40;

/// A transaction Bundle updating `first`, then `second` (each `[id, family]`).
fn two_updates(first: [&str; 2], second: [&str; 2]) -> Value {
    let entry = |[id, family]: [&str; 2]| {
        let mut body = patient_named(family);
        body["id"] = json!(id);
        json!({"resource": body, "request": {"method": "PUT", "url": format!("Patient/{id}")}})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry(first), entry(second)]})
}

// Transactions updating the same two resources in opposite entry orders lock them in one
// global order (type, id), so none deadlocks: every one commits, each a version of both.
both_stores!(
    transactions_updating_two_resources_in_opposite_orders_all_commit,
    |server| {
        let client = &server.client;
        let a = common::create(&server, &patient_named("A")).await;
        let b = common::create(&server, &patient_named("B")).await;
        let replies = {
            let (a, b) = (a.clone(), b.clone());
            all_at_once(client, CROSSED, move |client, i| {
                let (a, b) = (a.clone(), b.clone());
                async move {
                    let family = format!("Writer{i}");
                    let bundle = if i % 2 == 0 {
                        two_updates([&a, &family], [&b, &family])
                    } else {
                        two_updates([&b, &family], [&a, &family])
                    };
                    client.post("", &bundle).await.unwrap()
                }
            })
            .await
        };
        for reply in &replies {
            expect_status(reply, 200);
        }
        for id in [&a, &b] {
            let history = history_versions(client, &format!("Patient/{id}")).await;
            assert_eq!(history, (1..=CROSSED as i64 + 1).rev().collect::<Vec<_>>());
        }
    }
);
