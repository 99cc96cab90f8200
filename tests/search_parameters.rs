//! SearchParameter resources defined on the server and `$reindex` (search page, "Defining
//! search parameters"; operation in conformance/operation-reindex.json), on both stores.

mod common;

use std::net::SocketAddr;

use common::{expect_status, patient, put, strict_ids};
use serde_json::{json, Value};
use signaal::client::Client;
use signaal::server::{self, Settings};

/// Status of a strict search: 400 when the parameter is unknown.
async fn strict_status(client: &Client, query: &str) -> u16 {
    client
        .send("GET", query, &[("prefer", "handling=strict")], None)
        .await
        .unwrap()
        .status
}

/// Patient `id` with marital status `marital` (a v3-MaritalStatus code).
fn patient_with_marital_status(id: &str, marital: &str) -> Value {
    patient()
        .id(id)
        .set(
            "maritalStatus",
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": marital}]}),
        )
        .json()
}

/// A parameter the official definitions do not have: Patient by marital status.
fn marital_status(status: &str) -> Value {
    json!({
        "resourceType": "SearchParameter", "id": "patient-marital-status",
        "url": "http://example.org/fhir/SearchParameter/patient-marital-status",
        "name": "marital-status", "status": status, "description": "Marital status",
        "code": "marital-status", "base": ["Patient"], "type": "token",
        "expression": "Patient.maritalStatus"
    })
}

async fn reindex(client: &Client, path: &str) -> Value {
    let reply = client.send("POST", path, &[], None).await.unwrap();
    expect_status(&reply, 200)
}

fn count(parameters: &Value, name: &str) -> i64 {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {parameters}"))["valueInteger"]
        .as_i64()
        .unwrap()
}

both_stores!(
    a_posted_search_parameter_finds_new_writes_at_once_and_old_ones_after_reindex,
    |server| {
        let c = &server.client;
        assert_eq!(
            put(c, patient_with_marital_status("before", "M")).await,
            201
        );
        let reply = c
            .post("SearchParameter", &marital_status("active"))
            .await
            .unwrap();
        expect_status(&reply, 201);
        assert_eq!(put(c, patient_with_marital_status("after", "M")).await, 201);
        assert_eq!(put(c, patient_with_marital_status("other", "S")).await, 201);

        assert_eq!(
            strict_ids(c, "Patient?marital-status=M").await,
            vec!["after"]
        );

        let result = reindex(c, "Patient/$reindex").await;
        assert_eq!(result["resourceType"], "Parameters");
        assert_eq!(count(&result, "total"), 3);
        assert_eq!(count(&result, "reindexed"), 3);
        assert_eq!(
            strict_ids(c, "Patient?marital-status=M").await,
            vec!["after", "before"]
        );
        assert_eq!(
            strict_ids(
                c,
                "Patient?marital-status=http://terminology.hl7.org/CodeSystem/v3-MaritalStatus|S"
            )
            .await,
            vec!["other"]
        );
    }
);

both_stores!(system_reindex_covers_every_type, |server| {
    let c = &server.client;
    assert_eq!(put(c, patient_with_marital_status("p1", "M")).await, 201);
    let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                     "valueQuantity": {"value": 5400, "system": "http://unitsofmeasure.org", "code": "umol/L"}});
    assert_eq!(put(c, obs).await, 201);
    assert_eq!(put(c, marital_status("active")).await, 201);
    assert!(strict_ids(c, "Patient?marital-status=M").await.is_empty());

    let result = reindex(c, "$reindex").await;
    // The two resources, the SearchParameter itself, and whatever the risk-scoring worker
    // wrote for the patient meanwhile.
    // (They may still be writing while it runs, so the two counts need not agree.)
    assert!(count(&result, "total") >= 3, "{result}");
    assert!(count(&result, "done") >= 3, "{result}");
    assert_eq!(strict_ids(c, "Patient?marital-status=M").await, vec!["p1"]);
    assert_eq!(
        strict_ids(
            c,
            "Observation?value-quantity=5.4|http://unitsofmeasure.org|mmol/L"
        )
        .await,
        vec!["o1"]
    );
});

both_stores!(reindex_goes_through_every_batch, |server| {
    let c = &server.client;
    let n = signaal::interaction::reindex::BATCH + 7;
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"resource": patient_with_marital_status(&format!("p{i}"), "M"),
                   "request": {"method": "PUT", "url": format!("Patient/p{i}")}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    expect_status(&c.post("", &bundle).await.unwrap(), 200);
    assert_eq!(put(c, marital_status("active")).await, 201);

    let result = reindex(c, "Patient/$reindex").await;
    assert_eq!(count(&result, "reindexed"), n as i64);
    assert_eq!(count(&result, "batches"), 2);
    let reply = c
        .get("Patient?marital-status=M&_summary=count")
        .await
        .unwrap();
    assert_eq!(expect_status(&reply, 200)["total"], n);
});

