//! JSON Patch: HL7's official cases (fhir-test-cases `r4/patch/json-patch-tests.json`) against
//! `signaal::fhir::json_patch`, and the patch interaction over HTTP with JSON Patch and
//! FHIRPath Patch, on both stores.

mod common;

use std::path::PathBuf;

use common::{create, expect_status, patient, TestServer};
use serde_json::{json, Value};
use signaal::fhir::json_patch::{apply, json_equal};

fn fixtures() -> Option<PathBuf> {
    let base = std::env::var("FHIR_TEST_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-test-cases")
        });
    let file = base.join("r4/patch/json-patch-tests.json");
    if file.exists() {
        return Some(file);
    }
    if std::env::var("SIGNAAL_REQUIRE_FIXTURES").as_deref() == Ok("1") {
        panic!(
            "SIGNAAL_REQUIRE_FIXTURES=1 but {} is missing",
            file.display()
        );
    }
    eprintln!(
        "skipping the official JSON Patch cases: {} not found. Clone HL7's fhir-test-cases \
         (https://github.com/FHIR/fhir-test-cases, Apache-2.0) and set FHIR_TEST_CASES to it.",
        file.display()
    );
    None
}

#[test]
fn official_json_patch_cases() {
    let Some(file) = fixtures() else { return };
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(cases.len(), 16);
    for case in &cases {
        let comment = case["comment"].as_str().unwrap_or("?");
        let mut doc = case["doc"].clone();
        let result = apply(&mut doc, &case["patch"]);
        if let Some(expected) = case.get("expected") {
            result.unwrap_or_else(|e| panic!("{comment}: {e}"));
            assert!(
                json_equal(&doc, expected),
                "{comment}: got {doc}, expected {expected}"
            );
        } else {
            assert!(result.is_err(), "{comment}: expected an error, got {doc}");
            assert_eq!(
                doc, case["doc"],
                "{comment}: a failed patch changes nothing"
            );
        }
    }
}

// ---- HTTP -----------------------------------------------------------------------------------

const JSON_PATCH: &str = "application/json-patch+json";

/// The Patient the patches apply to: Anna Jansen, MRN p1.
fn anna_jansen() -> Value {
    patient()
        .identifier("http://example.org/mrn", "p1")
        .family("Jansen")
        .given("Anna")
        .set("gender", "female")
        .json()
}

async fn patch(
    server: &TestServer,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> signaal::client::Reply {
    let mut all = vec![("content-type", content_type)];
    all.extend_from_slice(headers);
    server
        .client
        .send("PATCH", path, &all, Some(serde_json::to_vec(body).unwrap()))
        .await
        .unwrap()
}

fn fhirpath_op(parts: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]})
}

both_stores!(json_patch_updates_to_version_2, |server| {
    let id = create(&server, &anna_jansen()).await;
    let reply = patch(
        &server,
        &format!("Patient/{id}"),
        JSON_PATCH,
        &[],
        &json!([{"op": "test", "path": "/gender", "value": "female"},
                {"op": "replace", "path": "/gender", "value": "other"},
                {"op": "add", "path": "/name/0/given/-", "value": "Maria"}]),
    )
    .await;
    let body = expect_status(&reply, 200);
    assert_eq!(body["meta"]["versionId"], "2");
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    assert!(reply.header("last-modified").is_some());
    assert_eq!(body["gender"], "other");
    assert_eq!(body["name"][0]["given"], json!(["Anna", "Maria"]));
    let read = expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    assert_eq!(read, body);
});

both_stores!(fhirpath_patch_updates_to_version_2, |server| {
    let id = create(&server, &anna_jansen()).await;
    let reply = patch(
        &server,
        &format!("Patient/{id}"),
        "application/fhir+json",
        &[("prefer", "return=minimal")],
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [{"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.gender"}, {"name": "value", "valueCode": "male"}]},
            {"name": "operation", "part": [{"name": "type", "valueCode": "add"},
                {"name": "path", "valueString": "Patient"}, {"name": "name", "valueString": "birthDate"},
                {"name": "value", "valueDate": "1980-02-03"}]},
            {"name": "operation", "part": [{"name": "type", "valueCode": "insert"},
                {"name": "path", "valueString": "Patient.identifier"}, {"name": "index", "valueInteger": 0},
                {"name": "value", "valueIdentifier": {"value": "x"}}]}]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty(), "Prefer: return=minimal");
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    let read = expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    assert_eq!(read["gender"], "male");
    assert_eq!(read["birthDate"], "1980-02-03");
    assert_eq!(read["identifier"][0]["value"], "x");
    assert_eq!(read["identifier"][1]["value"], "p1");
    assert_eq!(read["meta"]["versionId"], "2");
});

both_stores!(if_match_mismatch_is_412_and_match_writes, |server| {
    let id = create(&server, &anna_jansen()).await;
    let body = json!([{"op": "replace", "path": "/gender", "value": "male"}]);
    let reply = patch(
        &server,
        &format!("Patient/{id}"),
        JSON_PATCH,
        &[("if-match", "W/\"3\"")],
        &body,
    )
    .await;
    expect_status(&reply, 412);
    let reply = patch(
        &server,
        &format!("Patient/{id}"),
        JSON_PATCH,
        &[("if-match", "W/\"1\"")],
        &body,
    )
    .await;
    assert_eq!(expect_status(&reply, 200)["meta"]["versionId"], "2");
});

