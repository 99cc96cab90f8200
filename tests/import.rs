//! Bulk import (`$import` and `signaal import`, issue 15), through HTTP on both stores.

mod common;

use std::collections::BTreeMap;

use common::{expect_status, put, TempDir, TestServer};
use serde_json::{json, Value};
use signaal::client::{Client, Reply};

const NDJSON: &str = "application/fhir+ndjson";

async fn send(
    client: &Client,
    token: Option<&str>,
    method: &str,
    path: &str,
    prefer: bool,
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    if prefer {
        headers.push(("prefer", "respond-async"));
    }
    let body = body.map(|(media, bytes)| {
        headers.push(("content-type", media));
        bytes
    });
    client.send(method, path, &headers, body).await.unwrap()
}

/// Polls a status URL until the job ends: the manifest.
async fn finished(client: &Client, token: Option<&str>, status: &str) -> Value {
    for _ in 0..800 {
        let poll = send(client, token, "GET", status, false, None).await;
        match poll.status {
            202 => {
                let progress = poll.header("x-progress").unwrap();
                let (done, total) = progress.split_once('/').unwrap();
                assert!(done.parse::<u64>().unwrap() <= total.parse::<u64>().unwrap());
                assert!(poll.header("retry-after").is_some());
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            200 => {
                assert!(poll
                    .header("content-type")
                    .unwrap()
                    .starts_with("application/json"));
                return poll.json();
            }
            other => panic!("status {other}: {}", String::from_utf8_lossy(&poll.body)),
        }
    }
    panic!("the job never finished");
}

/// Kicks off an import with `body` and polls it to the end: the manifest.
async fn import(client: &Client, token: Option<&str>, media: &str, body: Vec<u8>) -> Value {
    let kick = send(client, token, "POST", "$import", true, Some((media, body))).await;
    expect_status(&kick, 202);
    let status = kick.header("content-location").unwrap().to_owned();
    assert!(status.contains("/_import/"));
    finished(client, token, &status).await
}

fn ndjson(resources: &[Value]) -> Vec<u8> {
    let mut text = String::new();
    for r in resources {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    text.into_bytes()
}

/// The manifest's `output` as type → count.
/// The OperationOutcomes of a manifest's `error` file (`file`), one a failed line.
async fn error_outcomes(client: &Client, file: &Value) -> Vec<Value> {
    let reply = send(
        client,
        None,
        "GET",
        file["url"].as_str().unwrap(),
        false,
        None,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(NDJSON));
    String::from_utf8(reply.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn counts(manifest: &Value) -> BTreeMap<String, u64> {
    manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_owned(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A resource as read from the server, without the server's `meta` (version and time).
async fn read(client: &Client, token: Option<&str>, path: &str) -> Value {
    let reply = send(client, token, "GET", path, false, None).await;
    let mut resource = expect_status(&reply, 200);
    let meta = resource["meta"].as_object_mut().unwrap();
    meta.remove("versionId");
    meta.remove("lastUpdated");
    if meta.is_empty() {
        resource.as_object_mut().unwrap().remove("meta");
    }
    resource
}

/// Resources of a made-up practice: two patients, a practitioner, observations, a condition.
fn practice() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "imp-wren", "name": [{"family": "Wren", "given": ["Ottoline"]}],
            "birthDate": "1961-03-17", "gender": "female"}),
        json!({"resourceType": "Patient", "id": "imp-quill", "name": [{"family": "Quill"}], "active": true}),
        json!({"resourceType": "Practitioner", "id": "imp-doc", "name": [{"family": "Marsh"}]}),
        json!({"resourceType": "Observation", "id": "imp-hr-1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/imp-wren"}, "effectiveDateTime": "2024-02-29T07:15:00Z",
            "valueQuantity": {"value": 71, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Observation", "id": "imp-hr-2", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/imp-quill"}, "performer": [{"reference": "Practitioner/imp-doc"}],
            "valueQuantity": {"value": 93, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Condition", "id": "imp-cond", "subject": {"reference": "Patient/imp-wren"},
            "code": {"text": "heel spur"}}),
    ]
}

fn path(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    )
}

both_stores!(
    ndjson_into_an_empty_server_gives_the_same_resources,
    |server| {
        let resources = practice();
        let manifest = import(&server.client, None, NDJSON, ndjson(&resources)).await;
        assert!(manifest["transactionTime"].is_string());
        assert!(manifest["request"].as_str().unwrap().ends_with("/$import"));
        assert_eq!(manifest["error"], json!([]));
        assert_eq!(
            counts(&manifest),
            BTreeMap::from([
                ("Condition".to_owned(), 1),
                ("Observation".to_owned(), 2),
                ("Patient".to_owned(), 2),
                ("Practitioner".to_owned(), 1),
            ])
        );
        for resource in &resources {
            assert_eq!(&read(&server.client, None, &path(resource)).await, resource);
        }
        // Indexed like any write: the search finds them.
        let found = expect_status(
            &server
                .client
                .get("Observation?subject=Patient/imp-wren&code=http://loinc.org|8867-4")
                .await
                .unwrap(),
            200,
        );
        assert_eq!(found["total"], 1);
    }
);

both_stores!(an_existing_id_gets_its_next_version, |server| {
    put(
        &server,
        json!({"resourceType": "Patient", "id": "imp-quill", "active": false}),
    )
    .await;
    import(&server.client, None, NDJSON, ndjson(&practice())).await;
    let reply = server.client.get("Patient/imp-quill").await.unwrap();
    let patient = expect_status(&reply, 200);
    assert_eq!(patient["meta"]["versionId"], "2");
    assert_eq!(patient["active"], true);
});

both_stores!(
    a_batch_with_existing_deleted_and_repeated_ids_writes_one_version_after_another,
    |server| {
        put(
            &server,
            json!({"resourceType": "Patient", "id": "imp-heron", "active": false}),
        )
        .await;
        put(
            &server,
            json!({"resourceType": "Patient", "id": "imp-gull", "gender": "male"}),
        )
        .await;
        expect_status(
            &server.client.delete("Patient/imp-gull").await.unwrap(),
            204,
        );
        // One batch (a load's first holds far more lines): an existing id, a new one, a
        // deleted one, and the new and the existing one again, the new one twice.
        let lines = [
            json!({"resourceType": "Patient", "id": "imp-heron", "active": false, "gender": "other"}),
            json!({"resourceType": "Patient", "id": "imp-tern", "active": true}),
            json!({"resourceType": "Patient", "id": "imp-gull", "gender": "unknown"}),
            json!({"resourceType": "Patient", "id": "imp-tern", "active": false, "name": [{"family": "Sandwich"}]}),
            json!({"resourceType": "Patient", "id": "imp-heron", "active": true}),
            json!({"resourceType": "Patient", "id": "imp-tern", "gender": "female"}),
        ];
        let manifest = import(&server.client, None, NDJSON, ndjson(&lines)).await;
        assert_eq!(manifest["error"], json!([]));
        assert_eq!(
            counts(&manifest),
            BTreeMap::from([("Patient".to_owned(), 6)])
        );
        // The last line of each id wins, each line its own version after the one before.
        for (path, version, last) in [
            ("Patient/imp-heron", "3", &lines[4]),
            ("Patient/imp-gull", "3", &lines[2]),
            ("Patient/imp-tern", "3", &lines[5]),
        ] {
            let reply = server.client.get(path).await.unwrap();
            assert_eq!(
                expect_status(&reply, 200)["meta"]["versionId"],
                version,
                "{path}"
            );
            assert_eq!(&read(&server.client, None, path).await, last, "{path}");
        }
        let history = expect_status(
            &server
                .client
                .get("Patient/imp-tern/_history")
                .await
                .unwrap(),
            200,
        );
        let versions: Vec<&str> = history["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["3", "2", "1"]);
        assert_eq!(
            history["entry"][1]["resource"]["name"][0]["family"],
            "Sandwich"
        );
        // Searches see each resource's last version only.
        let ids = |bundle: &Value| -> Vec<String> {
            let mut ids: Vec<String> = bundle["entry"]
                .as_array()
                .map(|entries| {
                    entries
                        .iter()
                        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            ids.sort();
            ids
        };
        for (query, expected) in [
            (
                "Patient?_id=imp-heron,imp-gull,imp-tern&active=true",
                vec!["imp-heron"],
            ),
            (
                "Patient?_id=imp-heron,imp-gull,imp-tern&active=false",
                vec![],
            ),
            (
                "Patient?_id=imp-heron,imp-gull,imp-tern&gender=female",
                vec!["imp-tern"],
            ),
            (
                "Patient?_id=imp-heron,imp-gull,imp-tern&gender=other,male",
                vec![],
            ),
            (
                "Patient?_id=imp-heron,imp-gull,imp-tern&gender=unknown",
                vec!["imp-gull"],
            ),
            ("Patient?name=Sandwich", vec![]),
        ] {
            let found = expect_status(&server.client.get(query).await.unwrap(), 200);
            assert_eq!(ids(&found), expected, "{query}");
        }
    }
);

both_stores!(
    bad_lines_are_reported_with_their_line_numbers_and_the_good_ones_land,
    |server| {
        let good = practice();
        let mut text = String::new();
        text.push_str(&good[0].to_string()); // line 1
        text.push_str("\n{this is not json\n"); // line 2
        text.push('\n'); // line 3: blank, skipped
        text.push_str(&good[1].to_string()); // line 4
        text.push('\n');
        // Line 5: gender is a code, not a number.
        text.push_str(r#"{"resourceType":"Patient","id":"imp-bad","gender":12}"#);
        text.push('\n');
        // Line 6: no id.
        text.push_str(r#"{"resourceType":"Practitioner","name":[{"family":"Nobody"}]}"#);
        text.push('\n');
        // Line 7: a type R4 does not have.
        text.push_str(r#"{"resourceType":"Spaceship","id":"x"}"#);
        text.push('\n');
        text.push_str(&good[3].to_string()); // line 8
        let manifest = import(&server.client, None, NDJSON, text.into_bytes()).await;
        assert_eq!(
            counts(&manifest),
            BTreeMap::from([("Observation".to_owned(), 1), ("Patient".to_owned(), 2)])
        );
        let errors = manifest["error"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["type"], "OperationOutcome");
        assert_eq!(errors[0]["count"], 4);
        let outcomes = error_outcomes(&server.client, &errors[0]).await;
        let lines: Vec<u64> = outcomes
            .iter()
            .map(|o| {
                assert_eq!(o["resourceType"], "OperationOutcome");
                let issue = &o["issue"][0];
                assert_eq!(issue["severity"], "error");
                assert_eq!(
                    issue["extension"][0]["url"],
                    "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
                );
                let line = issue["extension"][0]["valueInteger"].as_u64().unwrap();
                assert!(issue["diagnostics"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("line {line}")));
                line
            })
            .collect();
        assert_eq!(lines, vec![2, 5, 6, 7]);
        assert!(outcomes[1]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Patient/imp-bad"));
        for resource in [&good[0], &good[1], &good[3]] {
            assert_eq!(&read(&server.client, None, &path(resource)).await, resource);
        }
        expect_status(&server.client.get("Patient/imp-bad").await.unwrap(), 404);
    }
);

both_stores!(
    a_body_of_several_batches_lands_whole_with_each_bad_line_reported_where_it_is,
    |server| {
        // 1,000 lines are several batches (the first ones of a load are the smallest): a bad
        // line in each, and a resource written twice, in different batches (the later wins).
        let mut text = String::new();
        let mut bad = Vec::new();
        for line in 1..=1000u64 {
            let resource = match line {
                3 | 400 | 999 => {
                    bad.push(line);
                    json!({"resourceType": "Patient", "id": format!("imp-many-{line}"), "gender": 7})
                }
                900 => json!({"resourceType": "Patient", "id": "imp-many-1", "active": false}),
                _ => {
                    json!({"resourceType": "Patient", "id": format!("imp-many-{line}"), "active": true})
                }
            };
            text.push_str(&resource.to_string());
            text.push('\n');
        }
        let manifest = import(&server.client, None, NDJSON, text.into_bytes()).await;
        assert_eq!(
            counts(&manifest),
            BTreeMap::from([("Patient".to_owned(), 997)])
        );
        let errors = manifest["error"].as_array().unwrap();
        assert_eq!(errors[0]["count"], 3);
        let lines: Vec<u64> = error_outcomes(&server.client, &errors[0])
            .await
            .iter()
            .map(|outcome| {
                outcome["issue"][0]["extension"][0]["valueInteger"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(lines, bad);
        let first = expect_status(&server.client.get("Patient/imp-many-1").await.unwrap(), 200);
        assert_eq!(first["meta"]["versionId"], "2");
        assert_eq!(first["active"], false);
        expect_status(
            &server.client.get("Patient/imp-many-1000").await.unwrap(),
            200,
        );
        expect_status(
            &server.client.get("Patient/imp-many-400").await.unwrap(),
            404,
        );
        let found = expect_status(
            &server
                .client
                .get("Patient?active=true&_summary=count")
                .await
                .unwrap(),
            200,
        );
        assert_eq!(found["total"], 995);
    }
);

both_stores!(
    the_kick_off_needs_respond_async_and_a_known_input,
    |server| {
        let body = || Some((NDJSON, ndjson(&practice())));
        expect_status(
            &send(&server.client, None, "POST", "$import", false, body()).await,
            400,
        );
        expect_status(
            &send(
                &server.client,
                None,
                "POST",
                "$import?_type=Patient",
                true,
                body(),
            )
            .await,
            400,
        );
        expect_status(
            &send(
                &server.client,
                None,
                "POST",
                "$import",
                true,
                Some(("text/csv", b"a,b".to_vec())),
            )
            .await,
            415,
        );
        expect_status(
            &send(
                &server.client,
                None,
                "POST",
                "$import",
                true,
                Some((NDJSON, b"\n \n".to_vec())),
            )
            .await,
            400,
        );
        // URLs elsewhere are never fetched.
        let elsewhere = json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
            {"name": "type", "valueCode": "Patient"},
            {"name": "url", "valueUrl": "http://169.254.169.254/latest/Patient.ndjson"}]}]});
        let refused = send(
            &server.client,
            None,
            "POST",
            "$import",
            true,
            Some(("application/fhir+json", elsewhere.to_string().into_bytes())),
        )
        .await;
        expect_status(&refused, 400);
        for bad in [
            json!({"resourceType": "Parameters"}),
            json!({"resourceType": "Parameters", "parameter": [{"name": "storageDetail", "valueString": "s3"}]}),
            json!({"resourceType": "Patient"}),
        ] {
            let reply = send(
                &server.client,
                None,
                "POST",
                "$import",
                true,
                Some(("application/fhir+json", bad.to_string().into_bytes())),
            )
            .await;
            expect_status(&reply, 400);
        }
        expect_status(&server.client.get("$import").await.unwrap(), 405);
    }
);

/// Exports `_type` from `server` and returns the manifest.
async fn export(server: &TestServer, types: &str) -> Value {
    let kick = send(
        &server.client,
        None,
        "GET",
        &format!("$export?_type={types}"),
        true,
        None,
    )
    .await;
    expect_status(&kick, 202);
    let status = kick.header("content-location").unwrap().to_owned();
    finished(&server.client, None, &status).await
}

const CLINICAL: &str = "Patient,Practitioner,Observation,Condition";

both_stores!(
    an_exports_files_imported_into_a_second_server_give_the_same_resources,
    |server| {
        let resources = practice();
        for r in &resources {
            put(&server, r.clone()).await;
        }
        let manifest = export(&server, CLINICAL).await;
        let kind = if server.database_url.starts_with("sqlite") {
            common::StoreKind::Sqlite
        } else {
            common::StoreKind::Postgres
        };
        let second = TestServer::start(kind).await.unwrap();
        // The client downloads each file and uploads it to the second server.
        let mut imported = BTreeMap::new();
        for output in manifest["output"].as_array().unwrap() {
            let file = send(
                &server.client,
                None,
                "GET",
                output["url"].as_str().unwrap(),
                false,
                None,
            )
            .await;
            assert_eq!(file.status, 200);
            let done = import(&second.client, None, NDJSON, file.body.to_vec()).await;
            assert_eq!(done["error"], json!([]));
            for (rtype, n) in counts(&done) {
                *imported.entry(rtype).or_insert(0) += n;
            }
        }
        assert_eq!(imported, counts(&manifest));
        for resource in &resources {
            let p = path(resource);
            assert_eq!(
                read(&second.client, None, &p).await,
                read(&server.client, None, &p).await
            );
        }
    }
);

both_stores!(
    a_parameters_body_imports_the_clients_own_export_files,
    |server| {
        let resources = practice();
        for r in &resources {
            put(&server, r.clone()).await;
        }
        let manifest = export(&server, CLINICAL).await;
        // The export restores what was deleted since.
        expect_status(
            &server.client.delete("Observation/imp-hr-1").await.unwrap(),
            204,
        );
        let inputs: Vec<Value> = manifest["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                json!({"name": "input", "part": [
                {"name": "type", "valueCode": o["type"]},
                {"name": "url", "valueUrl": o["url"]}]})
            })
            .collect();
        let mut parameters = json!({"resourceType": "Parameters", "parameter": inputs});
        parameters["parameter"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "inputFormat", "valueString": NDJSON}));
        let done = import(
            &server.client,
            None,
            "application/fhir+json",
            parameters.to_string().into_bytes(),
        )
        .await;
        assert_eq!(counts(&done), counts(&manifest));
        assert_eq!(
            read(&server.client, None, "Observation/imp-hr-1").await,
            resources[3]
        );
        // A declared type must be the file's.
        let url = manifest["output"][0]["url"].as_str().unwrap();
        let wrong = json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
            {"name": "type", "valueCode": "Encounter"}, {"name": "url", "valueUrl": url}]}]});
        let reply = send(
            &server.client,
            None,
            "POST",
            "$import",
            true,
            Some(("application/fhir+json", wrong.to_string().into_bytes())),
        )
        .await;
        expect_status(&reply, 400);
    }
);

