//! `$reindex`: `POST [base]/$reindex` (every type) and `POST [base]/[type]/$reindex` recompute
//! the search index of every current resource with the search parameters now in force. Needed
//! after a SearchParameter is added, changed or retired (new writes are indexed with it at
//! once, existing data only by this), and after an upgrade that changes what is indexed (UCUM
//! canonical units of quantities written before).
//!
//! Synchronous: the response comes when all is done, a Parameters with the counts; progress
//! is logged (tracing, `info`) after every batch. Each batch of `BATCH` resources is its own
//! transaction, so the operation holds no lock for long, and an interrupted run leaves every
//! finished batch in place (running it again is harmless). A resource written since its batch
//! was read is left alone: that write indexed it already.

use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::{check_type, retry};
use crate::search::extract::stored_entries;
use crate::search::query::{Cursor, SearchQuery};
use crate::store::SearchHit;

/// Resources per batch (and per transaction).
pub const BATCH: usize = 200;

/// The canonical URL of the OperationDefinition (`conformance/operation-reindex.json`).
pub const DEFINITION: &str = "http://signaal.nl/fhir/OperationDefinition/reindex";

/// `POST [base]/$reindex`.
pub async fn system(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    check_body(request)?;
    run(app, resource_types::all()).await
}

/// `POST [base]/[type]/$reindex`.
pub async fn type_level(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_body(request)?;
    run(app, &[rtype.to_owned()]).await
}

/// The operation has no parameters: the body is empty or a Parameters without any.
fn check_body(request: &FhirRequest) -> Result<(), FhirError> {
    if request.body.is_empty() {
        return Ok(());
    }
    let body = request.json_body()?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::invalid(
            "$reindex takes a Parameters resource or no body",
        ));
    }
    if body.get("parameter").is_some() {
        return Err(FhirError::invalid("$reindex has no parameters"));
    }
    Ok(())
}

#[derive(Default)]
struct Progress {
    total: u64,
    done: u64,
    reindexed: u64,
    skipped: u64,
    batches: u64,
}

async fn run(app: &App, types: &[String]) -> Result<FhirResponse, FhirError> {
    let mut progress = Progress::default();
    for rtype in types {
        progress.total += app.store.count(&all(rtype, None)).await?;
    }
    tracing::info!(total = progress.total, "reindex started");
    for rtype in types {
        let mut after = None;
        loop {
            let mut hits = app.store.search(&all(rtype, after)).await?;
            let more = hits.len() > BATCH;
            hits.truncate(BATCH);
            let Some(last) = hits.last() else { break };
            after = Some(Cursor {
                keys: Vec::new(),
                rid: last.rid,
            });
            let (reindexed, skipped) = retry(|| batch(app, rtype, &hits)).await?;
            progress.reindexed += reindexed;
            progress.skipped += skipped;
            progress.done += hits.len() as u64;
            progress.batches += 1;
            tracing::info!(
                rtype,
                done = progress.done,
                total = progress.total,
                "reindex progress"
            );
            if !more {
                break;
            }
        }
    }
    tracing::info!(
        reindexed = progress.reindexed,
        skipped = progress.skipped,
        "reindex finished"
    );
    let count = |name: &str, n: u64| json!({"name": name, "valueInteger": n.min(i32::MAX as u64)});
    Ok(FhirResponse::ok(json!({
        "resourceType": "Parameters",
        "parameter": [
            count("total", progress.total),
            count("done", progress.done),
            count("reindexed", progress.reindexed),
            count("skipped", progress.skipped),
            count("batches", progress.batches),
        ],
    })))
}

/// Every current resource of a type, in row order, after a cursor: one batch (and one more
/// hit, telling whether another batch follows).
fn all(rtype: &str, after: Option<Cursor>) -> SearchQuery {
    SearchQuery {
        rtype: rtype.to_owned(),
        count: BATCH,
        after,
        ..Default::default()
    }
}

/// Reindexes one batch in one transaction: `(reindexed, skipped)`.
async fn batch(app: &App, rtype: &str, hits: &[SearchHit]) -> Result<(u64, u64), FhirError> {
    let mut tx = app.store.begin().await?;
    let (mut reindexed, mut skipped) = (0, 0);
    for hit in hits {
        let current = tx.lock_current(rtype, &hit.version.id).await?;
        let content = match (&current, &hit.version.content) {
            (Some(c), Some(content)) if c.version == hit.version.version && !c.deleted => content,
            _ => {
                skipped += 1;
                continue;
            }
        };
        let resource: Value = serde_json::from_str(content)
            .map_err(|e| FhirError::Internal(format!("stored {rtype}/{}: {e}", hit.version.id)))?;
        tx.reindex(hit.rid, &stored_entries(&resource, rtype))
            .await?;
        reindexed += 1;
    }
    tx.commit().await?;
    Ok((reindexed, skipped))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_definition_url_is_that_of_the_operation_definition() {
        let definition: serde_json::Value =
            serde_json::from_str(include_str!("../../conformance/operation-reindex.json")).unwrap();
        assert_eq!(definition["url"], super::DEFINITION);
        assert_eq!(definition["code"], "reindex");
    }
}