both_stores!(invalid_results_and_failed_patches_write_nothing, |server| {
    let id = create(&server, &anna_jansen()).await;
    let path = format!("Patient/{id}");
    // The result breaks the schema: 400.
    let reply = patch(
        &server,
        &path,
        JSON_PATCH,
        &[],
        &json!([{"op": "add", "path": "/colour", "value": "red"}]),
    )
    .await;
    expect_status(&reply, 400);
    let reply = patch(
        &server,
        &path,
        JSON_PATCH,
        &[],
        &json!([{"op": "replace", "path": "/gender", "value": "nonsense"}]),
    )
    .await;
    expect_status(&reply, 400);
    // A failed test: 422. A missing target: 422. A malformed patch: 400.
    let reply = patch(
        &server,
        &path,
        JSON_PATCH,
        &[],
        &json!([{"op": "test", "path": "/gender", "value": "male"}]),
    )
    .await;
    expect_status(&reply, 422);
    let reply = patch(
        &server,
        &path,
        JSON_PATCH,
        &[],
        &json!([{"op": "remove", "path": "/birthDate"}]),
    )
    .await;
    expect_status(&reply, 422);
    let reply = patch(&server, &path, JSON_PATCH, &[], &json!({"op": "remove"})).await;
    expect_status(&reply, 400);
    // Changing the id: refused.
    let reply = patch(
        &server,
        &path,
        JSON_PATCH,
        &[],
        &json!([{"op": "replace", "path": "/id", "value": "other"}]),
    )
    .await;
    expect_status(&reply, 422);
    // FHIRPath Patch: replace on two nodes, unknown type.
    let reply = patch(&server, &path, "application/fhir+json", &[], &fhirpath_op(json!([
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.name.given | Patient.gender"},
        {"name": "value", "valueString": "x"}]))).await;
    expect_status(&reply, 422);
    let reply = patch(
        &server,
        &path,
        "application/fhir+json",
        &[],
        &fhirpath_op(json!([
        {"name": "type", "valueCode": "frobnicate"}, {"name": "path", "valueString": "Patient"}])),
    )
    .await;
    expect_status(&reply, 400);
    let read = expect_status(&server.client.get(&path).await.unwrap(), 200);
    assert_eq!(read["meta"]["versionId"], "1", "nothing was written");
    let history = expect_status(
        &server
            .client
            .get(&format!("{path}/_history"))
            .await
            .unwrap(),
        200,
    );
    assert_eq!(history["entry"].as_array().unwrap().len(), 1);
});

both_stores!(other_media_types_are_415, |server| {
    let id = create(&server, &anna_jansen()).await;
    let reply = patch(
        &server,
        &format!("Patient/{id}"),
        "text/plain",
        &[],
        &json!([]),
    )
    .await;
    expect_status(&reply, 415);
    let reply = patch(
        &server,
        &format!("Patient/{id}"),
        "application/merge-patch+json",
        &[],
        &json!({}),
    )
    .await;
    expect_status(&reply, 415);
});

both_stores!(unknown_is_404_and_deleted_is_410, |server| {
    let body = json!([{"op": "replace", "path": "/gender", "value": "male"}]);
    expect_status(
        &patch(&server, "Patient/nope", JSON_PATCH, &[], &body).await,
        404,
    );
    let id = create(&server, &anna_jansen()).await;
    expect_status(
        &server
            .client
            .delete(&format!("Patient/{id}"))
            .await
            .unwrap(),
        204,
    );
    expect_status(
        &patch(&server, &format!("Patient/{id}"), JSON_PATCH, &[], &body).await,
        410,
    );
    expect_status(
        &patch(&server, "Nonsense/1", JSON_PATCH, &[], &body).await,
        404,
    );
});

both_stores!(conditional_patch, |server| {
    let id = create(&server, &anna_jansen()).await;
    let body = json!([{"op": "replace", "path": "/gender", "value": "male"}]);
    let reply = patch(
        &server,
        "Patient?identifier=http://example.org/mrn|p1",
        JSON_PATCH,
        &[],
        &body,
    )
    .await;
    let patched = expect_status(&reply, 200);
    assert_eq!(patched["id"], id.as_str());
    assert_eq!(patched["meta"]["versionId"], "2");
    let reply = patch(
        &server,
        "Patient?identifier=http://example.org/mrn|none",
        JSON_PATCH,
        &[],
        &body,
    )
    .await;
    expect_status(&reply, 404);
    create(&server, &anna_jansen()).await;
    let reply = patch(
        &server,
        "Patient?identifier=http://example.org/mrn|p1",
        JSON_PATCH,
        &[],
        &body,
    )
    .await;
    expect_status(&reply, 412);
});

both_stores!(capabilities_list_patch, |server| {
    let cs = expect_status(&server.client.get("metadata").await.unwrap(), 200);
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    assert!(patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["code"] == "patch"));
});

both_stores!(
    json_patch_that_would_explode_the_resource_is_refused,
    |server| {
        let created = server
            .client
            .post(
                "Patient",
                &serde_json::json!({"resourceType": "Patient", "active": true}),
            )
            .await
            .unwrap()
            .json();
        let id = created["id"].as_str().unwrap();
        let bomb: Vec<serde_json::Value> = (0..40)
            .map(|i| serde_json::json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
            .collect();
        let reply = server
            .client
            .send(
                "PATCH",
                &format!("Patient/{id}"),
                &[("content-type", "application/json-patch+json")],
                Some(serde_json::Value::Array(bomb).to_string().into_bytes()),
            )
            .await
            .unwrap();
        assert!(
            reply.status == 422 || reply.status == 400,
            "{}",
            reply.status
        );
        assert_eq!(
            server
                .client
                .get(&format!("Patient/{id}"))
                .await
                .unwrap()
                .json()["meta"]["versionId"],
            "1"
        );
    }
);