secured!(
    types_the_token_may_not_write_are_refused_line_by_line,
    |s| {
        let client = &s.server.client;
        s.register("loader", "system/Patient.cu", None).await;
        let token = s.token("loader", "system/Patient.cu").await;
        let manifest = import(client, Some(&token), NDJSON, ndjson(&practice())).await;
        assert_eq!(
            counts(&manifest),
            BTreeMap::from([("Patient".to_owned(), 2)])
        );
        assert_eq!(manifest["requiresAccessToken"], true);
        assert_eq!(manifest["error"][0]["count"], 4);
        let reply = send(
            client,
            Some(&token),
            "GET",
            manifest["error"][0]["url"].as_str().unwrap(),
            false,
            None,
        )
        .await;
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        for line in text.lines() {
            let outcome: Value = serde_json::from_str(line).unwrap();
            assert_eq!(outcome["issue"][0]["code"], "forbidden");
        }
        // The status and the error file are the starting client's only.
        s.register("other", "system/*.cruds", None).await;
        let other = s.token("other", "system/*.cruds").await;
        let file = manifest["error"][0]["url"].as_str().unwrap();
        expect_status(
            &send(client, Some(&other), "GET", file, false, None).await,
            404,
        );
        // Without a token, nothing.
        expect_status(
            &send(
                client,
                None,
                "POST",
                "$import",
                true,
                Some((NDJSON, ndjson(&practice()))),
            )
            .await,
            401,
        );
    }
);

