//! `$reindex`: `POST [base]/$reindex` (every type) and `POST [base]/[type]/$reindex` recompute
//! the search index of every current resource with the search parameters now in force. Needed
//! after a SearchParameter is added, changed or retired (new writes are indexed with it at
//! once, existing data only by this), and after an upgrade that changes what is indexed (UCUM
//! canonical units of quantities written before).
//!
//! Synchronous by default: the response comes when all is done, a Parameters with the counts.
//! With `Prefer: respond-async` (R4 async page) it answers 202 at once and runs as a job of
//! `async_job`, polled at its `Content-Location` (progress in `X-Progress`, then the same
//! Parameters) and cancelled by `DELETE` there. Either way the run is the server's: the
//! client's right to reindex (and to poll or cancel) is checked up front, and then every type
//! is read and indexed whatever the client's search scopes reach. One reindex runs at a time,
//! synchronous or not: another gets 409. Progress is logged (tracing, `info`) after every
//! batch. Each batch of `BATCH` resources is its own transaction, so the operation holds no
//! lock for long, and an interrupted or cancelled run leaves every finished batch in place
//! (running it again is harmless). A resource written since its batch was read is left
//! alone: that write indexed it already.

use serde_json::{json, Value};

use crate::app::App;
use crate::auth::Access;
use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::http::negotiate::prefer_async;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::async_job::STATUS_PATH;
use crate::interaction::check_type;
use crate::jobs::Progress;
use crate::search::extract::stored_entries;
use crate::search::query::{Cursor, SearchQuery};
use crate::store::{SearchHit, Tx};
use crate::write::in_transaction;

/// Resources per batch (and per transaction).
pub const BATCH: usize = 200;

/// The canonical URL of the OperationDefinition (`conformance/operation-reindex.json`).
pub const DEFINITION: &str = "https://signaal.dev/fhir/OperationDefinition/reindex";

/// What the CapabilityStatement says of the operation beyond its definition.
pub const DOCUMENTATION: &str = "Synchronous, or asynchronous with `Prefer: respond-async` \
    (202 Accepted; poll the `Content-Location`, `[base]/_async/[id]`; `DELETE` there cancels). \
    One reindex at a time (409 otherwise).";

/// `POST [base]/$reindex`.
pub async fn system(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    check_body(request)?;
    start(app, request, resource_types::all().to_vec()).await
}

/// `POST [base]/[type]/$reindex`.
pub async fn type_level(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_body(request)?;
    start(app, request, vec![rtype.to_owned()]).await
}

/// Runs the operation now, or as a job when the client prefers an asynchronous answer.
async fn start(
    app: &App,
    request: &FhirRequest,
    types: Vec<String>,
) -> Result<FhirResponse, FhirError> {
    let asynchronous = prefer_async(&request.headers)?;
    app.store.may_reindex().await?;
    // Checked: from here on the server reads and indexes every type, whatever the client's
    // search scopes reach (`*` scopes do not reach the audit trail).
    let server = App {
        store: app.jobs.store.clone(),
        ..app.clone()
    };
    if !asynchronous {
        let _slot = app.jobs.table.claim("$reindex")?;
        let result = run(&server, &types, &Progress::default(), || false).await?;
        return Ok(FhirResponse::ok(result));
    }
    let owner = requester(app, request).await?;
    let (job, slot) = app.jobs.table.start("$reindex", &owner)?;
    let worker = job.clone();
    // The job indexes with the search parameters of the request that started it.
    let work = tokio::spawn(async move {
        let cancelled = || worker.cancelled();
        let progress = &worker.progress;
        run(&server, &types, progress, cancelled).await
    });
    // A second task awaits the work, so that even a panic in it ends the job with an answer.
    let finished = job.clone();
    tokio::spawn(async move {
        let result = work
            .await
            .unwrap_or_else(|e| Err(FhirError::Internal(format!("the reindex job stopped: {e}"))));
        if let Err(error) = &result {
            tracing::warn!(job = finished.id, %error, "reindex failed");
        }
        finished.finish(result);
        drop(slot);
    });
    Ok(job.accepted(app.url(&format!("{STATUS_PATH}/{}", job.id))))
}

/// `GET` and `DELETE [base]/_async/[id]`: the status of a reindex job, or its cancellation;
/// for clients that may run `$reindex` only.
pub async fn job_status(
    app: &App,
    request: &FhirRequest,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    app.store.may_reindex().await?;
    let owner = requester(app, request).await?;
    if request.method == axum::http::Method::DELETE {
        app.jobs.table.cancel(id, &owner)
    } else {
        app.jobs.table.status(id, &owner)
    }
}

/// Who asks (`Agent::key` of the request's grant): a job belongs to the client that started it.
pub async fn requester(app: &App, request: &FhirRequest) -> Result<String, FhirError> {
    Ok(match app.auth.authenticate(&request.headers).await? {
        Access::Granted(grant) => grant.agent.key(),
        Access::Unauthenticated => "unauthenticated".to_owned(),
    })
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

/// What a run did, beside the progress it shares while it runs.
#[derive(Default)]
struct Counts {
    reindexed: u64,
    skipped: u64,
    batches: u64,
}

/// Reindexes `types` batch by batch until done or `cancelled` (asked between batches); the
/// Parameters of counts.
async fn run(
    app: &App,
    types: &[String],
    progress: &Progress,
    cancelled: impl Fn() -> bool,
) -> Result<Value, FhirError> {
    let mut counts = Counts::default();
    let mut total = 0;
    for rtype in types {
        total += app.store.count(&all(rtype, None)).await?;
    }
    progress.set_total(total);
    tracing::info!(total, "reindex started");
    'types: for rtype in types {
        let mut after = None;
        loop {
            if cancelled() {
                tracing::info!(done = progress.done(), total, "reindex cancelled");
                break 'types;
            }
            let mut hits = app.store.search(&all(rtype, after)).await?;
            let more = hits.len() > BATCH;
            hits.truncate(BATCH);
            let Some(last) = hits.last() else { break };
            after = Some(Cursor {
                keys: Vec::new(),
                rid: last.rid,
            });
            let hits = &hits;
            let (reindexed, skipped) = in_transaction(app.store.as_ref(), |tx| {
                Box::pin(batch(tx, app, rtype, hits))
            })
            .await?;
            counts.reindexed += reindexed;
            counts.skipped += skipped;
            counts.batches += 1;
            progress.add_done(hits.len() as u64);
            tracing::info!(rtype, done = progress.done(), total, "reindex progress");
            if !more {
                break;
            }
        }
    }
    tracing::info!(
        reindexed = counts.reindexed,
        skipped = counts.skipped,
        "reindex finished"
    );
    let count = |name: &str, n: u64| json!({"name": name, "valueInteger": n.min(i32::MAX as u64)});
    Ok(json!({
        "resourceType": "Parameters",
        "parameter": [
            count("total", total),
            count("done", progress.done()),
            count("reindexed", counts.reindexed),
            count("skipped", counts.skipped),
            count("batches", counts.batches),
        ],
    }))
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

/// Reindexes one batch inside `tx`: `(reindexed, skipped)`.
async fn batch(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    hits: &[SearchHit],
) -> Result<(u64, u64), FhirError> {
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
        tx.reindex(hit.rid, &stored_entries(app.registry(), &resource, rtype))
            .await?;
        reindexed += 1;
    }
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
