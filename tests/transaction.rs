//! `POST [base]` with batch and transaction Bundles (http page, "batch/transaction"), on both
//! stores.

mod common;

use common::{create, expect_status, matches, patient, statuses, StoreKind, TestServer};
use serde_json::{json, Value};
use signaal::client::Reply;

const BSN: &str = "http://fhir.nl/fhir/NamingSystem/bsn";

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rtype}})
}

/// A Patient de Vries with BSN `bsn`.
fn patient_bsn(bsn: &str) -> Value {
    patient().identifier(BSN, bsn).family("de Vries").json()
}

/// Posts a Bundle to the base and returns the reply.
async fn send(server: &TestServer, bundle: &Value) -> Reply {
    server.client.post("", bundle).await.unwrap()
}

/// The `Type/id` of a response entry's location.
fn target(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let path = location.split("/fhir/").nth(1).unwrap();
    let parts: Vec<&str> = path.split('/').collect();
    format!("{}/{}", parts[0], parts[1])
}

async fn type_history_total(server: &TestServer, rtype: &str) -> usize {
    let reply = server
        .client
        .get(&format!("{rtype}/_history"))
        .await
        .unwrap();
    let body = expect_status(&reply, 200);
    body["entry"].as_array().map_or(0, Vec::len)
}

both_stores!(
    transaction_creates_everything_and_answers_in_order,
    |server| {
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![
                    post("urn:uuid:p1", patient_bsn("111")),
                    post(
                        "urn:uuid:o1",
                        json!({"resourceType": "Observation", "status": "final",
                           "code": {"text": "weight"}, "subject": {"reference": "urn:uuid:p1"}}),
                    ),
                ],
            ),
        )
        .await;
        let body = expect_status(&reply, 200);
        assert_eq!(body["type"], "transaction-response");
        assert_eq!(statuses(&body), vec!["201 Created", "201 Created"]);
        let entries = body["entry"].as_array().unwrap();
        assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
        assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");
        assert!(entries[0]["response"]["lastModified"].is_string());
        let patient = target(&entries[0]);
        assert_eq!(entries[1]["resource"]["subject"]["reference"], patient);
        expect_status(&server.client.get(&patient).await.unwrap(), 200);
    }
);

both_stores!(a_failing_last_entry_leaves_nothing_behind, |server| {
    let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![
                post("urn:uuid:p1", patient_bsn("222")),
                post(
                    "urn:uuid:o1",
                    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
                ),
                post(
                    "urn:uuid:bad",
                    json!({"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}),
                ),
            ],
        ),
    )
    .await;
    let body = expect_status(&reply, 400);
    let text = body.to_string();
    assert!(text.contains("Bundle.entry[2]"), "names the entry: {text}");
    assert!(text.contains("urn:uuid:bad"), "names the fullUrl: {text}");
    assert_eq!(type_history_total(&server, "Patient").await, 0);
    assert_eq!(type_history_total(&server, "Observation").await, 0);
});

both_stores!(
    a_failure_found_while_writing_rolls_back_earlier_writes,
    |server| {
        // The PUT fails on its If-Match only after the POST and the DELETE were written.
        let existing = expect_status(
            &server
                .client
                .post("Patient", &patient_bsn("333"))
                .await
                .unwrap(),
            201,
        );
        let id = existing["id"].as_str().unwrap().to_owned();
        let mut changed = existing.clone();
        changed["active"] = json!(true);
        let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![
                post("urn:uuid:p2", patient_bsn("334")),
                json!({"request": {"method": "DELETE", "url": format!("Patient?identifier={BSN}|999")}}),
                json!({"resource": changed, "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"7\""}}),
            ],
        ),
    )
    .await;
        let body = expect_status(&reply, 412);
        assert!(body.to_string().contains("Bundle.entry[2]"), "{body}");
        assert_eq!(type_history_total(&server, "Patient").await, 1);
    }
);

