//! Validation rules that come from no StructureDefinition (issue 18), through the HTTP API on
//! both stores: a QuestionnaireResponse against its Questionnaire (questionnaire.html,
//! questionnaireresponse.html), Bundle fullUrls (bundle.html), reference target types
//! (references.html), Attachment sizes (datatypes.html#Attachment), the R4 invariants whose
//! expression HL7 corrected in R4B (que-7, que-12; decision 0043); references resolved in a
//! Bundle and the document rule (bundle.html, Composition), elements defined as absolute URIs,
//! CapabilityStatement search parameter types, URNs, the 1MB string limit, and the profile
//! rules value limits (`minValue`/`maxValue`/`maxLength`), nested resources' type profiles and
//! differentials without element ids; and decision 0048's: where an extension may be used
//! (element and FHIRPath contexts, context invariants, primitives), modifier extensions,
//! canonical targets, Coding.system, CodeSystem content and properties,
//! SearchParameter.derivedFrom, `urn:` references resolved in a Bundle, reference schemes and
//! choice elements named by their type in a profile.

mod common;

use common::outcome::{errors, validate};
use common::package::server_with_package;
use common::{create, expect_status, Api, StoreKind, TempDir, TestServer};
use serde_json::{json, Value};

const INTAKE: &str = "http://rules.example/fhir/Questionnaire/sleep-intake";

/// A Questionnaire only this file uses: a required boolean, a question enabled by it, a
/// choice with options, a bounded integer and a short string in a group.
fn sleep_intake() -> Value {
    json!({"resourceType": "Questionnaire", "url": INTAKE, "status": "active",
    "item": [
        {"linkId": "snores", "type": "boolean", "required": true},
        {"linkId": "snore-nights", "type": "integer",
         "enableWhen": [{"question": "snores", "operator": "=", "answerBoolean": true}],
         "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": 1},
            {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": 7}]},
        {"linkId": "pillow", "type": "choice", "answerOption": [
            {"valueCoding": {"system": "http://rules.example/pillow", "code": "soft"}},
            {"valueCoding": {"system": "http://rules.example/pillow", "code": "firm"}}]},
        {"linkId": "notes", "type": "group", "item": [
            {"linkId": "notes.remark", "type": "string", "maxLength": 12}]}
    ]})
}

fn response(status: &str, items: Value) -> Value {
    json!({"resourceType": "QuestionnaireResponse", "questionnaire": INTAKE,
        "status": status, "item": items})
}

/// A server with the package holding [`sleep_intake`].
async fn intake_server(kind: StoreKind) -> Option<(TestServer, TempDir)> {
    server_with_package(kind, "rules.example", &[sleep_intake()]).await
}

with_package!(
    intake_server,
    a_response_that_fits_its_questionnaire_is_stored,
    |server| {
        let ok = response(
            "completed",
            json!([
                {"linkId": "snores", "answer": [{"valueBoolean": true}]},
                {"linkId": "snore-nights", "answer": [{"valueInteger": 4}]},
                {"linkId": "pillow", "answer": [{"valueCoding": {"system": "http://rules.example/pillow", "code": "firm"}}]},
                {"linkId": "notes", "item": [{"linkId": "notes.remark", "answer": [{"valueString": "light sleep"}]}]}
            ]),
        );
        create(&server, &ok).await;
    }
);

with_package!(
    intake_server,
    a_link_id_the_questionnaire_lacks_is_refused_on_write,
    |server| {
        let bad = response(
            "completed",
            json!([
                {"linkId": "snores", "answer": [{"valueBoolean": false}]},
                {"linkId": "dreams", "answer": [{"valueString": "vivid"}]}
            ]),
        );
        let reply = server
            .client()
            .post("QuestionnaireResponse", &bad)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 400);
        let found = errors(&outcome);
        assert!(
            found
                .iter()
                .any(|e| e.contains("'dreams'") && e.ends_with("QuestionnaireResponse.item[1]")),
            "{found:?}"
        );
    }
);

with_package!(
    intake_server,
    an_answer_of_another_type_than_the_item_is_an_error,
    |server| {
        let bad = response(
            "completed",
            json!([{"linkId": "snores", "answer": [{"valueString": "yes"}]}]),
        );
        let found = errors(&validate(&server, &bad).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("must be of type Boolean"), "{found:?}");
    }
);