both_stores!(
    retiring_or_deleting_a_search_parameter_deactivates_it,
    |server| {
        let c = &server.client;
        assert_eq!(put(c, marital_status("active")).await, 201);
        assert_eq!(put(c, patient_with_marital_status("p", "M")).await, 201);
        assert_eq!(strict_ids(c, "Patient?marital-status=M").await, vec!["p"]);

        assert_eq!(put(c, marital_status("retired")).await, 200);
        assert_eq!(strict_status(c, "Patient?marital-status=M").await, 400);

        assert_eq!(put(c, marital_status("active")).await, 200);
        assert_eq!(strict_ids(c, "Patient?marital-status=M").await, vec!["p"]);

        expect_status(
            &c.delete("SearchParameter/patient-marital-status")
                .await
                .unwrap(),
            204,
        );
        assert_eq!(strict_status(c, "Patient?marital-status=M").await, 400);
    }
);

both_stores!(
    stored_search_parameters_are_loaded_when_the_server_starts,
    |server| {
        assert_eq!(put(&server.client, marital_status("active")).await, 201);
        assert_eq!(
            put(&server.client, patient_with_marital_status("p", "M")).await,
            201
        );

        // A second server on the same database knows the parameter from the start.
        let listen = "127.0.0.1:0".parse::<SocketAddr>().unwrap();
        let settings = Settings::new(listen, server.database_url.clone());
        let (listener, app) = server::start(&settings)
            .await
            .expect("second server starts");
        let client = Client::new(&app.base_url);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, app, async {
            let _ = stopped.await;
        }));
        assert_eq!(
            strict_ids(&client, "Patient?marital-status=M").await,
            vec!["p"]
        );
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
);

both_stores!(bad_search_parameters_are_refused_and_not_stored, |server| {
    let c = &server.client;
    let bad = |change: &dyn Fn(&mut Value)| {
        let mut sp = marital_status("active");
        change(&mut sp);
        sp
    };
    let cases = [
        bad(&|sp| sp["expression"] = json!("Patient.maritalStatus.where(")),
        bad(&|sp| sp["base"] = json!(["Patientje"])),
        bad(&|sp| sp["code"] = json!("gender")),
        bad(&|sp| sp["type"] = json!("composite")),
        bad(&|sp| {
            sp.as_object_mut().unwrap().remove("expression");
        }),
    ];
    for sp in cases {
        let reply = c
            .put("SearchParameter/patient-marital-status", &sp)
            .await
            .unwrap();
        // An unknown base type is already refused by the schema (400); the others here (422).
        let outcome = reply.json();
        assert!(
            reply.status == 400 || reply.status == 422,
            "{sp}: {outcome}"
        );
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap_or("");
        assert!(
            reply.status == 400 || text.starts_with("SearchParameter: "),
            "{text}"
        );
        expect_status(
            &c.get("SearchParameter/patient-marital-status")
                .await
                .unwrap(),
            404,
        );
    }
    // A draft is not in force, so it is not checked.
    let draft = bad(&|sp| {
        sp["status"] = json!("draft");
        sp["code"] = json!("gender");
    });
    assert_eq!(put(c, draft).await, 201);
    assert_eq!(put(c, patient_with_marital_status("p", "M")).await, 201);
    assert_eq!(
        strict_ids(c, "Patient?gender=male").await,
        Vec::<String>::new()
    );
});

