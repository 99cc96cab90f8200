//! Bulk Data export (Bulk Data Access IG 2.0.0, issue 15), through HTTP on both stores.

mod common;

use std::collections::BTreeMap;

use common::auth::{two_patients, Secured};
use common::{create, expect_status, put, TestServer};
use serde_json::{json, Value};
use signaal::client::{Client, Reply};

async fn send(
    client: &Client,
    token: Option<&str>,
    method: &str,
    path: &str,
    prefer: bool,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    if prefer {
        headers.push(("prefer", "respond-async"));
    }
    client.send(method, path, &headers, None).await.unwrap()
}

/// Kicks off an export and polls it to the end: the status URL and the manifest.
async fn export(client: &Client, token: Option<&str>, path: &str) -> (String, Value) {
    let kick = send(client, token, "GET", path, true).await;
    expect_status(&kick, 202);
    let status = kick.header("content-location").unwrap().to_owned();
    for _ in 0..400 {
        let poll = send(client, token, "GET", &status, false).await;
        match poll.status {
            202 => {
                assert!(poll.header("x-progress").is_some());
                assert!(poll.header("retry-after").is_some());
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            200 => {
                assert!(poll
                    .header("content-type")
                    .unwrap()
                    .starts_with("application/json"));
                return (status, poll.json());
            }
            other => panic!("status {other}: {}", String::from_utf8_lossy(&poll.body)),
        }
    }
    panic!("the export never finished");
}

/// The resources of every file of a manifest, by type, as `Type/id`, after checking each file
/// against its manifest line.
async fn files(
    client: &Client,
    token: Option<&str>,
    manifest: &Value,
) -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for output in manifest["output"].as_array().unwrap() {
        let reply = send(client, token, "GET", output["url"].as_str().unwrap(), false).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("application/fhir+ndjson")
        );
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, output["count"].as_u64().unwrap());
        for line in lines {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], output["type"]);
            assert!(resource["meta"]["versionId"].is_string());
            by_type
                .entry(output["type"].as_str().unwrap().to_owned())
                .or_default()
                .push(format!(
                    "{}/{}",
                    resource["resourceType"].as_str().unwrap(),
                    resource["id"].as_str().unwrap()
                ));
        }
    }
    for ids in by_type.values_mut() {
        ids.sort();
    }
    by_type
}

fn obs(patient: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": format!("Patient/{patient}")},
    })
}

/// Patients x1, x2, x3 with an Observation each, and an Organization.
async fn population(server: &TestServer) -> Vec<String> {
    put(
        server,
        json!({"resourceType": "Organization", "id": "bx-org"}),
    )
    .await;
    let mut observations = Vec::new();
    for p in ["bx-1", "bx-2", "bx-3"] {
        put(server, json!({"resourceType": "Patient", "id": p})).await;
        observations.push(format!("Observation/{}", create(server, &obs(p)).await));
    }
    observations.sort();
    observations
}

fn patients(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|i| format!("Patient/{i}")).collect()
}

both_stores!(
    a_system_export_writes_every_type_to_ndjson_files,
    |server| {
        let observations = population(&server).await;
        let (_, manifest) = export(&server.client, None, "$export").await;
        assert!(manifest["transactionTime"].is_string());
        assert!(manifest["request"].as_str().unwrap().ends_with("/$export"));
        assert_eq!(manifest["requiresAccessToken"], false);
        assert_eq!(manifest["error"], json!([]));
        let got = files(&server.client, None, &manifest).await;
        assert_eq!(got["Observation"], observations);
        assert_eq!(got["Patient"], patients(&["bx-1", "bx-2", "bx-3"]));
        assert_eq!(got["Organization"], vec!["Organization/bx-org".to_owned()]);
    }
);

both_stores!(type_and_since_limit_the_export, |server| {
    population(&server).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    put(&server, json!({"resourceType": "Patient", "id": "bx-late"})).await;
    let (_, manifest) = export(
        &server.client,
        None,
        &format!("$export?_type=Patient,Organization&_since={since}&_outputFormat=application/fhir%2Bndjson"),
    )
    .await;
    let got = files(&server.client, None, &manifest).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["Patient"]);
    assert_eq!(got["Patient"], patients(&["bx-late"]));
});