both_stores!(
    urn_uuid_references_are_rewritten_in_nested_places,
    |server| {
        let patient = patient_bsn("444");
        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "blood pressure"},
            "subject": {"reference": "urn:uuid:patient"},
            "hasMember": [{"reference": "urn:uuid:member"}],
            "extension": [{"url": "http://example.org/ext", "valueReference": {"reference": "urn:uuid:patient"}}],
            "contained": [{
                "resourceType": "Provenance",
                "id": "prov",
                "recorded": "2024-01-01T00:00:00Z",
                "target": [{"reference": "urn:uuid:member"}],
                "agent": [{"who": {"reference": "urn:uuid:patient"}}],
            }],
            "derivedFrom": [{"reference": "#prov"}],
        });
        let member = json!({"resourceType": "Observation", "status": "final", "code": {"text": "systolic"},
                        "subject": {"reference": "urn:uuid:patient"}});
        let care_plan = json!({
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "urn:uuid:patient"},
            "activity": [{"reference": {"reference": "urn:uuid:request"}}],
        });
        let request = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                         "subject": {"reference": "urn:uuid:patient"}});
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![
                    post("urn:uuid:obs", observation),
                    post("urn:uuid:careplan", care_plan),
                    post("urn:uuid:member", member),
                    post("urn:uuid:request", request),
                    post("urn:uuid:patient", patient),
                ],
            ),
        )
        .await;
        let body = expect_status(&reply, 200);
        let entries = body["entry"].as_array().unwrap();
        let patient = target(&entries[4]);
        let member = target(&entries[2]);
        let request = target(&entries[3]);
        // Read back what was stored, not just what was answered.
        let obs = expect_status(&server.client.get(&target(&entries[0])).await.unwrap(), 200);
        assert_eq!(obs["subject"]["reference"], patient);
        assert_eq!(obs["hasMember"][0]["reference"], member);
        assert_eq!(obs["extension"][0]["valueReference"]["reference"], patient);
        assert_eq!(obs["contained"][0]["target"][0]["reference"], member);
        assert_eq!(obs["contained"][0]["agent"][0]["who"]["reference"], patient);
        assert_eq!(obs["derivedFrom"][0]["reference"], "#prov");
        let plan = expect_status(&server.client.get(&target(&entries[1])).await.unwrap(), 200);
        assert_eq!(plan["activity"][0]["reference"]["reference"], request);
        assert!(!body.to_string().contains("urn:uuid:"), "{body}");
        // The rewritten references are searchable.
        let id = patient.split('/').nth(1).unwrap();
        assert_eq!(
            matches(&server, &format!("Observation?subject=Patient/{id}"))
                .await
                .len(),
            2
        );
    }
);

both_stores!(
    a_urn_reference_to_no_entry_fails_the_transaction,
    |server| {
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![post(
                    "urn:uuid:o1",
                    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                       "subject": {"reference": "urn:uuid:nobody"}}),
                )],
            ),
        )
        .await;
        let body = expect_status(&reply, 400);
        assert!(body.to_string().contains("urn:uuid:nobody"), "{body}");
        assert_eq!(type_history_total(&server, "Observation").await, 0);
    }
);

both_stores!(
    conditional_create_entry_finds_or_creates_the_patient_by_bsn,
    |server| {
        // The PGO flow: send the patient with its BSN and everything about it, whether or not the
        // server knows the patient yet.
        let pgo = |weight: f64| {
            let mut patient = post("urn:uuid:me", patient_bsn("999911120"));
            patient["request"]["ifNoneExist"] = json!(format!("identifier={BSN}|999911120"));
            bundle(
                "transaction",
                vec![
                    patient,
                    post(
                        "urn:uuid:w",
                        json!({"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                           "valueQuantity": {"value": weight, "unit": "kg"},
                           "subject": {"reference": "urn:uuid:me"}}),
                    ),
                ],
            )
        };
        let first = expect_status(&send(&server, &pgo(80.0)).await, 200);
        assert_eq!(statuses(&first), vec!["201 Created", "201 Created"]);
        let second = expect_status(&send(&server, &pgo(79.5)).await, 200);
        assert_eq!(statuses(&second), vec!["200 OK", "201 Created"]);
        let patient = target(&first["entry"][0]);
        assert_eq!(target(&second["entry"][0]), patient);
        assert_eq!(
            second["entry"][1]["resource"]["subject"]["reference"],
            patient
        );
        assert_eq!(type_history_total(&server, "Patient").await, 1);
        let id = patient.split('/').nth(1).unwrap();
        assert_eq!(
            matches(&server, &format!("Observation?subject={id}"))
                .await
                .len(),
            2
        );
    }
);