both_stores!(
    the_capability_statement_lists_reindex_and_posted_parameters,
    |server| {
        let c = &server.client;
        assert_eq!(put(c, marital_status("active")).await, 201);
        let statement = expect_status(&c.get("metadata").await.unwrap(), 200);
        let rest = &statement["rest"][0];
        assert_eq!(rest["operation"][0]["name"], "reindex");
        let documentation = rest["operation"][0]["documentation"].as_str().unwrap();
        assert!(documentation.contains("respond-async"), "{documentation}");
        let patient = rest["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Patient")
            .unwrap();
        assert!(patient["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "marital-status"
                && p["definition"]
                    == "http://example.org/fhir/SearchParameter/patient-marital-status"));
        assert!(patient["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "reindex"));
    }
);

both_stores!(
    reindex_of_an_unknown_type_or_with_parameters_is_refused,
    |server| {
        let c = &server.client;
        expect_status(
            &c.send("POST", "Patientje/$reindex", &[], None)
                .await
                .unwrap(),
            404,
        );
        let params =
            json!({"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]});
        expect_status(&c.post("$reindex", &params).await.unwrap(), 400);
        expect_status(&c.get("$reindex").await.unwrap(), 405);
    }
);

// ---- $reindex with the asynchronous request pattern (R4 async page) ------------------------

const RESPOND_ASYNC: (&str, &str) = ("prefer", "respond-async");

/// Kicks off an asynchronous `$reindex`: 202 with the status URL in `Content-Location`. A
/// cancelled job may still hold the one slot until its batch ends (409): asked again then.
async fn kick_off(client: &Client, path: &str) -> String {
    for _ in 0..500 {
        let reply = client
            .send("POST", path, &[RESPOND_ASYNC], None)
            .await
            .unwrap();
        if reply.status == 409 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        let outcome = expect_status(&reply, 202);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let location = reply.header("content-location").expect("Content-Location");
        assert!(
            location.starts_with(&format!("{}/_async/", client.base())),
            "{location}"
        );
        return location.to_owned();
    }
    panic!("{path}: the previous reindex never freed its slot");
}

/// Polls a status URL until the job is done (202 with `X-Progress` while it runs): its answer.
async fn poll(client: &Client, url: &str) -> Value {
    for _ in 0..2000 {
        let reply = client.get(url).await.unwrap();
        match reply.status {
            202 => {
                let progress = reply.header("x-progress").expect("X-Progress");
                let (done, total) = progress.split_once('/').expect("done/total");
                assert!(done.parse::<u64>().unwrap() <= total.parse::<u64>().unwrap());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            200 => return reply.json(),
            _ => panic!("{url}: {}", String::from_utf8_lossy(&reply.body)),
        }
    }
    panic!("{url}: the job did not finish");
}

both_stores!(
    reindex_with_respond_async_answers_202_and_its_status_url_gives_the_counts,
    |server| {
        let c = &server.client;
        assert_eq!(
            put(c, patient_with_marital_status("before", "M")).await,
            201
        );
        assert_eq!(put(c, patient_with_marital_status("other", "S")).await, 201);
        assert_eq!(put(c, marital_status("active")).await, 201);
        assert!(strict_ids(c, "Patient?marital-status=M").await.is_empty());

        let status = kick_off(c, "Patient/$reindex").await;
        let result = poll(c, &status).await;
        assert_eq!(result["resourceType"], "Parameters");
        assert_eq!(count(&result, "total"), 2);
        assert_eq!(count(&result, "done"), 2);
        assert_eq!(count(&result, "reindexed"), 2);
        assert_eq!(count(&result, "batches"), 1);
        assert_eq!(
            strict_ids(c, "Patient?marital-status=M").await,
            vec!["before"]
        );
        // The answer stays there for the next poll.
        assert_eq!(poll(c, &status).await, result);
    }
);

both_stores!(
    system_reindex_with_respond_async_goes_through_every_batch,
    |server| {
        let c = &server.client;
        let n = signaal::interaction::reindex::BATCH + 3;
        let entries: Vec<Value> = (0..n)
            .map(|i| {
                json!({"resource": patient_with_marital_status(&format!("p{i}"), "M"),
                       "request": {"method": "PUT", "url": format!("Patient/p{i}")}})
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        expect_status(&c.post("", &bundle).await.unwrap(), 200);
        assert_eq!(put(c, marital_status("active")).await, 201);

        let result = poll(c, &kick_off(c, "$reindex").await).await;
        // The patients, the SearchParameter, and what the risk-scoring worker wrote meanwhile.
        assert!(count(&result, "reindexed") > n as i64, "{result}");
        assert!(count(&result, "batches") >= 2, "{result}");
        let reply = c
            .get("Patient?marital-status=M&_summary=count")
            .await
            .unwrap();
        assert_eq!(expect_status(&reply, 200)["total"], n);
    }
);

both_stores!(
    delete_on_the_status_url_cancels_the_job_and_forgets_it,
    |server| {
        let c = &server.client;
        assert_eq!(put(c, patient_with_marital_status("p", "M")).await, 201);
        let status = kick_off(c, "$reindex").await;
        let outcome = expect_status(&c.delete(&status).await.unwrap(), 202);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        expect_status(&c.get(&status).await.unwrap(), 404);
        expect_status(&c.delete(&status).await.unwrap(), 404);
        // Once the cancelled job has stopped, the next reindex runs.
        let result = poll(c, &kick_off(c, "Patient/$reindex").await).await;
        assert_eq!(count(&result, "reindexed"), 1);
    }
);

both_stores!(
    the_result_of_a_finished_job_is_deleted_by_delete,
    |server| {
        let c = &server.client;
        let status = kick_off(c, "Patient/$reindex").await;
        let result = poll(c, &status).await;
        assert_eq!(count(&result, "total"), 0);
        expect_status(&c.delete(&status).await.unwrap(), 202);
        expect_status(&c.get(&status).await.unwrap(), 404);
    }
);

both_stores!(an_unknown_job_is_404, |server| {
    let c = &server.client;
    expect_status(&c.get("_async/no-such-job").await.unwrap(), 404);
    expect_status(&c.delete("_async/no-such-job").await.unwrap(), 404);
});

both_stores!(
    a_bad_prefer_or_method_for_asynchronous_reindex_is_refused,
    |server| {
        let c = &server.client;
        let reply = c
            .send("POST", "$reindex", &[("prefer", "respond-async=yes")], None)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 400);
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("respond-async"));
        let reply = c
            .send("GET", "Patient/$reindex", &[RESPOND_ASYNC], None)
            .await
            .unwrap();
        expect_status(&reply, 405);

        let status = kick_off(c, "Patient/$reindex").await;
        poll(c, &status).await;
        for method in ["POST", "PUT", "PATCH"] {
            let reply = c.send(method, &status, &[], None).await.unwrap();
            expect_status(&reply, 405);
            assert_eq!(reply.header("allow"), Some("GET, DELETE"));
        }
    }
);

/// Polls a strict search until it finds something, for at most half a minute: what the
/// server writes behind a request (AuditEvents, the scorer's RiskAssessments) lands later.
async fn eventually_found(client: &Client, query: &str) -> Vec<String> {
    for _ in 0..300 {
        let found = strict_ids(client, query).await;
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{query} found nothing in half a minute");
}

both_stores!(
    a_posted_search_parameter_indexes_the_provenance_the_server_writes,
    |server| {
        let c = &server.client;
        let parameter = json!({
            "resourceType": "SearchParameter",
            "url": "http://example.org/fhir/SearchParameter/provenance-activity",
            "name": "activity", "status": "active",
            "description": "What the recorded activity was",
            "code": "activity", "base": ["Provenance"], "type": "token",
            "expression": "Provenance.activity"
        });
        expect_status(&c.post("SearchParameter", &parameter).await.unwrap(), 201);
        // The Provenance the server records of this write is indexed with the new parameter.
        let reply = c
            .put(
                "Patient/indexed-provenance",
                &json!({"resourceType": "Patient", "id": "indexed-provenance"}),
            )
            .await
            .unwrap();
        expect_status(&reply, 201);
        let found = eventually_found(
            c,
            "Provenance?activity=http://terminology.hl7.org/CodeSystem/v3-DataOperation|CREATE\
             &target=Patient/indexed-provenance",
        )
        .await;
        assert_eq!(found.len(), 1, "{found:?}");
    }
);

both_stores!(
    the_audit_log_is_searched_by_its_own_parameters_only,
    |server| {
        let c = &server.client;
        let parameter = json!({
            "resourceType": "SearchParameter",
            "url": "http://example.org/fhir/SearchParameter/auditevent-outcome-description",
            "name": "outcome-description", "status": "active",
            "description": "The outcome of an audited event, as text",
            "code": "outcome-description", "base": ["AuditEvent"], "type": "string",
            "expression": "AuditEvent.outcomeDesc"
        });
        expect_status(&c.post("SearchParameter", &parameter).await.unwrap(), 201);
        // AuditEvents are rows of the audit log, not indexed resources: a parameter of its
        // own is refused, not ignored (which would answer every event).
        let reply = c
            .get("AuditEvent?outcome-description=HTTP%20404")
            .await
            .unwrap();
        let outcome = expect_status(&reply, 400);
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("outcome-description"),
            "{outcome}"
        );
    }
);

both_stores!(
    a_posted_search_parameter_indexes_the_risk_assessments_the_scorer_writes,
    |server| {
        let c = &server.client;
        let parameter = json!({
            "resourceType": "SearchParameter",
            "url": "http://example.org/fhir/SearchParameter/riskassessment-model",
            "name": "model", "status": "active",
            "description": "The model a RiskAssessment comes from",
            "code": "model", "base": ["RiskAssessment"], "type": "token",
            "expression": "RiskAssessment.method"
        });
        expect_status(&c.post("SearchParameter", &parameter).await.unwrap(), 201);
        let reply = c
            .post("Patient", &json!({"resourceType": "Patient"}))
            .await
            .unwrap();
        let patient = expect_status(&reply, 201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // A scoring input: the scorer writes the patient's Charlson RiskAssessment.
        let condition = json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "88805009"}]},
            "subject": {"reference": format!("Patient/{patient}")}});
        expect_status(&c.post("Condition", &condition).await.unwrap(), 201);
        let found = eventually_found(
            c,
            &format!("RiskAssessment?patient=Patient/{patient}&model=charlson"),
        )
        .await;
        assert_eq!(found.len(), 1, "{found:?}");
    }
);
