//! The raw store insert rate: the benchmark's resources written straight into a store, one
//! resource per transaction, with the same concurrency as the HTTP phases; and the raw store's
//! limit beside the transaction phases: transactions of N resources each (`insert xN`).
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
use crate::store::{self, Method, Store};
use crate::write::{self, in_transaction, Indexing};

pub const INSERT: &str = "insert (raw store)";

/// The name of the raw phase of `size` resources per transaction.
pub fn batch_phase(size: usize) -> String {
    if size == 1 {
        INSERT.to_owned()
    } else {
        format!("insert x{size} (raw store)")
    }
}

/// One phase per size: transactions of `size` resources written straight into the store.
pub async fn run(
    database: &str,
    clients: usize,
    budget: Budget,
    sizes: &[usize],
) -> Result<Vec<PhaseReport>, String> {
    let store = store::open(database)
        .await
        .map_err(|e| format!("cannot open the raw database: {e}"))?;
    // Indexed with the search parameters the database holds, as the server would.
    let registry = search_parameters::load(store.as_ref())
        .await
        .map_err(|e| format!("cannot read the raw database's search parameters: {e}"))?;
    let indexing = Arc::new(Indexing::new(Arc::new(registry)));
    let mut reports = Vec::new();
    for &size in sizes {
        let report = batches(store.clone(), indexing.clone(), clients, budget, size).await;
        match report {
            Ok(report) => reports.push(report),
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        }
    }
    store.close().await;
    Ok(reports)
}

/// Transactions of `size` blood pressure panels, each written through [`write::write`].
async fn batches(
    store: Arc<dyn Store>,
    indexing: Arc<Indexing>,
    clients: usize,
    budget: Budget,
    size: usize,
) -> Result<PhaseReport, String> {
    let mut report = drive(&batch_phase(size), clients, budget, |_| {
        let store = store.clone();
        let indexing = indexing.clone();
        move |seq| {
            let store = store.clone();
            let indexing = indexing.clone();
            let resources: Vec<(String, serde_json::Value)> = (0..size as u64)
                .map(|i| (new_id(), blood_pressure(seq * size as u64 + i)))
                .collect();
            async move {
                let (resources, indexing) = (&resources, &*indexing);
                in_transaction(store.as_ref(), |tx| {
                    Box::pin(async move {
                        for (id, resource) in resources {
                            write::write(
                                tx,
                                indexing,
                                "Observation",
                                id,
                                None,
                                Method::Post,
                                Some(resource.clone()),
                            )
                            .await?;
                        }
                        Ok(())
                    })
                })
                .await
                .map_err(|e| e.to_string())
            }
        }
    })
    .await?;
    report.resources *= size as u64;
    Ok(report)
}
