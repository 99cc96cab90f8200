//! The server's own changes of a Subscription: `requested` → `active` after a handshake, or
//! `error` with the reason in `Subscription.error`, written through the write pipeline like any
//! other version (so clients read and search it, and the outbox sees it).

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::search::query::{Predicate, SearchQuery};
use crate::store::{Method, Tx};
use crate::write::{in_transaction, Indexing};

/// Sets the status (and `error`, removed when `None`) of Subscription `id`, if it still is one
/// of `from` (a client may have changed it meanwhile). Returns whether it wrote.
pub async fn set(
    app: &App,
    id: &str,
    from: &[&str],
    status: &str,
    error: Option<&str>,
) -> Result<bool, FhirError> {
    let indexing = Indexing::new(app.search_params.current());
    let (id, status, error) = (id.to_owned(), status.to_owned(), error.map(str::to_owned));
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    in_transaction(app.store.as_ref(), |tx| {
        let (indexing, id, status, error, from) = (&indexing, &id, &status, &error, &from);
        Box::pin(async move {
            let current = tx.lock_current("Subscription", id).await?;
            let Some(current_row) = current.filter(|c| !c.deleted) else {
                return Ok(false);
            };
            let Some(mut resource) = current_content(tx, id).await? else {
                return Ok(false);
            };
            let now = resource["status"].as_str().unwrap_or_default().to_owned();
            if !from.contains(&now) {
                return Ok(false);
            }
            if now == *status && resource["error"].as_str() == error.as_deref() {
                return Ok(false);
            }
            resource["status"] = Value::String(status.clone());
            match error {
                Some(e) => resource["error"] = Value::String(e.clone()),
                None => {
                    if let Some(o) = resource.as_object_mut() {
                        o.remove("error");
                    }
                }
            }
            crate::write::write(
                tx,
                indexing,
                "Subscription",
                id,
                Some(current_row),
                Method::Put,
                Some(resource),
            )
            .await?;
            Ok(true)
        })
    })
    .await
}

/// The current content of Subscription `id` as this transaction sees it.
async fn current_content(tx: &mut dyn Tx, id: &str) -> Result<Option<Value>, FhirError> {
    let query = SearchQuery {
        rtype: "Subscription".into(),
        filters: vec![vec![Predicate::Id(id.to_owned())]],
        count: 1,
        ..Default::default()
    };
    let hits = tx.search(&query).await?;
    Ok(hits
        .first()
        .and_then(|h| h.version.content.as_deref())
        .and_then(|c| serde_json::from_str(c).ok()))
}
