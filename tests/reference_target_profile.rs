//! A reference's target against the profiles its element names (`Reference(profile)`,
//! ElementDefinition.type.targetProfile; decision 0052), through the HTTP API on both stores:
//! targets on this server (relative, versioned, absolute under the base) and in the Bundle
//! being written are walked against the profiles on create, update, patch, transactions,
//! batches and `$validate`; a target that is not on this server, or that the client may not
//! read, is not checked, and `$validate` says so.

mod common;

use common::auth::Secured;
use common::outcome::validate;
use common::package::{server_with_package, write_package};
use common::{create, expect_status, ids, statuses, Api, StoreKind, TempDir, TestServer};
use serde_json::{json, Value};

const ENROLLED: &str = "http://hives.example/fhir/StructureDefinition/enrolled-beekeeper";
const INSPECTION: &str = "http://hives.example/fhir/StructureDefinition/hive-inspection";
const ROUND: &str = "http://hives.example/fhir/StructureDefinition/inspection-round";

/// Profiles only this file uses: a beekeeper (a Patient) enrolled in the hive registry, who
/// has an identifier, a hive inspection (an Observation) whose subject must be one, and a
/// round of inspections (a Bundle of beekeepers and inspections).
fn hive_profiles() -> Vec<Value> {
    vec![
        json!({"resourceType": "StructureDefinition", "url": ENROLLED, "name": "EnrolledBeekeeper",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Patient",
        "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "differential": {"element": [
            {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1}]}}),
        json!({"resourceType": "StructureDefinition", "url": INSPECTION, "name": "HiveInspection",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Observation",
        "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "differential": {"element": [
            {"id": "Observation.subject", "path": "Observation.subject", "min": 1,
             "type": [{"code": "Reference", "targetProfile": [ENROLLED]}]}]}}),
        json!({"resourceType": "StructureDefinition", "url": ROUND, "name": "InspectionRound",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Bundle",
        "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Bundle",
        "differential": {"element": [
            {"id": "Bundle.entry.resource", "path": "Bundle.entry.resource",
             "type": [{"code": "Resource", "profile": [INSPECTION, ENROLLED]}]}]}}),
    ]
}

/// A server with the package holding [`hive_profiles`].
async fn hive_server(kind: StoreKind) -> Option<(TestServer, TempDir)> {
    server_with_package(kind, "hives.example", &hive_profiles()).await
}

fn beekeeper(identified: bool) -> Value {
    let mut p = json!({"resourceType": "Patient", "name": [{"family": "Imker"}]});
    if identified {
        p["identifier"] = json!([{"system": "http://hives.example/registry", "value": "B-0193"}]);
    }
    p
}

fn inspection(subject: &str) -> Value {
    json!({"resourceType": "Observation", "meta": {"profile": [INSPECTION]}, "status": "final",
        "code": {"text": "brood frames inspected"}, "valueInteger": 7,
        "subject": {"reference": subject}})
}

/// `(severity, diagnostics, expression)` of every issue.
fn issues(outcome: &Value) -> Vec<(String, String, String)> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["severity"].as_str().unwrap_or("").to_owned(),
                i["diagnostics"].as_str().unwrap_or("").to_owned(),
                i["expression"][0].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn errors(outcome: &Value) -> Vec<(String, String, String)> {
    issues(outcome)
        .into_iter()
        .filter(|(s, _, _)| s == "error")
        .collect()
}

/// The 422 of a target that does not conform: one error, at `at`, naming the profile.
fn assert_refused_at(outcome: &Value, at: &str) {
    let found = errors(outcome);
    assert_eq!(found.len(), 1, "{outcome}");
    let (_, message, expression) = &found[0];
    assert!(message.contains(ENROLLED), "{message}");
    assert!(
        message.contains("identifier"),
        "the target's problem: {message}"
    );
    assert!(expression.ends_with(at), "{expression} vs {at}");
}

with_package!(
    hive_server,
    a_target_that_does_not_conform_to_the_profile_is_refused,
    |server| {
        let anonymous = create(&server, &beekeeper(false)).await;
        let enrolled = create(&server, &beekeeper(true)).await;
        let reply = server
            .client()
            .post("Observation", &inspection(&format!("Patient/{anonymous}")))
            .await
            .unwrap();
        assert_refused_at(&expect_status(&reply, 422), "Observation.subject");
        // The same target by its absolute URL on this server.
        let absolute = format!("{}/Patient/{anonymous}", server.base);
        let reply = server
            .client()
            .post("Observation", &inspection(&absolute))
            .await
            .unwrap();
        assert_refused_at(&expect_status(&reply, 422), "Observation.subject");
        // A target that conforms.
        create(&server, &inspection(&format!("Patient/{enrolled}"))).await;
        create(
            &server,
            &inspection(&format!("{}/Patient/{enrolled}", server.base)),
        )
        .await;
        // Without the profile claimed, the element allows any Patient.
        let mut plain = inspection(&format!("Patient/{anonymous}"));
        plain.as_object_mut().unwrap().remove("meta");
        create(&server, &plain).await;
    }
);

