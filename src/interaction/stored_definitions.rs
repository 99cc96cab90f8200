//! The StructureDefinitions, ValueSets, CodeSystems and Questionnaires clients store, as
//! definitions the validator uses (issue 18, decision 0051): read from the store at start,
//! after a request wrote or deleted one (`Indexing::definitions_changed`), and when another
//! server on the database did (`server::follow_registry`). The validator adds them to its
//! built-in and package definitions and swaps the result in whole (`Validator::use_stored`):
//! requests validating meanwhile keep the definitions they began with.

use std::time::Instant;

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::canonical::{is_shipped, DEFINITION_TYPES};
use crate::search::query::{Cursor, SearchQuery};
use crate::store::Store;
use crate::validation::Validator;

/// Stored resources read per query.
const PAGE: usize = 500;

/// The current stored definitions, each with its key (`type/id/version`), oldest first (of two
/// with one url, the validator uses the one written last). The ones Signaal ships are left
/// out: they are the server's own, not part of what clients define.
pub async fn load(store: &dyn Store) -> Result<Vec<(String, Value)>, FhirError> {
    let mut stored = Vec::new();
    for rtype in DEFINITION_TYPES {
        let mut after = None;
        loop {
            let query = SearchQuery {
                rtype: rtype.to_owned(),
                count: PAGE,
                after,
                ..Default::default()
            };
            let hits = store.search(&query).await?;
            for hit in hits.iter().take(PAGE) {
                let version = &hit.version;
                let Some(content) = &version.content else {
                    continue;
                };
                if is_shipped(rtype, &version.id) {
                    continue;
                }
                let resource: Value = serde_json::from_str(content)
                    .map_err(|e| FhirError::Internal(format!("stored {rtype}: {e}")))?;
                let key = format!("{rtype}/{}/{}", version.id, version.version);
                stored.push((version.last_updated, key, resource));
            }
            match hits.get(PAGE - 1) {
                Some(last) if hits.len() > PAGE => {
                    after = Some(Cursor {
                        keys: Vec::new(),
                        rid: last.rid,
                    })
                }
                _ => break,
            }
        }
    }
    stored.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(stored.into_iter().map(|(_, k, r)| (k, r)).collect())
}

/// Makes `validation` use the stored definitions of `store` (at start, and on every reload).
pub async fn apply(
    store: &dyn Store,
    validation: &std::sync::Arc<Validator>,
) -> Result<(), FhirError> {
    let stored = load(store).await?;
    let count = stored.len();
    let started = Instant::now();
    let validation = validation.clone();
    // Compiling profiles is work for a blocking thread, not for the request's.
    let rebuilt = tokio::task::spawn_blocking(move || validation.use_stored(stored))
        .await
        .map_err(|e| FhirError::Internal(format!("rebuilding the definitions: {e}")))?;
    for e in &rebuilt.left_out {
        tracing::warn!(error = %e, "stored StructureDefinition left out of validation");
    }
    if rebuilt.replaced {
        tracing::info!(
            stored = count,
            left_out = rebuilt.left_out.len(),
            seconds = started.elapsed().as_secs_f64(),
            "stored definitions loaded"
        );
    }
    Ok(())
}

/// Reloads the server's stored definitions after a request changed them.
pub async fn reload(app: &App) -> Result<(), FhirError> {
    // One at a time: the reload that finishes last started after the last change committed.
    let _one = app.validation.reload.lock().await;
    apply(app.store.as_ref(), &app.validation).await
}