fn observation_for(reference: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": reference}})
}

both_stores!(a_conditional_reference_to_one_match_is_resolved, |server| {
    let id = create(&server, &patient_bsn("555")).await;
    let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![post(
                "urn:uuid:o",
                observation_for(&format!("Patient?identifier={BSN}|555")),
            )],
        ),
    )
    .await;
    let body = expect_status(&reply, 200);
    assert_eq!(
        body["entry"][0]["resource"]["subject"]["reference"],
        format!("Patient/{id}")
    );
});

both_stores!(
    a_conditional_reference_to_no_match_fails_the_transaction,
    |server| {
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![
                    post("urn:uuid:p", patient_bsn("666")),
                    post(
                        "urn:uuid:o",
                        observation_for(&format!("Patient?identifier={BSN}|nobody")),
                    ),
                ],
            ),
        )
        .await;
        let body = expect_status(&reply, 412);
        let text = body.to_string();
        assert!(text.contains("matches no Patient"), "{text}");
        assert!(text.contains("Bundle.entry[1]"), "{text}");
        assert_eq!(type_history_total(&server, "Patient").await, 0);
    }
);

both_stores!(
    a_conditional_reference_to_many_matches_fails_the_transaction,
    |server| {
        for _ in 0..2 {
            create(&server, &patient_bsn("777")).await;
        }
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![post(
                    "urn:uuid:o",
                    observation_for(&format!("Patient?identifier={BSN}|777")),
                )],
            ),
        )
        .await;
        let body = expect_status(&reply, 412);
        assert!(body.to_string().contains("more than one"), "{body}");
        assert_eq!(type_history_total(&server, "Observation").await, 0);
    }
);

both_stores!(
    deletes_run_before_creates_whatever_the_entry_order,
    |server| {
        create(&server, &patient_bsn("888")).await;
        // The POST comes first in the Bundle, but the DELETE runs first: afterwards exactly one
        // Patient with that BSN exists, the new one.
        let mut create = post("urn:uuid:new", patient_bsn("888"));
        create["request"]["ifNoneExist"] = json!(format!("identifier={BSN}|888"));
        let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![
                create,
                json!({"request": {"method": "DELETE", "url": format!("Patient?identifier={BSN}|888")}}),
            ],
        ),
    )
    .await;
        let body = expect_status(&reply, 200);
        assert_eq!(statuses(&body), vec!["201 Created", "204 No Content"]);
        let found = matches(&server, &format!("Patient?identifier={BSN}|888")).await;
        assert_eq!(found.len(), 1);
        assert_eq!(
            format!("Patient/{}", found[0]["id"].as_str().unwrap()),
            target(&body["entry"][0])
        );
    }
);

both_stores!(two_entries_on_the_same_resource_are_refused, |server| {
    let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![
                json!({"resource": {"resourceType": "Patient", "id": "same"},
                       "request": {"method": "PUT", "url": "Patient/same"}}),
                json!({"resource": {"resourceType": "Patient", "id": "same", "active": true},
                       "request": {"method": "PUT", "url": "Patient/same"}}),
            ],
        ),
    )
    .await;
    let body = expect_status(&reply, 400);
    assert!(body.to_string().contains("Patient/same"), "{body}");
    expect_status(&server.client.get("Patient/same").await.unwrap(), 404);
});

both_stores!(
    batch_applies_the_good_entries_and_reports_the_failing_one,
    |server| {
        let reply = send(
            &server,
            &bundle(
                "batch",
                vec![
                    post("urn:uuid:a", patient_bsn("1001")),
                    json!({"resource": {"resourceType": "Patient", "gender": "nonsense"},
                       "request": {"method": "POST", "url": "Patient"}}),
                    json!({"request": {"method": "GET", "url": "Patient/does-not-exist"}}),
                    post("urn:uuid:c", patient_bsn("1003")),
                ],
            ),
        )
        .await;
        let body = expect_status(&reply, 200);
        assert_eq!(body["type"], "batch-response");
        assert_eq!(
            statuses(&body),
            vec![
                "201 Created",
                "400 Bad Request",
                "404 Not Found",
                "201 Created"
            ]
        );
        assert_eq!(
            body["entry"][1]["response"]["outcome"]["resourceType"],
            "OperationOutcome"
        );
        assert_eq!(type_history_total(&server, "Patient").await, 2);
    }
);