secured!(
    a_declared_type_the_token_may_not_write_is_refused_at_kick_off,
    |s| {
        let client = &s.server.client;
        s.register("admin", "system/*.cruds", None).await;
        let admin = s.token("admin", "system/*.cruds").await;
        for r in practice() {
            expect_status(&s.call(&admin, "PUT", &path(&r), Some(&r)).await, 201);
        }
        let kick = send(
            client,
            Some(&admin),
            "GET",
            "$export?_type=Observation",
            true,
            None,
        )
        .await;
        let status = kick.header("content-location").unwrap().to_owned();
        let manifest = finished(client, Some(&admin), &status).await;
        let url = manifest["output"][0]["url"].as_str().unwrap();
        let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
        {"name": "url", "valueUrl": url}]}]});
        // Another client cannot name the admin's export files at all…
        s.register("reader", "system/Observation.rs", None).await;
        let reader = s.token("reader", "system/Observation.rs").await;
        let reply = send(
            client,
            Some(&reader),
            "POST",
            "$import",
            true,
            Some(("application/fhir+json", parameters.to_string().into_bytes())),
        )
        .await;
        expect_status(&reply, 400);
        // …and a client that started an export but may not write its type is refused (403).
        let kick = send(
            client,
            Some(&reader),
            "GET",
            "$export?_type=Observation",
            true,
            None,
        )
        .await;
        let status = kick.header("content-location").unwrap().to_owned();
        let own = finished(client, Some(&reader), &status).await;
        let own_url = own["output"][0]["url"].as_str().unwrap();
        let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
        {"name": "url", "valueUrl": own_url}]}]});
        let reply = send(
            client,
            Some(&reader),
            "POST",
            "$import",
            true,
            Some(("application/fhir+json", parameters.to_string().into_bytes())),
        )
        .await;
        expect_status(&reply, 403);
    }
);