with_package!(
    hive_server,
    a_versioned_reference_is_checked_against_that_version,
    |server| {
        let id = create(&server, &beekeeper(false)).await;
        let mut v2 = beekeeper(true);
        v2["id"] = json!(id);
        expect_status(
            &server
                .client()
                .put(&format!("Patient/{id}"), &v2)
                .await
                .unwrap(),
            200,
        );
        let reply = server
            .client()
            .post(
                "Observation",
                &inspection(&format!("Patient/{id}/_history/1")),
            )
            .await
            .unwrap();
        assert_refused_at(&expect_status(&reply, 422), "Observation.subject");
        create(&server, &inspection(&format!("Patient/{id}/_history/2"))).await;
        create(&server, &inspection(&format!("Patient/{id}"))).await;
    }
);

with_package!(
    hive_server,
    a_target_not_on_this_server_is_not_checked_and_said_so,
    |server| {
        for subject in [
            "Patient/no-such-beekeeper".to_owned(),
            "https://elsewhere.example/fhir/Patient/17".to_owned(),
            format!("{}/Patient/no-such-beekeeper", server.base),
        ] {
            create(&server, &inspection(&subject)).await;
            let outcome = validate(&server, &inspection(&subject)).await;
            assert!(errors(&outcome).is_empty(), "{outcome}");
            let said = issues(&outcome).into_iter().any(|(s, m, at)| {
                s == "information"
                    && m.contains("not checked")
                    && m.contains("not on this server")
                    && m.contains(ENROLLED)
                    && at == "Observation.subject"
            });
            assert!(said, "{subject}: {outcome}");
        }
    }
);

with_package!(
    hive_server,
    validate_reports_a_target_that_does_not_conform,
    |server| {
        let anonymous = create(&server, &beekeeper(false)).await;
        let enrolled = create(&server, &beekeeper(true)).await;
        let outcome = validate(&server, &inspection(&format!("Patient/{anonymous}"))).await;
        assert_refused_at(&outcome, "Observation.subject");
        let outcome = validate(&server, &inspection(&format!("Patient/{enrolled}"))).await;
        assert!(errors(&outcome).is_empty(), "{outcome}");
    }
);

with_package!(
    hive_server,
    an_update_and_a_patch_check_their_targets,
    |server| {
        let anonymous = create(&server, &beekeeper(false)).await;
        let enrolled = create(&server, &beekeeper(true)).await;
        let id = create(&server, &inspection(&format!("Patient/{enrolled}"))).await;
        let mut moved = inspection(&format!("Patient/{anonymous}"));
        moved["id"] = json!(id);
        let reply = server
            .client()
            .put(&format!("Observation/{id}"), &moved)
            .await
            .unwrap();
        assert_refused_at(&expect_status(&reply, 422), "Observation.subject");
        let patch = json!([{"op": "replace", "path": "/subject/reference",
        "value": format!("Patient/{anonymous}")}]);
        let reply = server
            .client()
            .send(
                "PATCH",
                &format!("Observation/{id}"),
                &[("content-type", "application/json-patch+json")],
                Some(patch.to_string().into_bytes()),
            )
            .await
            .unwrap();
        assert_refused_at(&expect_status(&reply, 422), "Observation.subject");
        // Nothing was written: still version 1, still the enrolled beekeeper.
        let current = expect_status(
            &server
                .client()
                .get(&format!("Observation/{id}"))
                .await
                .unwrap(),
            200,
        );
        assert_eq!(current["meta"]["versionId"], "1");
        assert_eq!(
            current["subject"]["reference"],
            format!("Patient/{enrolled}")
        );
    }
);

const KEEPER: &str = "urn:uuid:4f1d7a52-8c3e-4b6a-9d0e-2a7c5b8e1f30";

fn transaction(identified: bool) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": KEEPER, "resource": beekeeper(identified),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": inspection(KEEPER), "request": {"method": "POST", "url": "Observation"}}]})
}

with_package!(
    hive_server,
    a_target_in_the_same_transaction_is_checked_as_written,
    |server| {
        let reply = server.client().post("", &transaction(false)).await.unwrap();
        let outcome = expect_status(&reply, 422);
        let found = errors(&outcome);
        assert_eq!(found.len(), 1, "{outcome}");
        assert!(found[0].1.contains("Bundle.entry[1]"), "{outcome}");
        assert!(found[0].1.contains(ENROLLED), "{outcome}");
        // Nothing was written.
        assert_eq!(ids(&server, "Patient").await, Vec::<String>::new());
        let reply = server.client().post("", &transaction(true)).await.unwrap();
        assert_eq!(
            statuses(&expect_status(&reply, 200)),
            ["201 Created", "201 Created"]
        );
        // A PUT entry's resource is found by its `Type/id`.
        let put = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "keeper-7"},
         "request": {"method": "PUT", "url": "Patient/keeper-7"}},
        {"resource": inspection("Patient/keeper-7"), "request": {"method": "POST", "url": "Observation"}}]});
        let reply = server.client().post("", &put).await.unwrap();
        expect_status(&reply, 422);
    }
);