both_stores!(
    get_entries_run_after_the_writes_and_honour_if_none_match,
    |server| {
        let id = create(&server, &patient_bsn("1200")).await;
        let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![
                json!({"request": {"method": "GET", "url": format!("Patient?identifier={BSN}|1201")}}),
                json!({"request": {"method": "GET", "url": format!("Patient/{id}"), "ifNoneMatch": "W/\"1\""}}),
                post("urn:uuid:new", patient_bsn("1201")),
            ],
        ),
    )
    .await;
        let body = expect_status(&reply, 200);
        assert_eq!(
            statuses(&body),
            vec!["200 OK", "304 Not Modified", "201 Created"]
        );
        // The search sees the Patient the transaction created.
        assert_eq!(body["entry"][0]["resource"]["type"], "searchset");
        assert_eq!(body["entry"][0]["resource"]["total"], 1);
    }
);

both_stores!(
    prefer_minimal_leaves_resources_out_of_the_response,
    |server| {
        let reply = server
            .client
            .send(
                "POST",
                "",
                &[("prefer", "return=minimal")],
                Some(
                    bundle("transaction", vec![post("urn:uuid:p", patient_bsn("1300"))])
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await
            .unwrap();
        let body = expect_status(&reply, 200);
        assert!(body["entry"][0].get("resource").is_none(), "{body}");
        assert!(body["entry"][0]["response"]["location"].is_string());
    }
);

both_stores!(a_bundle_of_another_type_is_refused, |server| {
    let reply = send(&server, &bundle("collection", vec![])).await;
    expect_status(&reply, 400);
    let reply = send(
        &server,
        &json!({"resourceType": "Bundle", "type": "transaction",
                "entry": [{"resource": patient_bsn("1")}]}),
    )
    .await;
    let body = expect_status(&reply, 400);
    assert!(body.to_string().contains("request"), "{body}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_entries_is_413() {
    let server = TestServer::start_configured(StoreKind::Sqlite, |s| s.max_bundle_entries = 2)
        .await
        .unwrap();
    let entries = (0..3)
        .map(|i| post(&format!("urn:uuid:{i}"), patient_bsn(&i.to_string())))
        .collect();
    let reply = send(&server, &bundle("transaction", entries)).await;
    expect_status(&reply, 413);
    assert_eq!(type_history_total(&server, "Patient").await, 0);
}

both_stores!(
    concurrent_transactions_on_one_patient_never_merge,
    |server| {
        let id = create(&server, &patient_bsn("1400")).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let client = server.client.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let family = format!("Family{i}");
                let b = bundle(
                    "transaction",
                    vec![
                        json!({"resource": {"resourceType": "Patient", "id": id,
                                         "identifier": [{"system": BSN, "value": "1400"}],
                                         "name": [{"family": family}]},
                           "request": {"method": "PUT", "url": format!("Patient/{id}")}}),
                        post(
                            &format!("urn:uuid:o{i}"),
                            json!({"resourceType": "Observation", "status": "final",
                               "code": {"text": family},
                               "subject": {"reference": format!("Patient?identifier={BSN}|1400")}}),
                        ),
                    ],
                );
                let reply = client.post("", &b).await.unwrap();
                (reply.status, reply.json())
            }));
        }
        let mut ok = 0;
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                200 => {
                    ok += 1;
                    // Each transaction's Observation and Patient version belong together.
                    assert_eq!(
                        body["entry"][1]["resource"]["subject"]["reference"],
                        format!("Patient/{id}")
                    );
                }
                409 | 412 => assert_eq!(body["resourceType"], "OperationOutcome"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!(ok >= 1);
        let history = expect_status(
            &server
                .client
                .get(&format!("Patient/{id}/_history"))
                .await
                .unwrap(),
            200,
        );
        let mut versions: Vec<i64> = history["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        versions.sort();
        assert_eq!(versions, (1..=ok as i64 + 1).collect::<Vec<_>>());
        assert_eq!(type_history_total(&server, "Observation").await, ok);
    }
);

both_stores!(
    crossing_transactions_never_fail_with_a_server_error,
    |server| {
        // Pairs of transactions that update the same two Patients in opposite orders: on
        // PostgreSQL they can deadlock, and the loser is retried.
        for id in ["a", "b"] {
            let p = json!({"resourceType": "Patient", "id": id});
            expect_status(
                &server
                    .client
                    .put(&format!("Patient/{id}"), &p)
                    .await
                    .unwrap(),
                201,
            );
        }
        let put = |id: &str, family: String| {
            json!({"resource": {"resourceType": "Patient", "id": id, "name": [{"family": family}]},
               "request": {"method": "PUT", "url": format!("Patient/{id}")}})
        };
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (first, second) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
            let b = bundle(
                "transaction",
                vec![put(first, format!("F{i}")), put(second, format!("F{i}"))],
            );
            let client = server.client.clone();
            tasks.push(tokio::spawn(
                async move { client.post("", &b).await.unwrap() },
            ));
        }
        let mut ok = 0;
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                200 => ok += 1,
                409 => {}
                other => panic!(
                    "unexpected {other}: {}",
                    String::from_utf8_lossy(&reply.body)
                ),
            }
        }
        // Both Patients got exactly the successful transactions' versions, and end up equal.
        let a = expect_status(&server.client.get("Patient/a").await.unwrap(), 200);
        let b = expect_status(&server.client.get("Patient/b").await.unwrap(), 200);
        assert_eq!(a["meta"]["versionId"], (ok + 1).to_string());
        assert_eq!(b["meta"]["versionId"], (ok + 1).to_string());
        assert_eq!(a["name"], b["name"]);
    }
);