/// Runs the `signaal` binary to completion.
async fn signaal_cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_signaal"))
            .args(&args)
            .env("SIGNAAL_LOG", "warn")
            .output()
            .expect("signaal runs")
    })
    .await
    .unwrap()
}

both_stores!(
    the_command_line_imports_a_directory_and_reports_bad_lines,
    |server| {
        let dir = TempDir::new();
        let resources = practice();
        std::fs::write(dir.0.join("a.ndjson"), ndjson(&resources[..3])).unwrap();
        let mut second = ndjson(&resources[3..]);
        second.extend_from_slice(
            b"{\"resourceType\":\"Observation\",\"id\":\"imp-x\",\"status\":\"sideways\"}\n",
        );
        std::fs::write(dir.0.join("b.ndjson"), &second).unwrap();
        std::fs::write(dir.0.join("notes.txt"), "not imported").unwrap();
        let errors = dir.0.join("errors.ndjson");
        let output = signaal_cli(vec![
            "import".into(),
            dir.0.display().to_string(),
            "--database".into(),
            server.database_url.clone(),
            "--errors".into(),
            errors.display().to_string(),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "a failed line makes the exit code non-zero"
        );
        assert!(stderr.contains("b.ndjson:4: Observation/imp-x"), "{stderr}");
        assert!(stderr.contains("imported 6 resources"), "{stderr}");
        assert!(stderr.contains("1 line(s) failed"), "{stderr}");
        let outcome: Value =
            serde_json::from_str(std::fs::read_to_string(&errors).unwrap().trim()).unwrap();
        assert_eq!(outcome["issue"][0]["extension"][0]["valueInteger"], 4);
        for resource in &resources {
            assert_eq!(&read(&server.client, None, &path(resource)).await, resource);
        }
        // All good: exit code 0.
        let good = dir.0.join("good.ndjson");
        std::fs::write(&good, ndjson(&resources[..1])).unwrap();
        let output = signaal_cli(vec![
            "import".into(),
            good.display().to_string(),
            "--database".into(),
            server.database_url.clone(),
        ])
        .await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Not a terminal: a plain progress line, no bar.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("import: 1/1 lines"), "{stderr}");
        assert!(!stderr.contains('\r'));
    }
);
