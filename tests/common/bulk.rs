//! Bulk Data export from a client's side: kick-off, polling to the manifest, and the files
//! read back and checked against their manifest lines.

use std::collections::BTreeMap;

use serde_json::Value;
use signaal::client::{Client, Reply};

use super::expect_status;

pub async fn send(
    client: &Client,
    token: Option<&str>,
    method: &str,
    path: &str,
    prefer: bool,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    if prefer {
        headers.push(("prefer", "respond-async"));
    }
    client.send(method, path, &headers, None).await.unwrap()
}

/// Kicks off an export and polls it to the end: the status URL and the manifest.
pub async fn export(client: &Client, token: Option<&str>, path: &str) -> (String, Value) {
    let kick = send(client, token, "GET", path, true).await;
    expect_status(&kick, 202);
    let status = kick.header("content-location").unwrap().to_owned();
    // Polls quickly at first, then once a second: a whole Synthea sample takes minutes in a
    // debug build on a busy machine.
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(25);
    while started.elapsed() < std::time::Duration::from_secs(900) {
        let poll = send(client, token, "GET", &status, false).await;
        match poll.status {
            202 => {
                assert!(poll.header("x-progress").is_some());
                assert!(poll.header("retry-after").is_some());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(1));
            }
            200 => {
                assert!(poll
                    .header("content-type")
                    .unwrap()
                    .starts_with("application/json"));
                return (status, poll.json());
            }
            other => panic!("status {other}: {}", String::from_utf8_lossy(&poll.body)),
        }
    }
    panic!("the export never finished");
}

/// The resources of every file of a manifest, by type, as `Type/id`, after checking each file
/// against its manifest line.
pub async fn files(
    client: &Client,
    token: Option<&str>,
    manifest: &Value,
) -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for output in manifest["output"].as_array().unwrap() {
        let reply = send(client, token, "GET", output["url"].as_str().unwrap(), false).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("application/fhir+ndjson")
        );
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, output["count"].as_u64().unwrap());
        for line in lines {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], output["type"]);
            assert!(resource["meta"]["versionId"].is_string());
            by_type
                .entry(output["type"].as_str().unwrap().to_owned())
                .or_default()
                .push(format!(
                    "{}/{}",
                    resource["resourceType"].as_str().unwrap(),
                    resource["id"].as_str().unwrap()
                ));
        }
    }
    for ids in by_type.values_mut() {
        ids.sort();
    }
    by_type
}
