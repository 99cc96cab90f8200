//! The scoring phase: how long after a measurement is committed its Flag is visible to a
//! search. Each operation posts a PGO-style transaction (a heart-failure patient, the diagnosis
//! and two weights 2.5 kg apart within a day) and then searches `Flag?patient=…&status=active`
//! every 5 ms until the weight-gain Flag is there. The latency reported is from the
//! transaction's response (the commit) to the first search that finds the Flag. One Flag is
//! measured at a time, under a steady background load of `rate` blood pressure creates per
//! second (`--flag-write-rate`, 200 by default): the delay a clinician sees on a busy server,
//! not the delay of a server saturated by the measurement itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::load::success;
use super::phase::{drive, Budget, Latency, PhaseReport};
use crate::client::Client;

pub const FLAG_DELAY: &str = "commit→Flag";

/// Gives up on one Flag after this long (counted as an error).
const GIVE_UP: Duration = Duration::from_secs(20);

pub async fn run(base: &str, rate: u32, budget: Budget) -> Result<PhaseReport, String> {
    let delays: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (background, written) = steady_writes(base, rate);
    let started = Instant::now();
    let report = drive(FLAG_DELAY, 1, budget, |_| {
        let client = Client::new(base);
        let delays = delays.clone();
        move |_| {
            let client = client.clone();
            let delays = delays.clone();
            async move {
                let (patient, committed) = post_weight_gain(&client).await?;
                let search = format!("Flag?patient=Patient/{patient}&status=active&_summary=count");
                loop {
                    let reply = client.get(&search).await.map_err(|e| e.to_string())?;
                    success(&reply)?;
                    if reply.json()["total"].as_u64().unwrap_or(0) > 0 {
                        break;
                    }
                    if committed.elapsed() > GIVE_UP {
                        return Err(format!("no Flag {} s after the commit", GIVE_UP.as_secs()));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if let Ok(mut d) = delays.lock() {
                    d.push(committed.elapsed().as_micros() as u64);
                }
                Ok(())
            }
        }
    })
    .await;
    background.abort();
    let mut report = report?;
    let achieved = written.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    report.name = format!("{FLAG_DELAY} @{achieved:.0} w/s");
    report.latency = Latency::of(delays.lock().map(|d| d.clone()).unwrap_or_default());
    report.resources *= 4;
    Ok(report)
}

/// The most background writes in flight at once (a slow server lowers the achieved rate
/// rather than piling up requests).
const IN_FLIGHT: usize = 64;

/// Creates blood pressure Observations at `rate` per second until aborted; counts the ones
/// that succeeded.
fn steady_writes(base: &str, rate: u32) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let client = Client::new(base);
    let task = tokio::spawn(async move {
        if rate == 0 {
            return;
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for seq in 0u64.. {
            tick.tick().await;
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            let counter = counter.clone();
            let body = super::blood_pressure(seq).to_string().into_bytes();
            tokio::spawn(async move {
                let reply = client.send("POST", "Observation", &[], Some(body)).await;
                if reply.is_ok_and(|r| success(&r).is_ok()) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                drop(slot);
            });
        }
    });
    (task, written)
}

/// Posts a [`weight_gain`] upload: the new Patient's id, and when its commit was answered.
pub(super) async fn post_weight_gain(client: &Client) -> Result<(String, Instant), String> {
    let body = weight_gain().to_string().into_bytes();
    let reply = client
        .send("POST", "", &[], Some(body))
        .await
        .map_err(|e| e.to_string())?;
    success(&reply)?;
    let committed = Instant::now();
    let location = reply.json()["entry"][0]["response"]["location"]
        .as_str()
        .map(str::to_owned)
        .ok_or("the transaction response has no Patient location")?;
    let patient = location
        .split('/')
        .rev()
        .nth(2)
        .ok_or("unexpected Patient location")?
        .to_owned();
    Ok((patient, committed))
}

/// A PGO upload that raises a weight-gain Flag: new patient, heart failure, +2.5 kg in 20 h.
pub(super) fn weight_gain() -> Value {
    let patient = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let now = chrono::Utc::now();
    let at = |hours: i64| {
        (now - chrono::Duration::hours(hours)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let weight = |value: f64, hours: i64| {
        json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
            "subject": {"reference": patient},
            "effectiveDateTime": at(hours),
            "valueQuantity": {"value": value, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    };
    let entry = |resource: Value, full_url: String| {
        let rtype = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rtype}})
    };
    let urn = || format!("urn:uuid:{}", uuid::Uuid::new_v4());
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(json!({"resourceType": "Patient", "name": [{"family": "Bench"}]}), patient.clone()),
        entry(json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "88805009"}]},
            "subject": {"reference": patient}}), urn()),
        entry(weight(80.0, 21), urn()),
        entry(weight(82.5, 1), urn()),
    ]})
}
