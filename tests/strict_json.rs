//! FHIR's JSON format (R4 json.html) is stricter than JSON: what a JSON parser accepts but a FHIR
//! server must refuse, each a 400 OperationOutcome naming the element, with nothing written.
//! And the bounds on what one hostile body costs: the issues stop at a limit, and say so.

mod common;

use common::{create, expect_status, patient, without_audit_events, TestServer};
use serde_json::{json, Value};

async fn post_text(server: &TestServer, path: &str, body: &str) -> signaal::client::Reply {
    server
        .client
        .send("POST", path, &[], Some(body.as_bytes().to_vec()))
        .await
        .unwrap()
}

/// The issue expressions of an OperationOutcome.
fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

async fn assert_nothing_written(server: &TestServer) {
    let history = expect_status(
        &server.client.get("_history?_count=1000").await.unwrap(),
        200,
    );
    assert!(
        without_audit_events(&history).is_empty(),
        "a refused write left something behind: {history}"
    );
}

/// POSTs `body` (JSON text, possibly not what serde_json would write) to `path`: 400, an issue
/// naming `element`, nothing stored. Returns the OperationOutcome.
async fn refused_at(server: &TestServer, path: &str, body: &str, element: &str) -> Value {
    let outcome = expect_status(&post_text(server, path, body).await, 400);
    let found = expressions(&outcome);
    assert!(
        found.iter().any(|e| e == element),
        "an issue names {element}: {outcome}"
    );
    assert_nothing_written(server).await;
    outcome
}

// --- control characters -------------------------------------------------------------------

both_stores!(a_control_character_in_a_string_is_400, |server| {
    refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","name":[{"family":"Visser\u0001"}]}"#,
        "Patient.name[0].family",
    )
    .await;
});

both_stores!(a_nul_character_in_markdown_is_400, |server| {
    // markdown is a specialisation of string: the same rule.
    refused_at(
        &server,
        "Observation",
        r#"{"resourceType":"Observation","status":"final","code":{"text":"bp"},
            "note":[{"text":"line one\u0000line two"}]}"#,
        "Observation.note[0].text",
    )
    .await;
});

both_stores!(tab_carriage_return_and_line_feed_are_kept, |server| {
    let text = "first line\r\n\tindented";
    let id = create(
        &server,
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "note": [{"text": text}]}),
    )
    .await;
    let read = expect_status(
        &server
            .client
            .get(&format!("Observation/{id}"))
            .await
            .unwrap(),
        200,
    );
    assert_eq!(read["note"][0]["text"], text);
});

// --- nulls --------------------------------------------------------------------------------

both_stores!(
    a_null_in_a_primitive_array_without_a_partner_is_400,
    |server| {
        refused_at(
            &server,
            "Patient",
            r#"{"resourceType":"Patient","name":[{"family":"Bakker","given":["Sanne",null]}]}"#,
            "Patient.name[0].given[1]",
        )
        .await;
    }
);

both_stores!(
    a_null_whose_partner_carries_an_extension_is_kept,
    |server| {
        // json.html: the value at index 1 is absent, its extension is at _given[1].
        let extension = json!({"extension": [{"url": "http://example.org/fhir/reason-absent",
                                          "valueString": "not given"}]});
        let resource = json!({"resourceType": "Patient", "name": [{"family": "Bakker",
        "given": ["Sanne", null], "_given": [null, extension]}]});
        let id = create(&server, &resource).await;
        let read = expect_status(
            &server.client.get(&format!("Patient/{id}")).await.unwrap(),
            200,
        );
        assert_eq!(read["name"][0]["given"], json!(["Sanne", null]));
        assert_eq!(read["name"][0]["_given"][1], extension);
    }
);

both_stores!(a_null_property_value_is_400, |server| {
    refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","birthDate":null}"#,
        "Patient.birthDate",
    )
    .await;
});

both_stores!(partner_arrays_of_different_lengths_are_400, |server| {
    refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[{"id":"g1"}]}]}"#,
        "Patient.name[0].given",
    )
    .await;
});

both_stores!(a_million_nulls_are_400_with_a_bounded_outcome, |server| {
    let body = format!(
        r#"{{"resourceType":"Patient","name":[{{"given":[{}]}}]}}"#,
        vec!["null"; 1_000_000].join(",")
    );
    let outcome = refused_at(&server, "Patient", &body, "Patient.name[0].given[0]").await;
    let issues = outcome["issue"].as_array().unwrap();
    assert_eq!(issues.len(), 51, "50 issues and the note that it stopped");
    assert_eq!(issues[50]["code"], "too-costly");
    assert!(issues[50]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("stopped"));
});

// --- empty objects and arrays -------------------------------------------------------------

both_stores!(an_empty_object_is_400_ele_1, |server| {
    let outcome = refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","name":[{}]}"#,
        "Patient.name[0]",
    )
    .await;
    assert!(outcome.to_string().contains("ele-1"), "{outcome}");
});

both_stores!(an_empty_array_is_400, |server| {
    refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","identifier":[]}"#,
        "Patient.identifier",
    )
    .await;
});

both_stores!(an_element_with_only_an_id_is_400_ele_1, |server| {
    refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","maritalStatus":{"id":"ms"}}"#,
        "Patient.maritalStatus",
    )
    .await;
});

// --- dates --------------------------------------------------------------------------------

