//! Validation against StructureDefinitions through the HTTP API, on both stores (issue 18,
//! decision 0034): `$validate` at type and instance level, `meta.profile` claims checked on
//! write, the unknown-profile setting, `--require-profile`, core invariants on every write,
//! slicing of the core vital-signs profiles, and profiles loaded from a FHIR package.

mod common;

use std::path::PathBuf;

use common::package::write_package;
use common::{create, expect_status, Api, StoreKind, TempDir, TestServer};
use serde_json::{json, Value};
use signaal::validation::UnknownProfile;

const BODY_WEIGHT: &str = "http://hl7.org/fhir/StructureDefinition/bodyweight";
const VITAL_SIGNS: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";

/// A body weight Observation in kilograms (LOINC 29463-7, vital-signs category).
fn body_weight(kg: &str) -> Value {
    serde_json::from_str(&format!(
        r#"{{"resourceType": "Observation", "status": "final",
        "category": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}]}}],
        "code": {{"coding": [{{"system": "http://loinc.org", "code": "29463-7"}}]}},
        "subject": {{"reference": "Patient/someone"}},
        "effectiveDateTime": "2031-04-05T08:30:00Z",
        "valueQuantity": {{"value": {kg}, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}}}"#
    ))
    .unwrap()
}

fn claiming(mut resource: Value, profile: &str) -> Value {
    resource["meta"] = json!({"profile": [profile]});
    resource
}

fn errors(outcome: &Value) -> Vec<&Value> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .collect()
}

fn expressions(outcome: &Value) -> Vec<String> {
    errors(outcome)
        .iter()
        .filter_map(|i| i["expression"][0].as_str().map(str::to_owned))
        .collect()
}

both_stores!(
    validate_answers_all_ok_for_a_conformant_body_weight,
    |server| {
        let reply = server
            .client()
            .post(
                &format!("Observation/$validate?profile={BODY_WEIGHT}"),
                &body_weight("81.3"),
            )
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(errors(&outcome).is_empty(), "{outcome}");
    }
);

both_stores!(validate_lists_every_issue_with_its_location, |server| {
    let mut bad = body_weight("81.3");
    bad["valueQuantity"]["code"] = json!("[stone_av]");
    bad["category"] = json!([{"text": "measured at home"}]);
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": bad},
        {"name": "profile", "valueUri": BODY_WEIGHT},
        {"name": "mode", "valueCode": "create"},
    ]});
    let reply = server
        .client()
        .post("Observation/$validate", &parameters)
        .await
        .unwrap();
    let outcome = expect_status(&reply, 200);
    let at = expressions(&outcome);
    assert!(
        at.iter()
            .any(|e| e.starts_with("Observation.valueQuantity")),
        "{outcome}"
    );
    // The VSCat slice of category (pattern discriminator) has no item.
    assert!(
        errors(&outcome)
            .iter()
            .any(|i| i["diagnostics"].as_str().unwrap().contains("VSCat")),
        "{outcome}"
    );
    for issue in errors(&outcome) {
        let text = issue["diagnostics"].as_str().unwrap();
        assert!(!text.contains("anyOf") && !text.contains("oneOf"), "{text}");
    }
});

both_stores!(a_claimed_profile_is_checked_on_write, |server| {
    let ok = claiming(body_weight("64"), BODY_WEIGHT);
    create(&server, &ok).await;
    let mut bad = claiming(body_weight("64"), BODY_WEIGHT);
    bad["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "8302-2"}]});
    let reply = server.client().post("Observation", &bad).await.unwrap();
    // A valid Observation that breaks the profile it claims: 422 (http.html), not 400.
    let outcome = expect_status(&reply, 422);
    assert!(!errors(&outcome).is_empty(), "{outcome}");
    // Without the claim the same resource is a valid Observation.
    bad.as_object_mut().unwrap().remove("meta");
    create(&server, &bad).await;
});

both_stores!(core_invariants_are_checked_on_every_write, |server| {
    // obs-6: dataAbsentReason only when there is no value.
    let mut bad = body_weight("70");
    bad["dataAbsentReason"] = json!({"text": "scale broken"});
    let reply = server.client().post("Observation", &bad).await.unwrap();
    let outcome = expect_status(&reply, 400);
    assert!(
        errors(&outcome)
            .iter()
            .any(|i| i["diagnostics"].as_str().unwrap().contains("obs-6")),
        "{outcome}"
    );
});

both_stores!(
    a_contained_resource_referencing_a_sibling_is_stored,
    |server| {
        // ref-1 on the contained Patient's reference: `#clinician` is among the contained
        // resources of %rootResource, the container (not of the contained Patient itself).
        let r = json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
        "contained": [
            {"resourceType": "Patient", "id": "someone", "generalPractitioner": [{"reference": "#clinician"}]},
            {"resourceType": "Practitioner", "id": "clinician", "name": [{"family": "Vos"}]}
        ],
        "subject": {"reference": "#someone"}, "performer": [{"reference": "#clinician"}],
        "valueQuantity": {"value": 64, "unit": "/min"}});
        create(&server, &r).await;
        // A reference to a contained resource that is not there is refused (the write path's
        // reference check answers before ref-1 does).
        let mut bad = r.clone();
        bad["contained"][0]["generalPractitioner"][0]["reference"] = json!("#nobody");
        let reply = server.client().post("Observation", &bad).await.unwrap();
        expect_status(&reply, 400);
    }
);

