//! The StructureDefinitions, ValueSets, CodeSystems and Questionnaires clients store, as
//! definitions the validator uses (issue 18, decision 0051): read from the store at start and
//! when another server on the database changed one (`server::follow_registry`: all of them,
//! parsed only when their version is new), and after a request wrote or deleted some
//! (`Indexing::definitions_written`: those only). The validator adds them to its
//! built-in and package definitions and swaps the result in whole (`Validator::use_stored`):
//! requests validating meanwhile keep the definitions they began with.

use std::sync::Arc;
use std::time::Instant;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::canonical::{is_shipped, DEFINITION_TYPES};
use crate::search::query::SearchQuery;
use crate::store::{search_all, Store, Version};
use crate::validation::{Rebuilt, StoredEntry, Validator};

/// The stored definition `version` of `rtype` as the validator takes it.
fn entry(rtype: &str, version: &Version) -> StoredEntry {
    StoredEntry {
        key: format!("{rtype}/{}", version.id),
        version: version.version,
        last_updated: version.last_updated,
        text: version.content.clone(),
    }
}

/// Every current stored definition. The ones Signaal ships are left out: they are the
/// server's own, not part of what clients define.
pub async fn load(store: &dyn Store) -> Result<Vec<StoredEntry>, FhirError> {
    let mut stored = Vec::new();
    for rtype in DEFINITION_TYPES {
        let query = SearchQuery {
            rtype: rtype.to_owned(),
            ..Default::default()
        };
        stored.extend(
            search_all(store, query)
                .await?
                .iter()
                .filter(|version| !is_shipped(rtype, &version.id))
                .map(|version| entry(rtype, version)),
        );
    }
    Ok(stored)
}

/// Makes `validation` use every stored definition of `store` (at start, and when another
/// server changed one).
pub async fn apply(store: &dyn Store, validation: &Arc<Validator>) -> Result<(), FhirError> {
    let stored = load(store).await?;
    rebuild(validation, move |v| v.use_stored(stored)).await
}

/// Runs a rebuild on a blocking thread (compiling profiles is not work for a request's
/// thread) and logs what it did.
async fn rebuild(
    validation: &Arc<Validator>,
    how: impl FnOnce(&Validator) -> Rebuilt + Send + 'static,
) -> Result<(), FhirError> {
    let started = Instant::now();
    let validator = validation.clone();
    let rebuilt = tokio::task::spawn_blocking(move || how(&validator))
        .await
        .map_err(|e| FhirError::Internal(format!("rebuilding the definitions: {e}")))?;
    for e in &rebuilt.left_out {
        tracing::warn!(error = %e, "stored StructureDefinition left out of validation");
    }
    if rebuilt.replaced {
        tracing::info!(
            left_out = rebuilt.left_out.len(),
            seconds = started.elapsed().as_secs_f64(),
            "stored definitions rebuilt"
        );
    }
    Ok(())
}

/// Reloads every stored definition (another server changed one: `server::follow_registry`).
pub async fn reload(app: &App) -> Result<(), FhirError> {
    // One at a time: the reload that finishes last started after the last change committed.
    let _one = app.validation.reload.lock().await;
    apply(app.store.as_ref(), &app.validation).await
}

/// Reloads the definitions a request wrote or deleted (`written`: type, id), once it committed.
pub async fn reload_written(app: &App, written: &[(String, String)]) -> Result<(), FhirError> {
    let _one = app.validation.reload.lock().await;
    let mut changed = Vec::with_capacity(written.len());
    for (rtype, id) in written {
        let entry = match app.store.read(rtype, id).await? {
            Some(version) => entry(rtype, &version),
            None => StoredEntry {
                key: format!("{rtype}/{id}"),
                version: 0,
                last_updated: 0,
                text: None,
            },
        };
        changed.push(entry);
    }
    rebuild(&app.validation, move |v| v.use_changed(changed)).await
}