with_package!(
    hive_server,
    validate_checks_a_bundles_targets_in_the_bundle,
    |server| {
        // A round of inspections: its entries are walked against the hive profiles, so the
        // inspection's subject is found among them.
        let round = |identified: bool| {
            let mut bundle = transaction(identified);
            bundle["type"] = json!("collection");
            bundle["meta"] = json!({"profile": [ROUND]});
            for entry in bundle["entry"].as_array_mut().unwrap() {
                entry.as_object_mut().unwrap().remove("request");
            }
            bundle["entry"][1]["fullUrl"] = json!("urn:uuid:9a0c3e61-5b7d-4f28-8e1a-6d4b2c9f7a15");
            bundle
        };
        let outcome = validate(&server, &round(false)).await;
        let at_subject: Vec<_> = errors(&outcome)
            .into_iter()
            .filter(|(_, _, at)| at == "Bundle.entry[1].resource.subject")
            .collect();
        assert_eq!(at_subject.len(), 1, "{outcome}");
        assert!(at_subject[0].1.contains(ENROLLED), "{outcome}");
        let outcome = validate(&server, &round(true)).await;
        assert!(errors(&outcome).is_empty(), "{outcome}");
    }
);

with_package!(
    hive_server,
    a_batch_refuses_only_the_entry_whose_target_does_not_conform,
    |server| {
        let anonymous = create(&server, &beekeeper(false)).await;
        let enrolled = create(&server, &beekeeper(true)).await;
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": inspection(&format!("Patient/{anonymous}")),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": inspection(&format!("Patient/{enrolled}")),
         "request": {"method": "POST", "url": "Observation"}}]});
        let reply = server.client().post("", &batch).await.unwrap();
        let answer = expect_status(&reply, 200);
        assert_eq!(
            statuses(&answer),
            ["422 Unprocessable Entity", "201 Created"],
            "{answer}"
        );
    }
);

/// A server holding [`hive_profiles`] where every request needs a token.
async fn secured_hives(kind: StoreKind) -> Option<(Secured, TempDir)> {
    let dir = TempDir::new();
    let package = write_package(&dir.0, "hives.example", json!({}), &hive_profiles());
    let secured = Secured::start_with(kind, |s| s.validation.packages = vec![package]).await?;
    Some((secured, dir))
}

async fn a_target_the_client_may_not_read_is_not_checked(s: Secured) {
    s.register("registry", "system/*.cruds", None).await;
    s.register("hive-app", "system/Observation.cruds", None)
        .await;
    let registry = s.token("registry", "system/*.cruds").await;
    let app = s.token("hive-app", "system/Observation.cruds").await;
    let reply = s
        .call(&registry, "POST", "Patient", Some(&beekeeper(false)))
        .await;
    let anonymous = expect_status(&reply, 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = inspection(&format!("Patient/{anonymous}"));
    // Who may read the beekeeper learns that it does not conform.
    let reply = s.call(&registry, "POST", "Observation", Some(&body)).await;
    assert_refused_at(&expect_status(&reply, 422), "Observation.subject");
    // Who may not, learns nothing about it: the same answer as for a missing beekeeper.
    let reply = s
        .call(&app, "POST", "Observation/$validate", Some(&body))
        .await;
    let outcome = expect_status(&reply, 200);
    let missing = inspection("Patient/no-such-beekeeper");
    let reply = s
        .call(&app, "POST", "Observation/$validate", Some(&missing))
        .await;
    let of_missing = expect_status(&reply, 200);
    let text = |o: &Value| {
        issues(o)
            .into_iter()
            .map(|(s, m, at)| {
                (
                    s,
                    m.replace(&anonymous, "X").replace("no-such-beekeeper", "X"),
                    at,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(text(&outcome), text(&of_missing));
    let reply = s.call(&app, "POST", "Observation", Some(&body)).await;
    expect_status(&reply, 201);
}

mod a_target_the_client_may_not_read_is_not_checked {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (s, _dir) = secured_hives(StoreKind::Sqlite).await.unwrap();
        super::a_target_the_client_may_not_read_is_not_checked(s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if let Some((s, _dir)) = secured_hives(StoreKind::Postgres).await {
            super::a_target_the_client_may_not_read_is_not_checked(s).await;
        }
    }
}