both_stores!(a_narrative_with_a_script_breaks_txt_1, |server| {
    let mut r = body_weight("70");
    r["text"] = json!({"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>70 kg</p><script>alert(1)</script></div>"});
    let reply = server.client().post("Observation", &r).await.unwrap();
    let outcome = expect_status(&reply, 400);
    assert!(
        errors(&outcome)
            .iter()
            .any(|i| i["diagnostics"].as_str().unwrap().contains("txt-1")),
        "{outcome}"
    );
    r["text"]["div"] = json!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>70 kg</p></div>");
    create(&server, &r).await;
});

both_stores!(
    an_unknown_claimed_profile_is_stored_with_the_default_setting,
    |server| {
        let r = claiming(
            body_weight("70"),
            "http://example.org/fhir/StructureDefinition/nowhere",
        );
        create(&server, &r).await;
        let reply = server
            .client()
            .post("Observation/$validate", &r)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert!(
            outcome["issue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["severity"] == "warning"
                    && i["expression"][0] == "Observation.meta.profile[0]"),
            "{outcome}"
        );
    }
);

both_stores!(an_unknown_profile_asked_of_validate_is_refused, |server| {
    let reply = server
        .client()
        .post(
            "Observation/$validate?profile=http://example.org/fhir/StructureDefinition/nowhere",
            &body_weight("70"),
        )
        .await
        .unwrap();
    expect_status(&reply, 400);
});

both_stores!(
    instance_validate_reads_the_stored_resource_and_checks_update_ids,
    |server| {
        let id = create(&server, &body_weight("55")).await;
        let reply = server
            .client()
            .get(&format!("Observation/{id}/$validate?profile={VITAL_SIGNS}"))
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert!(errors(&outcome).is_empty(), "{outcome}");
        let mut other = body_weight("55");
        other["id"] = json!("another-id");
        let reply = server
            .client()
            .post(&format!("Observation/{id}/$validate?mode=update"), &other)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert_eq!(expressions(&outcome), ["Observation.id"], "{outcome}");
        let reply = server
            .client()
            .post(
                "Observation/not-there/$validate?mode=delete",
                &json!({"resourceType": "Parameters"}),
            )
            .await
            .unwrap();
        expect_status(&reply, 404);
    }
);

