//! Bulk Data export (Bulk Data Access IG 2.0.0, issue 15), through HTTP on both stores.

mod common;

use common::auth::{two_patients, Secured};
use common::bulk::{export, files, send};
use common::{create, expect_status, put, StoreKind, TestServer};
use serde_json::{json, Value};
use signaal::client::{Client, Reply};
use signaal::server;

/// Kicks off an export by POST with a Parameters body.
async fn post(client: &Client, path: &str, parameters: Value) -> Reply {
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    client
        .send(
            "POST",
            path,
            &[
                ("prefer", "respond-async"),
                ("content-type", "application/fhir+json"),
            ],
            Some(body.to_string().into_bytes()),
        )
        .await
        .unwrap()
}

/// Polls a status URL to the end: the manifest.
async fn finished(client: &Client, status: &str) -> Value {
    for _ in 0..400 {
        let poll = send(client, None, "GET", status, false).await;
        match poll.status {
            202 => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            200 => return poll.json(),
            other => panic!("status {other}: {}", String::from_utf8_lossy(&poll.body)),
        }
    }
    panic!("the export never finished");
}

/// The lines of every file of a manifest list (`output` or `deleted`).
async fn lines(client: &Client, manifest: &Value, list: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for file in manifest[list].as_array().unwrap() {
        let reply = send(client, None, "GET", file["url"].as_str().unwrap(), false).await;
        assert_eq!(reply.status, 200);
        for line in String::from_utf8(reply.body.to_vec()).unwrap().lines() {
            all.push(serde_json::from_str(line).unwrap());
        }
    }
    all
}

fn coded(patient: &str, codes: &[&str]) -> Value {
    let coding: Vec<Value> = codes
        .iter()
        .map(|c| json!({"system": "urn:test:codes", "code": c}))
        .collect();
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": coding},
        "subject": {"reference": format!("Patient/{patient}")},
    })
}

/// A test on both stores with the server's settings changed by `$configure`.
macro_rules! configured {
    ($name:ident, $configure:expr, |$server:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($server: TestServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = TestServer::start_configured(StoreKind::Sqlite, $configure).await.unwrap();
                run(server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(server) = TestServer::start_configured(StoreKind::Postgres, $configure).await {
                    run(server).await;
                }
            }
        }
    };
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
        json!({"resourceType": "Organization", "id": "bx-org", "name": "Praktijk Zuid"}),
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
            "$export?_typeFilter=Observation%3F_sort%3Ddate",
            "$export?_typeFilter=Observation%3Fnonsense%3D1",
            "$export?_typeFilter=Nonsense%3Fcode%3Dx",
            "$export?_type=Patient&_typeFilter=Observation%3Fcode%3Dx",
            "$export?_elements=id",
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

both_stores!(a_post_kick_off_takes_a_parameters_body, |server| {
    let observations = population(&server).await;
    let kick = post(
        &server.client,
        "$export",
        json!([
            {"name": "_type", "valueString": "Observation"},
            {"name": "_outputFormat", "valueString": "application/ndjson"},
        ]),
    )
    .await;
    expect_status(&kick, 202);
    let manifest = finished(&server.client, kick.header("content-location").unwrap()).await;
    // The request URL of a POST carries no parameters (IG).
    assert!(manifest["request"].as_str().unwrap().ends_with("/$export"));
    let got = files(&server.client, None, &manifest).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["Observation"]);
    assert_eq!(got["Observation"], observations);
});

