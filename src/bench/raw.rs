//! The raw store insert rate: the benchmark's resources written straight into a store, one
//! resource per transaction, with the same concurrency as the HTTP phases.
//!
//! Each insert goes through [`write::write`], the same function the create interaction ends
//! with, so index extraction and serialisation are counted here too. What is left out is
//! HTTP, parsing the request body, validation and building the response: the difference
//! between this rate and the HTTP create rate.

use std::sync::Arc;

use super::blood_pressure;
use super::phase::{drive, Budget, PhaseReport};
use crate::fhir::id::new_id;
use crate::interaction::search_parameters;
use crate::store::{self, Method};
use crate::write::{self, in_transaction, Indexing};

pub const INSERT: &str = "insert (raw store)";

pub async fn run(database: &str, clients: usize, budget: Budget) -> Result<PhaseReport, String> {
    let store = store::open(database)
        .await
        .map_err(|e| format!("cannot open the raw database: {e}"))?;
    // Indexed with the search parameters the database holds, as the server would.
    let registry = search_parameters::load(store.as_ref())
        .await
        .map_err(|e| format!("cannot read the raw database's search parameters: {e}"))?;
    let indexing = Arc::new(Indexing::new(Arc::new(registry)));
    let report = drive(INSERT, clients, budget, |_| {
        let store = store.clone();
        let indexing = indexing.clone();
        move |seq| {
            let store = store.clone();
            let indexing = indexing.clone();
            let resource = blood_pressure(seq);
            let id = new_id();
            async move {
                let (id, resource, indexing) = (&id, &resource, &*indexing);
                in_transaction(store.as_ref(), |tx| {
                    Box::pin(write::write(
                        tx,
                        indexing,
                        "Observation",
                        id,
                        None,
                        Method::Post,
                        Some(resource.clone()),
                    ))
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            }
        }
    })
    .await;
    store.close().await;
    report
}