/// A JSON Patch as a transaction entry carries it: a Binary with the patch as base64 data.
fn json_patch_entry(url: &str, operations: Value) -> Value {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(operations.to_string());
    json!({
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
        "request": {"method": "PATCH", "url": url},
    })
}

/// A FHIRPath Patch entry: a Parameters resource with one `replace` operation.
fn fhirpath_replace_entry(url: &str, path: &str, value: Value) -> Value {
    json!({
        "resource": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": path},
            {"name": "value", "valueString": value},
        ]}]},
        "request": {"method": "PATCH", "url": url},
    })
}

/// Creates a Patient with BSN `bsn`; its reference `Patient/id`.
async fn create_patient(server: &TestServer, bsn: &str) -> String {
    format!("Patient/{}", create(server, &patient_bsn(bsn)).await)
}

both_stores!(a_json_patch_entry_patches_in_a_transaction, |server| {
    let patient = create_patient(&server, "301").await;
    let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![json_patch_entry(
                &patient,
                json!([{"op": "replace", "path": "/name/0/family", "value": "Jansen"}]),
            )],
        ),
    )
    .await;
    let body = expect_status(&reply, 200);
    assert_eq!(statuses(&body), vec!["200 OK"]);
    assert_eq!(body["entry"][0]["response"]["etag"], "W/\"2\"");
    let read = expect_status(&server.client.get(&patient).await.unwrap(), 200);
    assert_eq!(read["name"][0]["family"], "Jansen");
});

both_stores!(a_fhirpath_patch_entry_patches_in_a_transaction, |server| {
    let patient = create_patient(&server, "302").await;
    let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![fhirpath_replace_entry(
                &patient,
                "Patient.name[0].family",
                json!("Bakker"),
            )],
        ),
    )
    .await;
    let body = expect_status(&reply, 200);
    assert_eq!(statuses(&body), vec!["200 OK"]);
    let read = expect_status(&server.client.get(&patient).await.unwrap(), 200);
    assert_eq!(read["name"][0]["family"], "Bakker");
});