with_package!(
    intake_server,
    a_required_item_is_answered_in_a_completed_response,
    |server| {
        let completed = response(
            "completed",
            json!([{"linkId": "pillow",
        "answer": [{"valueCoding": {"system": "http://rules.example/pillow", "code": "soft"}}]}]),
        );
        let found = errors(&validate(&server, &completed).await);
        assert!(found.iter().any(|e| e.contains("'snores'")), "{found:?}");
        // Not yet completed: required items may still be missing.
        let mut in_progress = completed.clone();
        in_progress["status"] = json!("in-progress");
        assert_eq!(
            errors(&validate(&server, &in_progress).await),
            Vec::<String>::new()
        );
    }
);

with_package!(
    intake_server,
    an_item_that_does_not_repeat_has_one_answer,
    |server| {
        let bad = response(
            "completed",
            json!([{"linkId": "snores", "answer": [{"valueBoolean": true}, {"valueBoolean": false}]}]),
        );
        let found = errors(&validate(&server, &bad).await);
        assert!(
            found.iter().any(|e| e.contains("does not repeat")),
            "{found:?}"
        );
    }
);

with_package!(
    intake_server,
    a_choice_answer_comes_from_the_answer_options,
    |server| {
        let bad = response(
            "completed",
            json!([
                {"linkId": "snores", "answer": [{"valueBoolean": false}]},
                {"linkId": "pillow", "answer": [{"valueCoding": {"system": "http://rules.example/pillow", "code": "feather"}}]}
            ]),
        );
        let found = errors(&validate(&server, &bad).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("answerOption"), "{found:?}");
    }
);

with_package!(
    intake_server,
    an_item_disabled_by_enable_when_has_no_answer,
    |server| {
        let bad = response(
            "completed",
            json!([
                {"linkId": "snores", "answer": [{"valueBoolean": false}]},
                {"linkId": "snore-nights", "answer": [{"valueInteger": 3}]}
            ]),
        );
        let found = errors(&validate(&server, &bad).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("enableWhen"), "{found:?}");
    }
);

with_package!(
    intake_server,
    answers_keep_to_min_value_max_value_and_max_length,
    |server| {
        let bad = response(
            "completed",
            json!([
                {"linkId": "snores", "answer": [{"valueBoolean": true}]},
                {"linkId": "snore-nights", "answer": [{"valueInteger": 9}]},
                {"linkId": "notes", "item": [{"linkId": "notes.remark",
                    "answer": [{"valueString": "wakes up twice a night"}]}]}
            ]),
        );
        let found = errors(&validate(&server, &bad).await);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|e| e.contains("maxValue 7")), "{found:?}");
        assert!(
            found.iter().any(|e| e.contains("maxLength 12")),
            "{found:?}"
        );
    }
);

both_stores!(
    a_response_to_an_unknown_questionnaire_is_not_checked,
    |server| {
        let r = json!({"resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": "http://rules.example/fhir/Questionnaire/nowhere",
        "item": [{"linkId": "anything", "answer": [{"valueString": "x"}]}]});
        let outcome = validate(&server, &r).await;
        assert!(errors(&outcome).is_empty(), "{outcome}");
        assert!(
            outcome["issue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["severity"] == "information"
                    && i["diagnostics"].as_str().unwrap().contains("not known")),
            "{outcome}"
        );
        create(&server, &r).await;
    }
);

both_stores!(a_bundle_full_url_is_absolute, |server| {
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "Patient/kestrel", "resource": {"resourceType": "Patient", "id": "kestrel"}}]});
    let found = errors(&validate(&server, &bundle).await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("Bundle.entry[0].fullUrl"), "{found:?}");
});

both_stores!(a_restful_full_url_agrees_with_the_resource_id, |server| {
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://rules.example/fhir/Patient/osprey",
         "resource": {"resourceType": "Patient", "id": "heron"}},
        // Not in the RESTful form: nothing to compare.
        {"fullUrl": "http://rules.example/archive/item-9",
         "resource": {"resourceType": "Patient", "id": "heron2"}},
        {"fullUrl": "http://rules.example/fhir/Patient/heron3",
         "resource": {"resourceType": "Patient", "id": "heron3"}}]});
    let found = errors(&validate(&server, &bundle).await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("/Patient/heron"), "{found:?}");
});

both_stores!(a_reference_names_a_type_its_element_may_target, |server| {
    // Observation.subject: Reference(Patient | Group | Device | Location).
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "nap length"},
        "subject": {"reference": "Medication/m-44"}});
    let reply = server.client().post("Observation", &obs).await.unwrap();
    let outcome = expect_status(&reply, 400);
    let found = errors(&outcome);
    assert!(
        found
            .iter()
            .any(|e| e.ends_with("Observation.subject.reference")),
        "{found:?}"
    );
    let mut ok = obs.clone();
    ok["subject"] = json!({"reference": "Group/g-44"});
    create(&server, &ok).await;
});

