//! The ingest phases: what PGO apps and portals do all day. Transaction Bundles of 1, 10 and
//! 100 blood pressure Observations (each entry a `urn:uuid` fullUrl, as apps send them) from
//! concurrent clients, and, given a folder of Synthea transaction Bundles, the time to load
//! them all. Reported in resources per second as well as requests per second.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::blood_pressure;
use super::load::success;
use super::phase::{drive, Budget, PhaseReport};
use crate::client::Client;

/// Posts a batch or transaction Bundle to the base; any 2xx is a success.
pub(super) async fn post_bundle(client: &Client, body: Vec<u8>) -> Result<(), String> {
    let reply = client
        .send("POST", "", &[], Some(body))
        .await
        .map_err(|e| e.to_string())?;
    success(&reply)
}

/// The `type` of the Bundles of an ingest phase: a transaction is all or nothing in one
/// database transaction; a batch's entries are independent (on SQLite acknowledged together
/// in one group commit, decision 0042).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Transaction,
    Batch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Transaction => "transaction",
            Kind::Batch => "batch",
        }
    }
}

/// The name of the phase of `kind` Bundles of `size` entries (`transaction x100`).
pub fn phase_name(kind: Kind, size: usize) -> String {
    format!("{} x{size}", kind.name())
}

pub const SYNTHEA: &str = "Synthea load";

/// One phase per size: each request a `kind` Bundle of `size` Observations.
pub async fn bundles(
    base: &str,
    clients: usize,
    budget: Budget,
    kind: Kind,
    sizes: &[usize],
) -> Result<Vec<PhaseReport>, String> {
    let mut reports = Vec::new();
    for &size in sizes {
        let name = phase_name(kind, size);
        let mut report = drive(&name, clients, budget, |_| {
            let client = Client::new(base);
            move |seq| {
                let client = client.clone();
                let body = bundle(kind, seq, size).to_string().into_bytes();
                async move { post_bundle(&client, body).await }
            }
        })
        .await?;
        report.resources *= size as u64;
        reports.push(report);
    }
    Ok(reports)
}

/// A `kind` Bundle of `size` blood pressure panels, numbered from `seq * size`.
fn bundle(kind: Kind, seq: u64, size: usize) -> Value {
    let entries: Vec<Value> = (0..size as u64)
        .map(|i| {
            let n = seq * size as u64 + i;
            json!({
                "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                "resource": blood_pressure(n),
                "request": {"method": "POST", "url": "Observation"},
            })
        })
        .collect();
    json!({"resourceType": "Bundle", "type": kind.name(), "entry": entries})
}

/// Posts every `*.json` transaction Bundle in `dir` once, `clients` at a time, and reports
/// the wall time for all of them. Every entry must be answered 2xx.
pub async fn synthea(base: &str, clients: usize, dir: &Path) -> Result<PhaseReport, String> {
    let started = Instant::now();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("--synthea-dir {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("--synthea-dir {}: no .json files", dir.display()));
    }
    let mut bundles = Vec::with_capacity(files.len());
    let mut resources = 0u64;
    for path in &files {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        resources += json["entry"].as_array().map_or(0, |e| e.len() as u64);
        bundles.push(bytes);
    }
    eprintln!(
        "signaal bench: read {} Bundles ({resources} resources) in {:.1} s",
        bundles.len(),
        started.elapsed().as_secs_f64()
    );
    let bundles = Arc::new(bundles);
    let count = bundles.len() as u64;
    let mut report = drive(SYNTHEA, clients, Budget::Requests(count), |_| {
        let client = Client::new(base);
        let bundles = bundles.clone();
        move |seq| {
            let client = client.clone();
            let body = bundles[seq as usize].clone();
            async move { post_bundle(&client, body).await }
        }
    })
    .await?;
    if report.errors > 0 {
        return Err(format!(
            "{SYNTHEA}: {} of {count} Bundles were refused",
            report.errors
        ));
    }
    report.resources = resources;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_entries_are_valid_and_distinct() {
        let bundle = bundle(Kind::Transaction, 3, 10);
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 10);
        assert_ne!(entries[0]["fullUrl"], entries[1]["fullUrl"]);
        crate::fhir::validate::validate(&entries[0]["resource"], "Observation").unwrap();
    }

    #[test]
    fn a_batch_is_the_same_entries_typed_batch() {
        let batch = bundle(Kind::Batch, 3, 2);
        assert_eq!(batch["type"], "batch");
        assert_eq!(batch["entry"].as_array().unwrap().len(), 2);
        assert_eq!(phase_name(Kind::Batch, 100), "batch x100");
    }
}