both_stores!(a_patient_export_holds_compartment_types_only, |server| {
    let observations = population(&server).await;
    let (_, manifest) = export(&server.client, None, "Patient/$export?_outputFormat=ndjson").await;
    let got = files(&server.client, None, &manifest).await;
    assert!(!got.contains_key("Organization"));
    assert_eq!(got["Observation"], observations);
    let refused = send(
        &server.client,
        None,
        "GET",
        "Patient/$export?_type=Organization",
        true,
    )
    .await;
    expect_status(&refused, 400);
});

both_stores!(a_group_export_holds_its_members_data, |server| {
    population(&server).await;
    put(&server, json!({"resourceType": "Group", "id": "bx-group", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/bx-1"}}, {"entity": {"reference": "Patient/bx-3"}}]}))
    .await;
    let (_, manifest) = export(
        &server.client,
        None,
        "Group/bx-group/$export?_type=Patient,Observation",
    )
    .await;
    let got = files(&server.client, None, &manifest).await;
    assert_eq!(got["Patient"], patients(&["bx-1", "bx-3"]));
    assert_eq!(got["Observation"].len(), 2);
    let unknown = send(&server.client, None, "GET", "Group/bx-none/$export", true).await;
    expect_status(&unknown, 404);
});

both_stores!(
    kick_off_needs_respond_async_and_known_parameters,
    |server| {
        expect_status(
            &send(&server.client, None, "GET", "$export", false).await,
            400,
        );
        for bad in [
            "$export?_outputFormat=application/fhir%2Bjson",
            "$export?_type=Nonsense",
            "$export?_since=yesterday",
            "$export?_typeFilter=Observation%3Fcode%3Dx",
            "$export?frobnicate=1",
        ] {
            let reply = send(&server.client, None, "GET", bad, true).await;
            expect_status(&reply, 400);
        }
    }
);

both_stores!(delete_removes_the_job_and_its_files, |server| {
    population(&server).await;
    let (status, manifest) = export(&server.client, None, "$export?_type=Patient").await;
    let file = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&server.client, None, "GET", &file, false).await.status,
        200
    );
    expect_status(
        &send(&server.client, None, "DELETE", &status, false).await,
        202,
    );
    expect_status(
        &send(&server.client, None, "GET", &status, false).await,
        404,
    );
    expect_status(&send(&server.client, None, "GET", &file, false).await, 404);
});

both_stores!(
    the_capability_statement_names_the_export_operations,
    |server| {
        let cs = expect_status(&server.client.get("metadata").await.unwrap(), 200);
        assert!(cs["rest"][0]["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "export"));
    }
);

secured!(
    the_job_and_its_files_belong_to_the_client_that_started_it,
    |s| {
        let (_, admin, _, _) = two_patients(&s).await;
        let client = &s.server.client;
        let (status, manifest) = export(client, Some(&admin), "$export?_type=Patient").await;
        assert_eq!(manifest["requiresAccessToken"], true);
        let file = manifest["output"][0]["url"].as_str().unwrap().to_owned();
        s.register("other", "system/*.read", None).await;
        let other = s.token("other", "system/*.read").await;
        expect_status(
            &send(client, Some(&other), "GET", &status, false).await,
            404,
        );
        expect_status(&send(client, Some(&other), "GET", &file, false).await, 404);
        expect_status(
            &send(client, Some(&other), "DELETE", &status, false).await,
            404,
        );
        assert_eq!(
            send(client, Some(&admin), "GET", &file, false).await.status,
            200
        );
        let _: Option<Secured> = None;
    }
);

secured!(scopes_decide_the_types_that_go_in, |s| {
    two_patients(&s).await;
    let client = &s.server.client;
    s.register("patients", "system/Patient.rs", None).await;
    let token = s.token("patients", "system/Patient.rs").await;
    let (_, manifest) = export(client, Some(&token), "$export").await;
    let got = files(client, Some(&token), &manifest).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["Patient"]);
    assert_eq!(got["Patient"], patients(&["a", "b"]));
    // Naming a type the token may not read is refused.
    expect_status(
        &send(
            client,
            Some(&token),
            "GET",
            "$export?_type=Observation",
            true,
        )
        .await,
        403,
    );
});

secured!(a_patient_bound_token_exports_its_own_patient_only, |s| {
    let (pgo, _, oa, _) = two_patients(&s).await;
    let client = &s.server.client;
    let (_, manifest) = export(
        client,
        Some(&pgo),
        "Patient/$export?_type=Patient,Observation",
    )
    .await;
    let got = files(client, Some(&pgo), &manifest).await;
    assert_eq!(got["Patient"], patients(&["a"]));
    assert_eq!(got["Observation"], vec![format!("Observation/{oa}")]);
});