both_stores!(an_attachment_size_is_the_size_of_its_data, |server| {
    // "c2xlZXA=" is the 5 bytes "sleep".
    let doc = |size: u64| {
        json!({"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "data": "c2xlZXA=", "size": size}}]})
    };
    let found = errors(&validate(&server, &doc(6)).await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("attachment.size"), "{found:?}");
    assert_eq!(
        errors(&validate(&server, &doc(5)).await),
        Vec::<String>::new()
    );
});

both_stores!(
    two_enable_when_conditions_need_an_enable_behavior,
    |server| {
        // que-12 as R4B corrected it: "more than one" enableWhen.
        let mut q = json!({"resourceType": "Questionnaire", "status": "draft", "item": [
        {"linkId": "a", "type": "boolean"}, {"linkId": "b", "type": "boolean"},
        {"linkId": "c", "type": "string", "enableWhen": [
            {"question": "a", "operator": "=", "answerBoolean": true},
            {"question": "b", "operator": "=", "answerBoolean": true}]}]});
        let reply = server.client().post("Questionnaire", &q).await.unwrap();
        let outcome = expect_status(&reply, 400);
        assert!(
            errors(&outcome).iter().any(|e| e.contains("que-12")),
            "{outcome}"
        );
        q["item"][2]["enableBehavior"] = json!("any");
        create(&server, &q).await;
    }
);

both_stores!(an_exists_condition_takes_a_boolean_answer, |server| {
    // que-7 as R4B corrected it: `answer is boolean`.
    let mut q = json!({"resourceType": "Questionnaire", "status": "draft", "item": [
        {"linkId": "a", "type": "string"},
        {"linkId": "b", "type": "string", "enableWhen": [
            {"question": "a", "operator": "exists", "answerBoolean": true}]}]});
    create(&server, &q).await;
    q["item"][1]["enableWhen"][0] =
        json!({"question": "a", "operator": "exists", "answerString": "yes"});
    let reply = server.client().post("Questionnaire", &q).await.unwrap();
    let outcome = expect_status(&reply, 400);
    assert!(
        errors(&outcome).iter().any(|e| e.contains("que-7")),
        "{outcome}"
    );
});

both_stores!(an_extension_url_is_absolute, |server| {
    let p = json!({"resourceType": "Patient", "extension": [
        {"url": "favourite-pillow", "valueString": "firm"}]});
    let reply = server.client().post("Patient", &p).await.unwrap();
    let outcome = expect_status(&reply, 400);
    let found = errors(&outcome);
    assert!(
        found
            .iter()
            .any(|e| e.ends_with("Patient.extension[0].url")),
        "{found:?}"
    );
    // A complex extension names its parts by relative names.
    let ok = json!({"resourceType": "Patient", "extension": [
        {"url": "http://rules.example/fhir/StructureDefinition/sleep", "extension": [
            {"url": "pillow", "valueString": "firm"}]}]});
    create(&server, &ok).await;
});

/// A document whose Composition (at a RESTful fullUrl) refers to `subject`, with a Patient
/// entry at `patient_url` (versions `versions`).
fn sleep_document(subject: &str, patient_entries: Value) -> Value {
    let mut entries = vec![
        json!({"fullUrl": "http://rules.example/fhir/Composition/night-7",
        "resource": {"resourceType": "Composition", "id": "night-7", "status": "final",
            "type": {"text": "sleep diary"}, "date": "2026-03-04", "title": "Night 7",
            "author": [{"display": "the sleeper"}], "subject": {"reference": subject}}}),
    ];
    entries.extend(patient_entries.as_array().unwrap().iter().cloned());
    json!({"resourceType": "Bundle", "type": "document", "timestamp": "2026-03-04T08:00:00Z",
        "identifier": {"system": "http://rules.example/documents", "value": "night-7"},
        "entry": entries})
}

fn dormouse(version: &str) -> Value {
    json!({"fullUrl": "http://rules.example/fhir/Patient/dormouse",
        "resource": {"resourceType": "Patient", "id": "dormouse", "meta": {"versionId": version}}})
}

both_stores!(
    a_document_includes_what_its_composition_refers_to,
    |server| {
        // Relative, resolved against the Composition's RESTful fullUrl (bundle.html).
        let ok = sleep_document("Patient/dormouse", json!([dormouse("2")]));
        assert_eq!(errors(&validate(&server, &ok).await), Vec::<String>::new());
        create(&server, &ok).await;
        let versioned = sleep_document("Patient/dormouse/_history/2", json!([dormouse("2")]));
        assert_eq!(
            errors(&validate(&server, &versioned).await),
            Vec::<String>::new()
        );
        // A version the document does not hold; a resource the document leaves out.
        for subject in ["Patient/dormouse/_history/3", "Patient/hedgehog"] {
            let bad = sleep_document(subject, json!([dormouse("2")]));
            let reply = server.client().post("Bundle", &bad).await.unwrap();
            let found = errors(&expect_status(&reply, 400));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].ends_with("Bundle.entry[0].resource.subject.reference"),
                "{found:?}"
            );
        }
        // Two versions of the Patient: `Patient/dormouse` names either, so it is ambiguous.
        let two = sleep_document("Patient/dormouse", json!([dormouse("1"), dormouse("2")]));
        let found = errors(&validate(&server, &two).await);
        assert!(found.iter().any(|e| e.contains("ambiguous")), "{found:?}");
    }
);