both_stores!(
    a_patch_entry_may_point_at_a_resource_the_transaction_creates,
    |server| {
        let patient = create_patient(&server, "303").await;
        let mut entry = json_patch_entry(
            &patient,
            json!([{"op": "add", "path": "/generalPractitioner",
                    "value": [{"reference": "urn:uuid:gp"}]}]),
        );
        entry["fullUrl"] = json!("urn:uuid:patch");
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![
                    entry,
                    post(
                        "urn:uuid:gp",
                        json!({"resourceType": "Practitioner", "name": [{"family": "Huisarts"}]}),
                    ),
                ],
            ),
        )
        .await;
        let body = expect_status(&reply, 200);
        assert_eq!(statuses(&body), vec!["200 OK", "201 Created"]);
        let gp = target(&body["entry"][1]);
        let read = expect_status(&server.client.get(&patient).await.unwrap(), 200);
        assert_eq!(read["generalPractitioner"][0]["reference"], gp);
    }
);

both_stores!(a_conditional_patch_entry_patches_the_one_match, |server| {
    let patient = create_patient(&server, "304").await;
    let reply = send(
        &server,
        &bundle(
            "transaction",
            vec![fhirpath_replace_entry(
                &format!("Patient?identifier={BSN}|304"),
                "Patient.name[0].family",
                json!("Visser"),
            )],
        ),
    )
    .await;
    let body = expect_status(&reply, 200);
    assert_eq!(statuses(&body), vec!["200 OK"]);
    let read = expect_status(&server.client.get(&patient).await.unwrap(), 200);
    assert_eq!(read["name"][0]["family"], "Visser");
});

both_stores!(
    a_patch_entry_whose_result_is_invalid_rolls_the_transaction_back,
    |server| {
        let patient = create_patient(&server, "305").await;
        let reply = send(
            &server,
            &bundle(
                "transaction",
                vec![
                    post("urn:uuid:o1", observation_for(&patient)),
                    json_patch_entry(
                        &patient,
                        json!([{"op": "add", "path": "/gender", "value": "not-a-gender"}]),
                    ),
                ],
            ),
        )
        .await;
        let outcome = expect_status(&reply, 400);
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains("Bundle.entry[1]"), "{diagnostics}");
        assert!(matches(&server, &format!("Observation?subject={patient}"))
            .await
            .is_empty());
        let read = expect_status(&server.client.get(&patient).await.unwrap(), 200);
        assert_eq!(read["meta"]["versionId"], "1");
    }
);

both_stores!(a_patch_entry_with_a_stale_if_match_is_412, |server| {
    let patient = create_patient(&server, "306").await;
    let mut entry = fhirpath_replace_entry(&patient, "Patient.name[0].family", json!("Smit"));
    entry["request"]["ifMatch"] = json!("W/\"7\"");
    let reply = send(&server, &bundle("transaction", vec![entry])).await;
    expect_status(&reply, 412);
});

both_stores!(
    a_patch_entry_that_is_neither_binary_nor_parameters_is_400,
    |server| {
        let patient = create_patient(&server, "307").await;
        let entry = json!({
            "resource": patient_bsn("307"),
            "request": {"method": "PATCH", "url": patient},
        });
        let reply = send(&server, &bundle("transaction", vec![entry])).await;
        let outcome = expect_status(&reply, 400);
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains("Binary"), "{diagnostics}");
    }
);

both_stores!(
    patch_entries_in_a_batch_fail_and_succeed_on_their_own,
    |server| {
        let patient = create_patient(&server, "308").await;
        let reply = send(
            &server,
            &bundle(
                "batch",
                vec![
                    json_patch_entry(
                        "Patient/does-not-exist",
                        json!([{"op": "replace", "path": "/active", "value": true}]),
                    ),
                    json_patch_entry(
                        &patient,
                        json!([{"op": "add", "path": "/active", "value": true}]),
                    ),
                ],
            ),
        )
        .await;
        let body = expect_status(&reply, 200);
        assert_eq!(statuses(&body), vec!["404 Not Found", "200 OK"]);
        let read = expect_status(&server.client.get(&patient).await.unwrap(), 200);
        assert_eq!(read["active"], true);
    }
);