both_stores!(a_post_patient_list_limits_the_export, |server| {
    population(&server).await;
    put(&server, json!({"resourceType": "Group", "id": "bx-group", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/bx-1"}}, {"entity": {"reference": "Patient/bx-3"}}]}))
    .await;
    let kick = post(
        &server.client,
        "Group/bx-group/$export",
        json!([
            {"name": "_type", "valueString": "Patient,Observation"},
            {"name": "patient", "valueReference": {"reference": "Patient/bx-3"}},
        ]),
    )
    .await;
    expect_status(&kick, 202);
    let manifest = finished(&server.client, kick.header("content-location").unwrap()).await;
    let got = files(&server.client, None, &manifest).await;
    assert_eq!(got["Patient"], patients(&["bx-3"]));
    assert_eq!(got["Observation"].len(), 1);
    // At Patient level too.
    let kick = post(
        &server.client,
        "Patient/$export",
        json!([
            {"name": "_type", "valueString": "Patient"},
            {"name": "patient", "valueReference": {"reference": "Patient/bx-2"}},
        ]),
    )
    .await;
    let manifest = finished(&server.client, kick.header("content-location").unwrap()).await;
    assert_eq!(
        files(&server.client, None, &manifest).await["Patient"],
        patients(&["bx-2"])
    );
    // A patient outside the Group, an unknown one, or a patient at system level: 400.
    for (path, patient) in [
        ("Group/bx-group/$export", "Patient/bx-2"),
        ("Patient/$export", "Patient/bx-nobody"),
        ("$export", "Patient/bx-1"),
    ] {
        let refused = post(
            &server.client,
            path,
            json!([{"name": "patient", "valueReference": {"reference": patient}}]),
        )
        .await;
        let outcome = expect_status(&refused, 400);
        assert!(outcome.to_string().contains("patient"), "{outcome}");
    }
    // `patient` is a POST parameter only.
    expect_status(
        &send(
            &server.client,
            None,
            "GET",
            "Patient/$export?patient=Patient/bx-1",
            true,
        )
        .await,
        400,
    );
});

both_stores!(unsupported_parameters_are_refused_by_name, |server| {
    let refused = send(
        &server.client,
        None,
        "GET",
        "$export?includeAssociatedData=LatestProvenanceResources",
        true,
    )
    .await;
    let outcome = expect_status(&refused, 400);
    assert!(outcome.to_string().contains("includeAssociatedData"));
    let refused = send(
        &server.client,
        None,
        "GET",
        "$export?frobnicate=1&wibble=2",
        true,
    )
    .await;
    let outcome = expect_status(&refused, 400).to_string();
    assert!(
        outcome.contains("frobnicate") && outcome.contains("wibble"),
        "{outcome}"
    );
    let refused = post(
        &server.client,
        "$export",
        json!([{"name": "includeAssociatedData", "valueCode": "RelevantProvenanceResources"}]),
    )
    .await;
    expect_status(&refused, 400);
});

both_stores!(type_filters_of_one_type_are_ored, |server| {
    put(&server, json!({"resourceType": "Patient", "id": "tf-1"})).await;
    let a = create(&server, &coded("tf-1", &["tf-a"])).await;
    let b = create(&server, &coded("tf-1", &["tf-b"])).await;
    let both = create(&server, &coded("tf-1", &["tf-a", "tf-b"])).await;
    create(&server, &coded("tf-1", &["tf-c"])).await;
    let (_, manifest) = export(
        &server.client,
        None,
        "$export?_type=Observation,Patient\
         &_typeFilter=Observation%3Fcode%3Durn:test:codes%7Ctf-a\
         &_typeFilter=Observation%3Fcode%3Durn:test:codes%7Ctf-b",
    )
    .await;
    let got = files(&server.client, None, &manifest).await;
    let mut want = vec![
        format!("Observation/{a}"),
        format!("Observation/{b}"),
        format!("Observation/{both}"),
    ];
    want.sort();
    // Each matching resource once, however many of the queries it matches.
    assert_eq!(got["Observation"], want);
    // A type without a filter is exported whole.
    assert_eq!(got["Patient"], patients(&["tf-1"]));
    // Comma-separated in one parameter, with an OR inside a query, at Patient level.
    let (_, manifest) = export(
        &server.client,
        None,
        "Patient/$export?_type=Observation\
         &_typeFilter=Observation%3Fcode%3Durn:test:codes%7Ctf-c,Observation%3Fcode%3Dtf-a%2Ctf-zz",
    )
    .await;
    let got = files(&server.client, None, &manifest).await;
    assert_eq!(got["Observation"].len(), 3);
    assert!(!got["Observation"].contains(&format!("Observation/{b}")));
});

both_stores!(a_since_export_lists_the_deleted_resources, |server| {
    for p in ["dl-1", "dl-2", "dl-3"] {
        put(&server, json!({"resourceType": "Patient", "id": p})).await;
    }
    let gone_before = create(&server, &coded("dl-1", &["x"])).await;
    expect_status(
        &server
            .client
            .delete(&format!("Observation/{gone_before}"))
            .await
            .unwrap(),
        204,
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    expect_status(&server.client.delete("Patient/dl-2").await.unwrap(), 204);
    put(&server, json!({"resourceType": "Patient", "id": "dl-4"})).await;
    let (_, manifest) = export(
        &server.client,
        None,
        &format!("$export?_type=Patient,Observation&_since={since}"),
    )
    .await;
    let got = files(&server.client, None, &manifest).await;
    assert_eq!(got["Patient"], patients(&["dl-4"]));
    assert_eq!(manifest["deleted"][0]["type"], "Bundle");
    let bundles = lines(&server.client, &manifest, "deleted").await;
    let deleted: Vec<Value> = bundles
        .iter()
        .inspect(|b| assert_eq!(b["type"], "transaction"))
        .flat_map(|b| b["entry"].as_array().unwrap().clone())
        .map(|e| e["request"].clone())
        .collect();
    // Deleted after _since only: the Observation deleted before it is not listed.
    assert_eq!(
        deleted,
        vec![json!({"method": "DELETE", "url": "Patient/dl-2"})]
    );
    // Without _since there is no deleted list to give.
    let (_, manifest) = export(&server.client, None, "$export?_type=Patient").await;
    assert_eq!(manifest["deleted"], json!([]));
});

configured!(
    files_are_split_past_the_size_setting,
    |s: &mut server::Settings| s.jobs.export_file_size = 10,
    |server| {
        population(&server).await;
        let (_, manifest) = export(&server.client, None, "$export?_type=Patient").await;
        let outputs = manifest["output"].as_array().unwrap();
        assert_eq!(outputs.len(), 3);
        assert!(outputs
            .iter()
            .all(|o| o["count"] == 1 && o["type"] == "Patient"));
        assert_eq!(
            files(&server.client, None, &manifest).await["Patient"],
            patients(&["bx-1", "bx-2", "bx-3"])
        );
    }
);

configured!(
    too_many_exports_at_once_are_refused_with_retry_after,
    |s: &mut server::Settings| s.jobs.max_exports = 1,
    |server| {
        population(&server).await;
        // An export of every type reads a while; a second kick-off meanwhile is refused.
        let first = send(&server.client, None, "GET", "$export", true).await;
        expect_status(&first, 202);
        let second = send(&server.client, None, "GET", "$export?_type=Patient", true).await;
        let running = send(
            &server.client,
            None,
            "GET",
            first.header("content-location").unwrap(),
            false,
        )
        .await;
        if running.status == 202 {
            expect_status(&second, 429);
            assert!(second.header("retry-after").is_some());
        }
        finished(&server.client, first.header("content-location").unwrap()).await;
        // Once it is done, the next one runs.
        export(&server.client, None, "$export?_type=Patient").await;
    }
);

configured!(
    finished_exports_expire_with_their_files,
    |s: &mut server::Settings| s.jobs.export_expiry = std::time::Duration::from_secs(1),
    |server| {
        population(&server).await;
        let (status, manifest) = export(&server.client, None, "$export?_type=Patient").await;
        let file = manifest["output"][0]["url"].as_str().unwrap().to_owned();
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        expect_status(
            &send(&server.client, None, "GET", &status, false).await,
            404,
        );
        expect_status(&send(&server.client, None, "GET", &file, false).await, 404);
    }
);

configured!(
    the_manifest_says_when_the_files_expire,
    |s: &mut server::Settings| s.jobs.export_expiry = std::time::Duration::from_secs(3600),
    |server| {
        population(&server).await;
        let (status, _) = export(&server.client, None, "$export?_type=Patient").await;
        let reply = send(&server.client, None, "GET", &status, false).await;
        let expires = reply.header("expires").unwrap();
        let at = chrono::DateTime::parse_from_rfc2822(&expires.replace("GMT", "+0000")).unwrap();
        let ahead = at.timestamp() - chrono::Utc::now().timestamp();
        assert!((3500..=3601).contains(&ahead), "{ahead}");
    }
);

both_stores!(
    the_export_is_the_data_as_of_its_transaction_time,
    |server| {
        population(&server).await;
        put(
            &server,
            json!({"resourceType": "Patient", "id": "tt-changed", "active": false}),
        )
        .await;
        put(
            &server,
            json!({"resourceType": "Patient", "id": "tt-deleted"}),
        )
        .await;
        // Every type: the job takes a while, so the writes below land while it reads.
        let kick = send(&server.client, None, "GET", "$export", true).await;
        expect_status(&kick, 202);
        // Later than the transaction time, by a clock tick at least.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        put(
            &server,
            json!({"resourceType": "Patient", "id": "tt-changed", "active": true}),
        )
        .await;
        put(&server, json!({"resourceType": "Patient", "id": "tt-new"})).await;
        expect_status(
            &server.client.delete("Patient/tt-deleted").await.unwrap(),
            204,
        );
        let manifest = finished(&server.client, kick.header("content-location").unwrap()).await;
        let patients_then: Vec<Value> = lines(&server.client, &manifest, "output")
            .await
            .into_iter()
            .filter(|r| r["resourceType"] == "Patient")
            .collect();
        let ids: Vec<&str> = patients_then
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert!(!ids.contains(&"tt-new"), "{ids:?}");
        assert!(ids.contains(&"tt-deleted"), "{ids:?}");
        let changed = patients_then
            .iter()
            .find(|p| p["id"] == "tt-changed")
            .unwrap();
        assert_eq!(changed["active"], false);
        assert_eq!(changed["meta"]["versionId"], "1");
        let transaction_time = manifest["transactionTime"].as_str().unwrap();
        assert!(patients_then
            .iter()
            .all(|p| p["meta"]["lastUpdated"].as_str().unwrap() <= transaction_time));
    }
);

both_stores!(a_restart_during_an_export_fails_it_visibly, |server| {
    population(&server).await;
    let kick = send(&server.client, None, "GET", "$export", true).await;
    expect_status(&kick, 202);
    let status = kick.header("content-location").unwrap().to_owned();
    let path = status.split("/fhir/").nth(1).unwrap().to_owned();
    let server = server.restart(|_| {}).await;
    let poll = send(&server.client, None, "GET", &path, false).await;
    match poll.status {
        // It was still running: the status says why it failed. Either the new server found
        // it running (500, "restarted"), or the old one recorded its failure as its store
        // closed under it (503): visible either way, never a lost job.
        500 | 503 => {
            let outcome = poll.json();
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            assert_eq!(outcome["issue"][0]["severity"], "error");
            if poll.status == 500 {
                assert!(outcome.to_string().contains("restarted"), "{outcome}");
            }
        }
        // It had finished before the restart: its manifest and files are still served.
        200 => {
            let manifest = poll.json();
            let file = manifest["output"][0]["url"].as_str().unwrap();
            let file = file.split("/fhir/").nth(1).unwrap();
            assert_eq!(
                send(&server.client, None, "GET", file, false).await.status,
                200
            );
        }
        other => panic!(
            "a job lost in the restart: {other} {}",
            String::from_utf8_lossy(&poll.body)
        ),
    }
    // Its slot is free: a new export runs.
    let (_, manifest) = export(&server.client, None, "$export?_type=Patient").await;
    assert_eq!(
        files(&server.client, None, &manifest).await["Patient"],
        patients(&["bx-1", "bx-2", "bx-3"])
    );
});

both_stores!(a_finished_export_survives_a_restart, |server| {
    population(&server).await;
    let (status, manifest) = export(&server.client, None, "$export?_type=Patient").await;
    let path = status.split("/fhir/").nth(1).unwrap().to_owned();
    let server = server.restart(|_| {}).await;
    let poll = send(&server.client, None, "GET", &path, false).await;
    assert_eq!(poll.status, 200);
    let again = poll.json();
    assert_eq!(again["transactionTime"], manifest["transactionTime"]);
    let file = again["output"][0]["url"]
        .as_str()
        .unwrap()
        .split("/fhir/")
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(
        send(&server.client, None, "GET", &file, false).await.status,
        200
    );
});