both_stores!(
    a_relative_reference_from_a_urn_full_url_has_no_meaning_in_a_document,
    |server| {
        let mut doc = sleep_document("Patient/dormouse", json!([dormouse("2")]));
        doc["entry"][0]["fullUrl"] = json!("urn:uuid:3f0c8a52-9d3e-4c4e-8a1b-7d2e5f6a9b10");
        let found = errors(&validate(&server, &doc).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("not a RESTful URL"), "{found:?}");
        // An absolute reference to the entry's fullUrl resolves.
        doc["entry"][0]["resource"]["subject"]["reference"] =
            json!("http://rules.example/fhir/Patient/dormouse");
        create(&server, &doc).await;
    }
);

both_stores!(a_collection_entry_has_a_full_url, |server| {
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "wren"}}]});
    let reply = server.client().post("Bundle", &bundle).await.unwrap();
    let found = errors(&expect_status(&reply, 400));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("Bundle.entry[0]"), "{found:?}");
    // A search result need not have one (results of operations may be unidentified).
    let mut searchset = bundle.clone();
    searchset["type"] = json!("searchset");
    assert_eq!(
        errors(&validate(&server, &searchset).await),
        Vec::<String>::new()
    );
});

both_stores!(a_restful_full_url_needs_the_resource_id, |server| {
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://rules.example/fhir/Patient/wren", "resource": {"resourceType": "Patient"}}]});
    let found = errors(&validate(&server, &bundle).await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("has none"), "{found:?}");
    // A POST in a transaction creates the resource: it has no id yet.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "http://rules.example/fhir/Patient/wren", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}}]});
    assert_eq!(errors(&validate(&server, &tx).await), Vec::<String>::new());
});

both_stores!(
    a_value_set_names_its_code_system_by_an_absolute_uri,
    |server| {
        let vs = |system: &str| {
            json!({"resourceType": "ValueSet", "url": "http://rules.example/fhir/ValueSet/pillows",
            "status": "draft", "compose": {"include": [{"system": system}]}})
        };
        let reply = server
            .client()
            .post("ValueSet", &vs("pillow-kinds"))
            .await
            .unwrap();
        let found = errors(&expect_status(&reply, 400));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].ends_with("ValueSet.compose.include[0].system"),
            "{found:?}"
        );
        create(&server, &vs("http://rules.example/pillow-kinds")).await;
        // The canonical url too.
        let mut relative = vs("http://rules.example/pillow-kinds");
        relative["url"] = json!("ValueSet/pillows");
        let found = errors(&validate(&server, &relative).await);
        assert!(
            found.iter().any(|e| e.ends_with("ValueSet.url")),
            "{found:?}"
        );
    }
);

both_stores!(
    a_capability_statement_search_param_has_its_definitions_type,
    |server| {
        let cs = |kind: &str| {
            json!({"resourceType": "CapabilityStatement", "status": "draft", "date": "2026-03-04",
            "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
            "implementation": {"description": "sleep lab"},
            "rest": [{"mode": "server", "resource": [{"type": "Observation", "searchParam": [
                {"name": "value-quantity", "type": kind,
                 "definition": "http://hl7.org/fhir/SearchParameter/Observation-value-quantity"}]}]}]})
        };
        let reply = server
            .client()
            .post("CapabilityStatement", &cs("number"))
            .await
            .unwrap();
        let found = errors(&expect_status(&reply, 400));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("quantity"), "{found:?}");
        create(&server, &cs("quantity")).await;
    }
);

const NAP: &str = "http://rules.example/fhir/StructureDefinition/nap";
const NAP_BUNDLE: &str = "http://rules.example/fhir/StructureDefinition/nap-bundle";

