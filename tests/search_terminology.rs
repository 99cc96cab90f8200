//! Token modifiers against the server's terminology (search page, token): `:in`, `:not-in`,
//! `:below`, `:above`, over the official CodeSystems and ValueSets and ones clients stored,
//! on both stores.

mod common;

use common::{expect_status, ids, put, refused, TestServer};
use serde_json::json;

const INTENT: &str = "http://hl7.org/fhir/request-intent";
const VITALS: &str = "http://example.org/fhir/CodeSystem/vitals";
const VITALS_VS: &str = "http://example.org/fhir/ValueSet/blood-pressure-and-weight";
const IMPORTING_VS: &str = "http://example.org/fhir/ValueSet/imports";

async fn service_requests(server: &TestServer) {
    // request-intent: order > original-order, reflex-order, filler-order > instance-order.
    for intent in [
        "proposal",
        "plan",
        "order",
        "original-order",
        "filler-order",
        "instance-order",
    ] {
        put(server, json!({"resourceType": "ServiceRequest", "id": intent, "status": "active", "intent": intent, "subject": {"reference": "Patient/p"}})).await;
    }
}

async fn stored_terminology(server: &TestServer) {
    put(
        server,
        json!({
            "resourceType": "CodeSystem", "id": "vitals", "url": VITALS, "status": "active",
            "content": "complete",
            "concept": [{"code": "vital", "concept": [
                {"code": "bp", "concept": [{"code": "sys"}, {"code": "dia"}]},
                {"code": "temp"}
            ]}]
        }),
    )
    .await;
    put(
        server,
        json!({
            "resourceType": "ValueSet", "id": "bpw", "url": VITALS_VS, "status": "active",
            "compose": {
                "include": [
                    {"system": VITALS, "filter": [{"property": "concept", "op": "is-a", "value": "bp"}]},
                    {"system": "http://loinc.org", "concept": [{"code": "29463-7"}]}
                ],
                "exclude": [{"system": VITALS, "concept": [{"code": "dia"}]}]
            }
        }),
    )
    .await;
    put(
        server,
        json!({
            "resourceType": "ValueSet", "id": "imports", "url": IMPORTING_VS, "status": "active",
            "compose": {"include": [{"valueSet": [VITALS_VS]}]}
        }),
    )
    .await;
    for (id, system, code) in [
        ("o-bp", VITALS, "bp"),
        ("o-sys", VITALS, "sys"),
        ("o-dia", VITALS, "dia"),
        ("o-temp", VITALS, "temp"),
        ("o-weight", "http://loinc.org", "29463-7"),
        ("o-other", "http://loinc.org", "1234-5"),
    ] {
        put(server, json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"coding": [{"system": system, "code": code}]}})).await;
    }
}

both_stores!(in_matches_codes_of_an_official_value_set, |server| {
    service_requests(&server).await;
    put(
        &server,
        json!({"resourceType": "Patient", "id": "f", "gender": "female"}),
    )
    .await;
    put(&server, json!({"resourceType": "Patient", "id": "none"})).await;
    assert_eq!(
        ids(
            &server,
            "Patient?gender:in=http://hl7.org/fhir/ValueSet/administrative-gender"
        )
        .await,
        vec!["f"]
    );
    assert_eq!(
        ids(
            &server,
            "ServiceRequest?intent:in=http://hl7.org/fhir/ValueSet/request-intent"
        )
        .await
        .len(),
        6
    );
});

both_stores!(below_and_above_follow_the_official_hierarchy, |server| {
    service_requests(&server).await;
    assert_eq!(
        ids(
            &server,
            &format!("ServiceRequest?intent:below={INTENT}|order")
        )
        .await,
        vec!["filler-order", "instance-order", "order", "original-order"]
    );
    assert_eq!(
        ids(
            &server,
            &format!("ServiceRequest?intent:below={INTENT}|filler-order")
        )
        .await,
        vec!["filler-order", "instance-order"]
    );
    assert_eq!(
        ids(
            &server,
            &format!("ServiceRequest?intent:above={INTENT}|instance-order")
        )
        .await,
        vec!["filler-order", "instance-order", "order"]
    );
});

