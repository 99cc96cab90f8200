//! The `$import` phase: bulk import of NDJSON blood pressure panels over HTTP, one job at a
//! time (a server runs one Bulk Data job at a time). Each operation is one job: the kick-off
//! (`POST [base]/$import`, the NDJSON as the body, `Prefer: respond-async`), then polling its
//! status URL until the job is done; it is timed from the kick-off to the finished manifest,
//! and counts as `lines` resources. A job that reports failed lines is an error.

use std::time::Duration;

use serde_json::Value;

use super::blood_pressure;
use super::load::success;
use super::phase::{drive, Budget, PhaseReport};
use crate::client::Client;

/// The name of the `$import` phase of `lines` lines a job.
pub fn phase(lines: usize) -> String {
    format!("$import x{lines}")
}

/// How long to wait between polls of a job's status (shorter than the server's `Retry-After`:
/// the phase measures the job, not the advice).
const POLL: Duration = Duration::from_millis(20);

/// One client running `$import` jobs of `lines` blood pressure panels each.
pub async fn run(base: &str, budget: Budget, lines: usize) -> Result<PhaseReport, String> {
    let name = phase(lines);
    let mut report = drive(&name, 1, budget, |_| {
        let client = Client::new(base);
        move |seq| {
            let client = client.clone();
            let body = ndjson(seq, lines);
            async move { import(&client, body).await }
        }
    })
    .await?;
    report.resources *= lines as u64;
    Ok(report)
}

/// `lines` blood pressure panels as NDJSON, each with an id of its own (an import keeps ids).
fn ndjson(seq: u64, lines: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..lines as u64 {
        let n = seq * lines as u64 + i;
        let mut resource = blood_pressure(n);
        resource["id"] = Value::String(format!("bench-import-{seq}-{i}-{}", uuid::Uuid::new_v4()));
        body.extend_from_slice(resource.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

/// Kicks off one job and waits for its manifest.
async fn import(client: &Client, body: Vec<u8>) -> Result<(), String> {
    let reply = client
        .send(
            "POST",
            "$import",
            &[
                ("content-type", "application/fhir+ndjson"),
                ("prefer", "respond-async"),
            ],
            Some(body),
        )
        .await
        .map_err(|e| e.to_string())?;
    success(&reply)?;
    let status = reply
        .header("content-location")
        .ok_or("the $import kick-off gave no Content-Location")?
        .to_owned();
    loop {
        let reply = client.get(&status).await.map_err(|e| e.to_string())?;
        match reply.status {
            202 => tokio::time::sleep(POLL).await,
            200 => {
                let manifest = reply.json();
                let errors = manifest["error"].as_array().map_or(0, Vec::len);
                return if errors == 0 {
                    Ok(())
                } else {
                    Err(format!("the $import job reported failed lines: {manifest}"))
                };
            }
            _ => return success(&reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_a_valid_observation_with_an_id_of_its_own() {
        let body = ndjson(2, 3);
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_ne!(lines[0]["id"], lines[1]["id"]);
        crate::fhir::validate::validate(&lines[0], "Observation").unwrap();
    }
}