/// Profiles only this file uses, differentials without element ids: a nap risk assessment
/// (a relative risk from 0.1 to 10, a mitigation of at most 20 characters) and a collection
/// of them whose entries are slices by profile.
fn nap_profiles() -> Vec<Value> {
    vec![
        json!({"resourceType": "StructureDefinition", "url": NAP, "name": "NapRisk", "status": "draft",
        "kind": "resource", "abstract": false, "type": "RiskAssessment", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/RiskAssessment",
        "differential": {"element": [
            {"path": "RiskAssessment.prediction.relativeRisk",
             "minValueDecimal": 0.1, "maxValueDecimal": 10},
            {"path": "RiskAssessment.mitigation", "maxLength": 20}]}}),
        json!({"resourceType": "StructureDefinition", "url": NAP_BUNDLE, "name": "NapBundle",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Bundle",
        "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Bundle",
        "differential": {"element": [
            {"path": "Bundle.entry", "slicing": {"discriminator": [{"type": "profile", "path": "resource"}],
             "rules": "closed"}},
            {"path": "Bundle.entry", "sliceName": "nap", "min": 1, "max": "*"},
            {"path": "Bundle.entry.resource", "min": 1,
             "type": [{"code": "Resource", "profile": [NAP]}]}]}}),
    ]
}

/// A server with the package holding [`nap_profiles`].
async fn nap_server(kind: StoreKind) -> Option<(TestServer, TempDir)> {
    server_with_package(kind, "naps.example", &nap_profiles()).await
}

fn nap(relative_risk: f64, mitigation: &str) -> Value {
    json!({"resourceType": "RiskAssessment", "meta": {"profile": [NAP]}, "status": "final",
        "subject": {"reference": "Patient/dozer"}, "mitigation": mitigation,
        "prediction": [{"outcome": {"text": "falls asleep at the wheel"}, "relativeRisk": relative_risk}]})
}

with_package!(nap_server, a_profile_bounds_values_and_lengths, |server| {
    create(&server, &nap(2.5, "a short nap")).await;
    for (bad, at) in [
        (
            nap(12.0, "a short nap"),
            "RiskAssessment.prediction[0].relativeRisk",
        ),
        (
            nap(0.05, "a short nap"),
            "RiskAssessment.prediction[0].relativeRisk",
        ),
        (
            nap(2.5, "a nap every afternoon after lunch"),
            "RiskAssessment.mitigation",
        ),
    ] {
        let reply = server.client().post("RiskAssessment", &bad).await.unwrap();
        // Signaal's profile is broken, R4's rules are kept: 422.
        let found = errors(&expect_status(&reply, 422));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with(at), "{found:?}");
    }
});

with_package!(
    nap_server,
    a_nested_resource_conforms_to_its_elements_profile,
    |server| {
        let bundle = |entries: Value| {
            json!({"resourceType": "Bundle", "meta": {"profile": [NAP_BUNDLE]}, "type": "collection",
            "entry": entries})
        };
        let entry = |i: u32, r: Value| json!({"fullUrl": format!("urn:uuid:6b1f2c3d-0000-4000-8000-00000000000{i}"), "resource": r});
        // Two assessments: both in the slice (its cardinality is that of its own, not of the others).
        let ok = bundle(json!([
            entry(1, nap(2.0, "sofa")),
            entry(2, nap(4.0, "bed"))
        ]));
        assert_eq!(errors(&validate(&server, &ok).await), Vec::<String>::new());
        create(&server, &ok).await;
        // A Patient where only nap assessments may be: the closed slicing and the type's profile refuse it.
        let bad = bundle(json!([
            entry(1, nap(2.0, "sofa")),
            entry(2, json!({"resourceType": "Patient"}))
        ]));
        assert!(!errors(&validate(&server, &bad).await).is_empty());
    }
);

both_stores!(a_string_is_at_most_one_megabyte, |server| {
    let long = "z".repeat(1024 * 1024 + 1);
    let p = json!({"resourceType": "Patient", "name": [{"text": long}]});
    let found = errors(&validate(&server, &p).await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("Patient.name[0].text"), "{found:?}");
});

both_stores!(a_urn_follows_its_namespace, |server| {
    let device = |url: &str| json!({"resourceType": "Device", "url": url});
    for bad in [
        "urn:uuid:5b2e8f10-3c4d-4e5f-8a9b-0c1d2e3f4a5bzz",
        "urn:uuid:5b2e8f10-3c4d-4e5f-8a9b",
    ] {
        let reply = server.client().post("Device", &device(bad)).await.unwrap();
        let found = errors(&expect_status(&reply, 400));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("Device.url"), "{found:?}");
    }
    create(
        &server,
        &device("urn:uuid:5b2e8f10-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
    )
    .await;
    create(&server, &device("urn:oid:1.3.6.1.4.1.99999")).await;
});

