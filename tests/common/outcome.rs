//! Reading the OperationOutcomes of validation: its errors, and `$validate` through HTTP.

use serde_json::Value;

use super::{expect_status, Api, TestServer};

/// The outcome's errors, each as "diagnostics @ expression".
pub fn errors(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| {
            format!(
                "{} @ {}",
                i["diagnostics"].as_str().unwrap_or(""),
                i["expression"][0].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// `POST [type]/$validate` of `resource`: its OperationOutcome (the operation answers 200).
pub async fn validate(server: &TestServer, resource: &Value) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap();
    let reply = server
        .client()
        .post(&format!("{rtype}/$validate"), resource)
        .await
        .unwrap();
    expect_status(&reply, 200)
}