both_stores!(
    in_expands_a_stored_value_set_with_filters_imports_and_excludes,
    |server| {
        stored_terminology(&server).await;
        // is-a bp (bp, sys, dia) minus dia, plus LOINC 29463-7.
        assert_eq!(
            ids(&server, &format!("Observation?code:in={VITALS_VS}")).await,
            vec!["o-bp", "o-sys", "o-weight"]
        );
        assert_eq!(
            ids(&server, &format!("Observation?code:in={IMPORTING_VS}")).await,
            vec!["o-bp", "o-sys", "o-weight"]
        );
        // A relative reference to the stored ValueSet.
        assert_eq!(
            ids(&server, "Observation?code:in=ValueSet/bpw").await,
            vec!["o-bp", "o-sys", "o-weight"]
        );
    }
);

both_stores!(not_in_excludes_the_codes_of_the_value_set, |server| {
    stored_terminology(&server).await;
    assert_eq!(
        ids(&server, &format!("Observation?code:not-in={VITALS_VS}")).await,
        vec!["o-dia", "o-other", "o-temp"]
    );
});

both_stores!(below_and_above_use_a_stored_code_system, |server| {
    stored_terminology(&server).await;
    assert_eq!(
        ids(&server, &format!("Observation?code:below={VITALS}|bp")).await,
        vec!["o-bp", "o-dia", "o-sys"]
    );
    assert_eq!(
        ids(&server, &format!("Observation?code:above={VITALS}|sys")).await,
        vec!["o-bp", "o-sys"]
    );
    // LOINC is not held: its hierarchy is unknown, which is said rather than guessed.
    let message = refused(&server, "Observation?code:below=http://loinc.org|29463-7").await;
    assert!(message.contains("not held"), "{message}");
});

both_stores!(in_with_an_unknown_value_set_is_refused, |server| {
    let message = refused(
        &server,
        "Observation?code:in=http://example.org/fhir/ValueSet/nowhere",
    )
    .await;
    assert!(message.contains("not known"), "{message}");
});

both_stores!(
    value_sets_of_code_systems_the_server_does_not_hold_are_refused,
    |server| {
        // SNOMED CT is not held: the official clinical-findings value set cannot be expanded.
        let message = refused(
            &server,
            "Condition?code:in=http://hl7.org/fhir/ValueSet/clinical-findings",
        )
        .await;
        assert!(message.contains("http://snomed.info/sct"), "{message}");
        let message = refused(
            &server,
            "Condition?code:below=http://snomed.info/sct|404684003",
        )
        .await;
        assert!(message.contains("http://snomed.info/sct"), "{message}");
    }
);

both_stores!(value_sets_with_unsupported_filters_are_refused, |server| {
    stored_terminology(&server).await;
    put(
        &server,
        json!({
            "resourceType": "ValueSet", "id": "regex", "url": "http://example.org/fhir/ValueSet/regex", "status": "active",
            "compose": {"include": [{"system": VITALS, "filter": [{"property": "code", "op": "regex", "value": "b.*"}]}]}
        }),
    )
    .await;
    let message = refused(
        &server,
        "Observation?code:in=http://example.org/fhir/ValueSet/regex",
    )
    .await;
    assert!(message.contains("regex"), "{message}");
});

both_stores!(below_and_above_need_a_system_and_a_known_code, |server| {
    stored_terminology(&server).await;
    refused(&server, "Observation?code:below=bp").await;
    refused(&server, &format!("Observation?code:above={VITALS}|")).await;
    let message = refused(&server, &format!("Observation?code:below={VITALS}|nope")).await;
    assert!(message.contains("nope"), "{message}");
});

both_stores!(terminology_modifiers_work_inside_chains, |server| {
    stored_terminology(&server).await;
    put(&server, json!({"resourceType": "DiagnosticReport", "id": "r", "status": "final", "code": {"text": "x"}, "result": [{"reference": "Observation/o-sys"}]})).await;
    assert_eq!(
        ids(
            &server,
            &format!("DiagnosticReport?result.code:below={VITALS}|bp")
        )
        .await,
        vec!["r"]
    );
});

both_stores!(
    conditional_criteria_refuse_terminology_modifiers,
    |server| {
        let body = json!({"resourceType": "Patient", "gender": "female"}).to_string();
        let reply = server
            .client
            .send(
                "POST",
                "Patient",
                &[(
                    "if-none-exist",
                    "gender:in=http://hl7.org/fhir/ValueSet/administrative-gender",
                )],
                Some(body.into_bytes()),
            )
            .await
            .unwrap();
        let outcome = expect_status(&reply, 400);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
);