both_stores!(a_search_outcome_entry_is_an_operation_outcome, |server| {
    let set = |outcome: Value| {
        json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"fullUrl": "http://rules.example/fhir/Patient/lark", "resource": {"resourceType": "Patient", "id": "lark"},
             "search": {"mode": "match"}},
            {"resource": outcome, "search": {"mode": "outcome"}}]})
    };
    let bad = set(json!({"resourceType": "Patient", "id": "owl"}));
    let reply = server.client().post("Bundle", &bad).await.unwrap();
    let found = errors(&expect_status(&reply, 400));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("Bundle.entry[1].resource"), "{found:?}");
    let ok = set(json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": "2 of 3 sleepers shown"}]}));
    create(&server, &ok).await;
});

// Rules of decision 0048: where extensions may be used, modifier extensions, canonical targets,
// Coding.system, CodeSystem content and properties, SearchParameter.derivedFrom.

const LULL: &str = "http://lullaby.example/fhir";

fn lull(path: &str) -> String {
    format!("{LULL}/{path}")
}

/// An extension definition of the lullaby package: a boolean, used where `contexts` say, with
/// `invariants` and `modifier` as given.
fn lull_extension(name: &str, contexts: Value, invariants: Value, modifier: bool) -> Value {
    json!({"resourceType": "StructureDefinition", "url": lull(&format!("StructureDefinition/{name}")),
    "name": name, "status": "draft", "kind": "complex-type", "abstract": false, "type": "Extension",
    "context": contexts, "contextInvariant": invariants,
    "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension", "derivation": "constraint",
    "differential": {"element": [
        {"id": "Extension", "path": "Extension", "isModifier": modifier},
        {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": lull(&format!("StructureDefinition/{name}"))},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "boolean"}]}]}})
}

/// Extensions, a code system, its supplement and a value set that appear nowhere else.
fn lullaby_definitions() -> Vec<Value> {
    let element = |e: &str| json!({"type": "element", "expression": e});
    vec![
        lull_extension("tucked-in", json!([element("Encounter")]), json!([]), false),
        lull_extension(
            "night-line",
            json!([{"type": "fhirpath", "expression": "Patient.telecom.where(system = 'phone')"}]),
            json!([]),
            false,
        ),
        lull_extension(
            "still-awake",
            json!([element("Patient")]),
            json!(["deceased.exists().not()"]),
            false,
        ),
        lull_extension(
            "exact-birth",
            json!([element("Patient.birthDate")]),
            json!([]),
            false,
        ),
        lull_extension("not-a-dream", json!([element("Patient")]), json!([]), true),
        json!({"resourceType": "CodeSystem", "url": lull("CodeSystem/sleep-stage"), "status": "active",
            "content": "complete", "concept": [{"code": "rem"}, {"code": "deep"}]}),
        json!({"resourceType": "CodeSystem", "url": lull("CodeSystem/sleep-stage-nl"), "status": "active",
            "content": "supplement", "supplements": lull("CodeSystem/sleep-stage"),
            "concept": [{"code": "rem", "designation": [{"language": "nl", "value": "droomslaap"}]}]}),
        json!({"resourceType": "ValueSet", "url": lull("ValueSet/sleep-stages"), "status": "active",
            "compose": {"include": [{"system": lull("CodeSystem/sleep-stage")}]}}),
    ]
}

async fn lullaby_server(kind: StoreKind) -> Option<(TestServer, TempDir)> {
    server_with_package(kind, "lullaby.example", &lullaby_definitions()).await
}

fn lull_flag(name: &str) -> Value {
    json!({"url": lull(&format!("StructureDefinition/{name}")), "valueBoolean": true})
}

/// Posts `resource`: refused with one error at `at`, or (`at` None) stored.
async fn refused_at(server: &TestServer, resource: &Value, at: Option<&str>) {
    refused_with(server, resource, at, 400).await;
}

/// As [`refused_at`], for a resource that keeps R4's rules and breaks only a profile: 422.
async fn profile_refused_at(server: &TestServer, resource: &Value, at: Option<&str>) {
    refused_with(server, resource, at, 422).await;
}

async fn refused_with(server: &TestServer, resource: &Value, at: Option<&str>, status: u16) {
    let rtype = resource["resourceType"].as_str().unwrap();
    let reply = server.client().post(rtype, resource).await.unwrap();
    match at {
        Some(at) => {
            let found = errors(&expect_status(&reply, status));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].ends_with(at), "{found:?}");
        }
        None => {
            expect_status(&reply, 201);
        }
    }
}

with_package!(
    lullaby_server,
    an_extension_is_used_in_its_element_context,
    |server| {
        let encounter = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "extension": [lull_flag("tucked-in")]});
        refused_at(&server, &encounter, None).await;
        let patient = json!({"resourceType": "Patient", "extension": [lull_flag("tucked-in")]});
        refused_at(&server, &patient, Some("Patient.extension[0]")).await;
    }
);

with_package!(
    lullaby_server,
    an_extension_is_used_where_its_fhirpath_context_selects,
    |server| {
        let patient = |system: &str| {
            json!({"resourceType": "Patient", "telecom": [
            {"system": system, "value": "0101 234 567", "extension": [lull_flag("night-line")]}]})
        };
        refused_at(&server, &patient("phone"), None).await;
        refused_at(
            &server,
            &patient("fax"),
            Some("Patient.telecom[0].extension[0]"),
        )
        .await;
    }
);

with_package!(
    lullaby_server,
    an_extension_keeps_its_context_invariants,
    |server| {
        let patient = |deceased: Option<bool>| {
            let mut p = json!({"resourceType": "Patient", "extension": [lull_flag("still-awake")]});
            if let Some(d) = deceased {
                p["deceasedBoolean"] = json!(d);
            }
            p
        };
        refused_at(&server, &patient(None), None).await;
        refused_at(&server, &patient(Some(true)), Some("Patient.extension[0]")).await;
    }
);

with_package!(
    lullaby_server,
    an_extension_on_a_primitive_is_checked_too,
    |server| {
        let on = |element: &str| {
            json!({"resourceType": "Patient", "birthDate": "1988-02-29", "gender": "other",
            format!("_{element}"): {"extension": [lull_flag("exact-birth")]}})
        };
        refused_at(&server, &on("birthDate"), None).await;
        refused_at(&server, &on("gender"), Some("Patient.gender.extension[0]")).await;
    }
);

both_stores!(a_core_extension_out_of_its_context_is_a_warning, |server| {
    // patient-birthTime is declared for Patient.birthDate; the R4 package itself uses core
    // extensions outside their declared contexts, so this is a warning only.
    let patient = json!({"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
         "valueDateTime": "1988-02-29T03:17:00+01:00"}]});
    let outcome = validate(&server, &patient).await;
    assert_eq!(errors(&outcome), Vec::<String>::new());
    let warned = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["severity"] == "warning" && i["expression"][0] == "Patient.extension[0]");
    assert!(warned, "{outcome}");
});

