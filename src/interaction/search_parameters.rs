//! SearchParameter resources stored on the server (search page, "Defining search parameters"):
//! checked when written (by the write pipeline, which reports a change of the active ones),
//! loaded into the server's one registry at start and after every change,
//! so an active one takes part in indexing (new writes at once, existing data through
//! `$reindex`) and in search. Deleting one, or changing its status from active, retires it.

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::search::definitions::Registry;
use crate::search::query::{Predicate, SearchQuery, TokenSystem};
use crate::store::{search_all, Store};

/// The official parameters and the active SearchParameter resources in the store.
pub async fn load(store: &dyn Store) -> Result<Registry, FhirError> {
    let query = SearchQuery {
        rtype: "SearchParameter".to_owned(),
        filters: vec![vec![Predicate::Token {
            param: "status".to_owned(),
            system: TokenSystem::Any,
            code: Some("active".to_owned()),
        }]],
        ..Default::default()
    };
    let mut stored = Vec::new();
    for version in search_all(store, query).await? {
        let Some(content) = &version.content else {
            continue;
        };
        // The shipped ones are built into the registry (`signaal-search-parameters.json`).
        if crate::fhir::canonical::is_shipped("SearchParameter", &version.id) {
            continue;
        }
        let resource: Value = serde_json::from_str(content)
            .map_err(|e| FhirError::Internal(format!("stored SearchParameter: {e}")))?;
        stored.push((version.id.clone(), resource));
    }
    Ok(Registry::with_stored(&stored))
}

/// Reloads the server's registry after a request changed its SearchParameters.
pub async fn reload(app: &App) -> Result<(), FhirError> {
    // One at a time: the reload that finishes last started after the last change committed.
    let _one = app.search_params.reload.lock().await;
    let registry = load(app.store.as_ref()).await?;
    app.search_params.replace(registry);
    tracing::info!("search parameters reloaded");
    Ok(())
}