both_stores!(a_day_the_month_does_not_have_is_400, |server| {
    for (date, element) in [
        ("2020-02-30", "birthDate"),
        ("2021-02-29", "birthDate"),
        ("1900-02-29", "birthDate"),
        ("2019-06-31T08:30:00+02:00", "deceasedDateTime"),
    ] {
        let body = json!({"resourceType": "Patient", element: date}).to_string();
        let outcome = refused_at(&server, "Patient", &body, &format!("Patient.{element}")).await;
        assert!(outcome.to_string().contains(date), "{outcome}");
    }
});

both_stores!(an_impossible_instant_or_hour_is_400, |server| {
    for (issued, why) in [
        ("2023-04-31T10:00:00Z", "April has 30 days"),
        ("2023-04-01T25:00:00Z", "there is no hour 25"),
    ] {
        let body = json!({"resourceType": "Observation", "status": "final",
                          "code": {"text": "x"}, "issued": issued})
        .to_string();
        let outcome = expect_status(&post_text(&server, "Observation", &body).await, 400);
        assert!(
            expressions(&outcome).contains(&"Observation.issued".to_owned()),
            "{why}: {outcome}"
        );
    }
    assert_nothing_written(&server).await;
});

both_stores!(a_leap_day_in_a_leap_year_is_a_date, |server| {
    create(&server, &patient().set("birthDate", "2024-02-29").json()).await;
    create(&server, &patient().set("birthDate", "2000-02-29").json()).await;
});

// --- duplicate names ----------------------------------------------------------------------

both_stores!(a_duplicate_property_name_is_400, |server| {
    let outcome = refused_at(
        &server,
        "Patient",
        r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#,
        "Patient.gender",
    )
    .await;
    assert!(outcome.to_string().contains("twice"), "{outcome}");
});

both_stores!(a_duplicate_name_deep_in_a_resource_is_located, |server| {
    refused_at(
        &server,
        "Observation",
        r#"{"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"8480-6"},
                              {"system":"http://loinc.org","code":"8462-4","code":"8462-4"}]}}"#,
        "Observation.code.coding[1].code",
    )
    .await;
});

// --- every way in -------------------------------------------------------------------------

both_stores!(an_update_with_a_duplicate_name_is_400, |server| {
    let id = create(&server, &patient().family("Smit").json()).await;
    let body = format!(r#"{{"resourceType":"Patient","id":"{id}","active":true,"active":false}}"#);
    let reply = server
        .client
        .send(
            "PUT",
            &format!("Patient/{id}"),
            &[],
            Some(body.into_bytes()),
        )
        .await
        .unwrap();
    let outcome = expect_status(&reply, 400);
    assert_eq!(expressions(&outcome), ["Patient.active"]);
    let read = expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    assert_eq!(read["meta"]["versionId"], "1", "the update wrote nothing");
});

both_stores!(
    a_transaction_entry_with_a_control_character_is_400,
    |server| {
        let body = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","name":[{"family":"de Vries"}]},
         "request":{"method":"POST","url":"Patient"}},
        {"resource":{"resourceType":"Patient","name":[{"family":"Jansen\u001b"}]},
         "request":{"method":"POST","url":"Patient"}}]}"#;
        refused_at(&server, "", body, "Bundle.entry[1].resource.name[0].family").await;
    }
);

both_stores!(a_json_patch_that_adds_a_null_is_400, |server| {
    let id = create(&server, &patient().family("Mulder").json()).await;
    let patch = json!([{"op": "add", "path": "/birthDate", "value": null}]);
    let reply = server
        .client
        .send(
            "PATCH",
            &format!("Patient/{id}"),
            &[("content-type", "application/json-patch+json")],
            Some(patch.to_string().into_bytes()),
        )
        .await
        .unwrap();
    let outcome = expect_status(&reply, 400);
    assert_eq!(expressions(&outcome), ["Patient.birthDate"]);
    let read = expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    assert_eq!(read["meta"]["versionId"], "1", "the patch wrote nothing");
});

// --- bounded validation -------------------------------------------------------------------

both_stores!(a_million_bad_codings_get_a_bounded_outcome, |server| {
    // Each coding's code has a leading space, which the code regex refuses.
    let body = format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{}]}}}}"#,
        vec![r#"{"code":" x"}"#; 1_000_000].join(",")
    );
    let outcome = expect_status(&post_text(&server, "Observation", &body).await, 400);
    let issues = outcome["issue"].as_array().unwrap();
    assert!(
        issues.len() <= 51,
        "at most 50 issues and a note: {}",
        issues.len()
    );
    assert!(
        issues
            .iter()
            .any(|i| i["code"] == "too-costly" && i["severity"] == "information"),
        "the outcome says validation did not list everything: {outcome}"
    );
    assert!(
        expressions(&outcome)
            .iter()
            .any(|e| e.starts_with("Observation.code.coding[")),
        "{outcome}"
    );
    assert!(
        outcome.to_string().len() < 64 * 1024,
        "the outcome stays small"
    );
    assert_nothing_written(&server).await;
});

both_stores!(
    many_bad_codings_in_a_small_resource_stop_at_fifty_issues,
    |server| {
        let body = format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{}]}}}}"#,
            vec![r#"{"code":" x"}"#; 200].join(",")
        );
        let outcome = expect_status(&post_text(&server, "Observation", &body).await, 400);
        let issues = outcome["issue"].as_array().unwrap();
        assert_eq!(issues.len(), 51, "{outcome}");
        assert_eq!(issues[50]["code"], "too-costly");
        assert_eq!(
            expressions(&outcome)[0],
            "Observation.code.coding[0].code",
            "{outcome}"
        );
    }
);