with_package!(
    lullaby_server,
    a_modifier_extension_is_a_modifier_extension,
    |server| {
        let ok =
            json!({"resourceType": "Patient", "modifierExtension": [lull_flag("not-a-dream")]});
        refused_at(&server, &ok, None).await;
        let hidden = json!({"resourceType": "Patient", "extension": [lull_flag("not-a-dream")]});
        refused_at(&server, &hidden, Some("Patient.extension[0]")).await;
        let inflated =
            json!({"resourceType": "Patient", "modifierExtension": [lull_flag("still-awake")]});
        refused_at(&server, &inflated, Some("Patient.modifierExtension[0]")).await;
    }
);

with_package!(
    lullaby_server,
    a_canonical_names_a_resource_of_its_target_type,
    |server| {
        let response = json!({"resourceType": "QuestionnaireResponse", "status": "in-progress",
        "questionnaire": lull("ValueSet/sleep-stages")});
        refused_at(
            &server,
            &response,
            Some("QuestionnaireResponse.questionnaire"),
        )
        .await;
    }
);

with_package!(lullaby_server, a_coding_system_is_a_code_system, |server| {
    let observation = |system: String| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": system, "code": "rem"}]}})
    };
    refused_at(&server, &observation(lull("CodeSystem/sleep-stage")), None).await;
    refused_at(
        &server,
        &observation(lull("ValueSet/sleep-stages")),
        Some("Observation.code.coding[0].system"),
    )
    .await;
    refused_at(
        &server,
        &observation(lull("CodeSystem/sleep-stage-nl")),
        Some("Observation.code.coding[0].system"),
    )
    .await;
});

