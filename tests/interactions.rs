//! The RESTful interactions of the FHIR R4 http page, on both stores.

mod common;

use common::expect_status;
use serde_json::json;

fn patient() -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": "Jansen", "given": ["Anna"]}], "gender": "female"})
}

both_stores!(create_assigns_id_version_and_location, |server| {
    let reply = server.client.post("Patient", &patient()).await.unwrap();
    let body = expect_status(&reply, 201);
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert!(reply.header("last-modified").is_some());
    assert_eq!(reply.header("location").unwrap(), format!("{}/Patient/{id}/_history/1", server.base));
});

both_stores!(read_returns_what_was_created, |server| {
    let created = server.client.post("Patient", &patient()).await.unwrap().json();
    let id = created["id"].as_str().unwrap();
    let reply = server.client.get(&format!("Patient/{id}")).await.unwrap();
    let body = expect_status(&reply, 200);
    assert_eq!(body, created);
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
});