/// A collection Bundle of `entries` (Observations), each given an id and a made-up absolute
/// fullUrl ending in it.
fn collection(entries: Vec<Value>) -> Value {
    let entries: Vec<Value> = entries
        .into_iter()
        .enumerate()
        .map(|(i, mut resource)| {
            resource["id"] = json!(format!("reading-{i}"));
            json!({"fullUrl": format!("http://example.org/fhir/Observation/reading-{i}"),
                   "resource": resource})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

/// A body weight in milligrams: a valid Observation that breaks the body-weight profile (its
/// unit is bound, required, to kg, g and [lb_av]).
fn weight_in_milligrams() -> Value {
    let mut weight = body_weight("72000000");
    weight["valueQuantity"]["unit"] = json!("mg");
    weight["valueQuantity"]["code"] = json!("mg");
    weight
}

both_stores!(
    validate_checks_a_bundle_entry_against_the_profile_it_claims,
    |server| {
        let claimed = collection(vec![
            body_weight("64"),
            claiming(weight_in_milligrams(), BODY_WEIGHT),
        ]);
        let reply = server
            .client()
            .post("Bundle/$validate", &claimed)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        let at = expressions(&outcome);
        assert!(
            !at.is_empty()
                && at
                    .iter()
                    .all(|e| e.starts_with("Bundle.entry[1].resource.valueQuantity")),
            "{outcome}"
        );
        // Without the claim the same entry is a valid Observation.
        let unclaimed = collection(vec![body_weight("64"), weight_in_milligrams()]);
        let reply = server
            .client()
            .post("Bundle/$validate", &unclaimed)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert!(errors(&outcome).is_empty(), "{outcome}");
    }
);

both_stores!(
    a_bundle_whose_entry_breaks_only_its_claimed_profile_is_422,
    |server| {
        let bundle = collection(vec![claiming(weight_in_milligrams(), BODY_WEIGHT)]);
        let reply = server.client().post("Bundle", &bundle).await.unwrap();
        let outcome = expect_status(&reply, 422);
        assert!(!errors(&outcome).is_empty(), "{outcome}");
        // An entry that breaks R4's own rules (obs-6) as well: 400.
        let mut both = claiming(weight_in_milligrams(), BODY_WEIGHT);
        both["dataAbsentReason"] = json!({"text": "scale broken"});
        let reply = server
            .client()
            .post("Bundle", &collection(vec![both]))
            .await
            .unwrap();
        expect_status(&reply, 400);
    }
);

both_stores!(
    a_contained_resource_claiming_a_profile_of_another_type_is_an_error,
    |server| {
        let mut scale = json!({"resourceType": "Device", "id": "scale",
            "meta": {"profile": [BODY_WEIGHT]}, "manufacturer": "Made-up Scales Ltd"});
        scale["deviceName"] = json!([{"name": "hall scale", "type": "user-friendly-name"}]);
        let mut weight = body_weight("64");
        weight["contained"] = json!([scale]);
        weight["device"] = json!({"reference": "#scale"});
        let reply = server
            .client()
            .post("Observation/$validate", &weight)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert_eq!(
            expressions(&outcome),
            ["Observation.contained[0].meta.profile[0]"],
            "{outcome}"
        );
    }
);

both_stores!(
    an_unknown_profile_claimed_by_a_bundle_entry_is_a_warning,
    |server| {
        let claimed = claiming(
            body_weight("64"),
            "http://example.org/fhir/StructureDefinition/nobody-knows-this",
        );
        let reply = server
            .client()
            .post("Bundle", &collection(vec![claimed]))
            .await
            .unwrap();
        expect_status(&reply, 201);
    }
);

both_stores!(
    an_error_after_more_warnings_than_an_outcome_holds_is_still_refused,
    |server| {
        // Each entry lacks a narrative (dom-6, a warning): more warnings than an
        // OperationOutcome keeps, then an entry that breaks obs-6 (dataAbsentReason beside a
        // value), which only the walk of the definitions finds.
        let mut readings: Vec<Value> = (0..70)
            .map(|i| body_weight(&format!("{}", 60 + i % 9)))
            .collect();
        readings[66]["dataAbsentReason"] = json!({"text": "scale broken"});
        let reply = server
            .client()
            .post("Bundle", &collection(readings))
            .await
            .unwrap();
        let outcome = expect_status(&reply, 400);
        assert!(
            expressions(&outcome)
                .iter()
                .any(|e| e.starts_with("Bundle.entry[66].resource")),
            "{outcome}"
        );
    }
);

async fn strict_server(kind: StoreKind) -> Option<TestServer> {
    TestServer::start_configured(kind, |settings| {
        settings.validation.unknown_profile = UnknownProfile::Error;
        settings.validation.required = vec![("Observation".into(), VITAL_SIGNS.into())];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_unknown_profiles_and_required_profiles_refuse_sqlite() {
    policy(strict_server(StoreKind::Sqlite).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_unknown_profiles_and_required_profiles_refuse_postgres() {
    if let Some(server) = strict_server(StoreKind::Postgres).await {
        policy(server).await;
    }
}

async fn policy(server: TestServer) {
    let unknown = claiming(
        body_weight("70"),
        "http://example.org/fhir/StructureDefinition/nowhere",
    );
    let reply = server.client().post("Observation", &unknown).await.unwrap();
    expect_status(&reply, 422);
    // Every Observation must be a vital sign: one without the category is refused.
    let mut lab = body_weight("70");
    lab.as_object_mut().unwrap().remove("category");
    let reply = server.client().post("Observation", &lab).await.unwrap();
    let outcome = expect_status(&reply, 422);
    assert!(!errors(&outcome).is_empty());
    create(&server, &body_weight("70")).await;
    // Other types are not concerned.
    create(
        &server,
        &json!({"resourceType": "Patient", "gender": "other"}),
    )
    .await;
}

const CLINIC_PATIENT: &str = "http://clinic.example/fhir/StructureDefinition/clinic-patient";
const CLINIC_CHILD: &str = "http://clinic.example/fhir/StructureDefinition/clinic-child";

/// A profile with only a differential (the server makes its snapshot), and one based on it.
fn clinic_profiles() -> Vec<Value> {
    vec![
        json!({"resourceType": "StructureDefinition", "url": CLINIC_PATIENT, "name": "ClinicPatient",
        "status": "active", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
        "differential": {"element": [
            {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1,
             "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
            {"id": "Patient.identifier:clinicNumber", "path": "Patient.identifier", "sliceName": "clinicNumber",
             "min": 1, "max": "1"},
            {"id": "Patient.identifier:clinicNumber.system", "path": "Patient.identifier.system",
             "min": 1, "fixedUri": "urn:oid:2.16.528.1.1007.99.3"},
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
        ]}}),
        json!({"resourceType": "StructureDefinition", "url": CLINIC_CHILD, "name": "ClinicChild",
        "status": "active", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": CLINIC_PATIENT, "derivation": "constraint",
        "differential": {"element": [
            {"id": "Patient.contact", "path": "Patient.contact", "min": 1},
        ]}}),
    ]
}

fn clinic_patient(identifier_system: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": "http://other.example/mrn", "value": "77"},
                       {"system": identifier_system, "value": "4411"}],
        "birthDate": "2019-03-02",
        "contact": [{"name": {"family": "Bakker"}}]})
}

async fn package_server(kind: StoreKind, packages: Vec<PathBuf>) -> Option<TestServer> {
    TestServer::start_configured(kind, |settings| settings.validation.packages = packages).await
}

async fn package_profiles(server: TestServer) {
    let ok = clinic_patient("urn:oid:2.16.528.1.1007.99.3");
    for profile in [CLINIC_PATIENT, CLINIC_CHILD] {
        let reply = server
            .client()
            .post(&format!("Patient/$validate?profile={profile}"), &ok)
            .await
            .unwrap();
        let outcome = expect_status(&reply, 200);
        assert!(errors(&outcome).is_empty(), "{profile}: {outcome}");
    }
    // No identifier in the clinicNumber slice, and (child profile) no contact.
    let mut bad = clinic_patient("http://elsewhere.example/id");
    bad.as_object_mut().unwrap().remove("contact");
    let reply = server
        .client()
        .post(&format!("Patient/$validate?profile={CLINIC_CHILD}"), &bad)
        .await
        .unwrap();
    let outcome = expect_status(&reply, 200);
    let messages: Vec<&str> = errors(&outcome)
        .iter()
        .map(|i| i["diagnostics"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("clinicNumber")),
        "{outcome}"
    );
    assert!(messages.iter().any(|m| m.contains("contact")), "{outcome}");
    // Claimed on write: refused.
    let reply = server
        .client()
        .post("Patient", &claiming(bad, CLINIC_PATIENT))
        .await
        .unwrap();
    expect_status(&reply, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_of_a_package_are_loaded_with_snapshots_sqlite() {
    let dir = TempDir::new();
    let file = write_package(
        &dir.0,
        "clinic.profiles",
        json!({"hl7.fhir.r4.core": "4.0.1"}),
        &clinic_profiles(),
    );
    package_profiles(package_server(StoreKind::Sqlite, vec![file]).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_of_a_package_are_loaded_with_snapshots_postgres() {
    let dir = TempDir::new();
    let file = write_package(
        &dir.0,
        "clinic.profiles",
        json!({"hl7.fhir.r4.core": "4.0.1"}),
        &clinic_profiles(),
    );
    if let Some(server) = package_server(StoreKind::Postgres, vec![file]).await {
        package_profiles(server).await;
    }
}

#[tokio::test]
async fn a_package_whose_dependency_is_missing_stops_the_start() {
    let dir = TempDir::new();
    let file = write_package(
        &dir.0,
        "clinic.profiles",
        json!({"hl7.fhir.r4.core": "4.0.1", "nictiz.fhir.nl.r4.zib2020": "0.11.0"}),
        &clinic_profiles(),
    );
    let settings = signaal::validation::Settings {
        packages: vec![file],
        ..Default::default()
    };
    let error = signaal::validation::Validator::start(settings)
        .err()
        .expect("the start fails");
    let message = error.to_string();
    assert!(message.contains("nictiz.fhir.nl.r4.zib2020"), "{message}");
}