both_stores!(
    a_code_system_agrees_with_its_content_and_properties,
    |server| {
        let cs = |content: &str, property: Value| {
            json!({"resourceType": "CodeSystem", "url": lull("CodeSystem/dream-kind"), "status": "draft",
            "content": content,
            "property": [{"code": "vividness", "type": "integer"}],
            "concept": [{"code": "lucid", "property": [property]}]})
        };
        refused_at(
            &server,
            &cs("complete", json!({"code": "vividness", "valueInteger": 9})),
            None,
        )
        .await;
        refused_at(
            &server,
            &cs(
                "not-present",
                json!({"code": "vividness", "valueInteger": 9}),
            ),
            Some("CodeSystem.concept[0]"),
        )
        .await;
        refused_at(
            &server,
            &cs(
                "complete",
                json!({"code": "vividness", "valueString": "very"}),
            ),
            Some("CodeSystem.concept[0].property[0]"),
        )
        .await;
        refused_at(
            &server,
            &cs("complete", json!({"code": "colour", "valueString": "grey"})),
            Some("CodeSystem.concept[0].property[0].code"),
        )
        .await;
    }
);

both_stores!(
    a_derived_search_parameter_agrees_with_its_origin,
    |server| {
        let sp = |kind: &str, base: &str| {
            json!({"resourceType": "SearchParameter", "url": lull("SearchParameter/bedtime-birthdate"),
            "name": "BedtimeBirthdate", "status": "draft", "description": "birth date, at bedtime",
            "derivedFrom": "http://hl7.org/fhir/SearchParameter/individual-birthdate",
            "code": "bedtime-birthdate", "base": [base], "type": kind,
            "expression": format!("{base}.birthDate")})
        };
        refused_at(&server, &sp("date", "Patient"), None).await;
        refused_at(
            &server,
            &sp("string", "Patient"),
            Some("SearchParameter.type"),
        )
        .await;
        refused_at(
            &server,
            &sp("date", "Device"),
            Some("SearchParameter.base[0]"),
        )
        .await;
    }
);

both_stores!(a_reference_url_has_a_valid_scheme, |server| {
    let observation = |reference: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "snoring"},
            "subject": {"reference": reference}})
    };
    refused_at(
        &server,
        &observation("https://lullaby.example/fhir/Patient/sandman"),
        None,
    )
    .await;
    let reply = server
        .client()
        .post(
            "Observation",
            &observation("ht tps://lullaby.example/fhir/Patient/sandman"),
        )
        .await
        .unwrap();
    let found = errors(&expect_status(&reply, 400));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("is not a valid reference"), "{found:?}");
});

const SNORE_LEVEL: &str = "http://lullaby.example/fhir/StructureDefinition/snore-level";

/// A profile naming the choice element by its type-specific name, as R4 profiles may.
async fn snore_server(kind: StoreKind) -> Option<(TestServer, TempDir)> {
    let profile = json!({"resourceType": "StructureDefinition", "url": SNORE_LEVEL,
        "name": "SnoreLevel", "status": "draft", "kind": "resource", "abstract": false,
        "type": "Observation", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "differential": {"element": [
            {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity", "min": 1},
            {"id": "Observation.valueQuantity.unit", "path": "Observation.valueQuantity.unit", "min": 1}]}});
    server_with_package(kind, "snore.example", &[profile]).await
}

with_package!(
    snore_server,
    a_profile_names_a_choice_element_by_its_type,
    |server| {
        let observation = |value: (&str, Value)| {
            let mut o = json!({"resourceType": "Observation", "meta": {"profile": [SNORE_LEVEL]},
            "status": "final", "code": {"text": "snoring loudness"}});
            o[value.0] = value.1;
            o
        };
        refused_at(
            &server,
            &observation(("valueQuantity", json!({"value": 62, "unit": "dB"}))),
            None,
        )
        .await;
        profile_refused_at(
            &server,
            &observation(("valueQuantity", json!({"value": 62}))),
            Some("Observation.valueQuantity"),
        )
        .await;
        let reply = server
            .client()
            .post("Observation", &observation(("valueString", json!("loud"))))
            .await
            .unwrap();
        // A valid Observation whose value[x] the claimed profile narrows to a Quantity.
        assert!(!errors(&expect_status(&reply, 422)).is_empty());
    }
);

both_stores!(
    a_urn_reference_resolves_to_an_entry_of_an_allowed_type,
    |server| {
        let bundle = |target: &str| {
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:2f0c8a7e-5b1d-4c3e-9f4a-6d7e8f9a0b1c",
             "resource": {"resourceType": target}},
            {"fullUrl": "urn:uuid:7a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "sleep apnoea index"},
              "subject": {"reference": "urn:uuid:2f0c8a7e-5b1d-4c3e-9f4a-6d7e8f9a0b1c"}}}]})
        };
        refused_at(&server, &bundle("Patient"), None).await;
        refused_at(
            &server,
            &bundle("Medication"),
            Some("Bundle.entry[1].resource.subject.reference"),
        )
        .await;
    }
);
