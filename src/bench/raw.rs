//! The raw store insert rate: the benchmark's resources written straight into a store, one
//! resource per transaction, with the same concurrency as the HTTP phases.
//!
//! Each insert goes through [`version::write`], the same function the create interaction ends
//! with, so index extraction and serialisation are counted here too. What is left out is
//! HTTP, parsing the request body, validation and building the response: the difference
//! between this rate and the HTTP create rate.

use super::blood_pressure;
use super::phase::{drive, Budget, PhaseReport};
use crate::fhir::id::new_id;
use crate::interaction::version;
use crate::store::{self, Method};

pub const INSERT: &str = "insert (raw store)";

pub async fn run(database: &str, clients: usize, budget: Budget) -> Result<PhaseReport, String> {
    let store = store::open(database)
        .await
        .map_err(|e| format!("cannot open the raw database: {e}"))?;
    let report = drive(INSERT, clients, budget, |_| {
        let store = store.clone();
        move |seq| {
            let store = store.clone();
            let resource = blood_pressure(seq);
            let id = new_id();
            async move {
                let mut tx = store.begin().await.map_err(|e| e.to_string())?;
                version::write(
                    &mut *tx,
                    "Observation",
                    &id,
                    None,
                    Method::Post,
                    Some(resource),
                )
                .await
                .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        }
    })
    .await;
    store.close().await;
    report
}
