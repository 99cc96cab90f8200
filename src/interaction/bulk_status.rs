//! The Bulk Data status and file requests (Bulk Data Access IG 2.0.0, "Status Request" and
//! "File Request"), one way for both bulk operations: `$export` (`[base]/_export/[job]`) and
//! `$import` (`[base]/_import/[job]`). Each operation keeps its own job table
//! (`crate::jobs::Table`); these handlers answer over whichever table they are given.
//!
//! - `GET` the status URL: 202 with `X-Progress` and `Retry-After` while the job runs, then
//!   200 with the manifest as plain JSON (not a FHIR resource), with `Expires` when the table's
//!   finished jobs and files expire; an error answer as the job recorded it.
//! - `DELETE` the status URL: cancels the job (or forgets a finished one) and removes its files.
//! - `GET [status URL]/[file]`: a file the finished job's manifest lists (`output`, `deleted`
//!   or `error`), as NDJSON.
//!
//! A job belongs to the client that started it: to any other every URL answers 404.

use axum::http::{header, Method, StatusCode};

use crate::app::App;
use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::reindex::requester;
use crate::jobs::Table;

/// Seconds a client is asked to wait between polls (`Retry-After`), also on a 429.
pub const RETRY_AFTER: &str = "2";

/// The manifest lists that name files (IG, "Response - Complete Status").
const FILE_LISTS: [&str; 3] = ["output", "deleted", "error"];

/// `GET`/`DELETE` a bulk job's status URL: progress or the manifest; cancellation.
pub async fn status(
    app: &App,
    request: &FhirRequest,
    table: &Table,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    let owner = requester(app, request).await?;
    if request.method == Method::DELETE {
        // The job deletes what it wrote when it stops; a finished job's files go now.
        return table.cancel(id, &owner);
    }
    let answer = table.status(id, &owner)?;
    Ok(if answer.status == StatusCode::ACCEPTED {
        answer.with_header(header::RETRY_AFTER, RETRY_AFTER.to_owned())
    } else if answer.status == StatusCode::OK {
        let answer = answer.with_header(header::CONTENT_TYPE, "application/json".to_owned());
        let job = table.find(id, &owner)?;
        match table.expires(&job) {
            Some(at) => answer.with_header(header::EXPIRES, http_date(at)),
            None => answer,
        }
    } else {
        answer
    })
}

/// `GET [status URL]/[name]`: one NDJSON file that a finished job of this client lists.
pub async fn file(
    app: &App,
    request: &FhirRequest,
    table: &Table,
    id: &str,
    name: &str,
) -> Result<FhirResponse, FhirError> {
    let owner = requester(app, request).await?;
    let job = table.find(id, &owner)?;
    let unknown = || FhirError::NotFound(format!("No file {name} in bulk job {id}"));
    let suffix = format!("/{id}/{name}");
    let listed = job
        .finished()
        .as_ref()
        .and_then(|answer| answer.body.as_ref())
        .is_some_and(|manifest| {
            FILE_LISTS.iter().any(|list| {
                manifest[*list]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|entry| entry["url"].as_str().is_some_and(|u| u.ends_with(&suffix)))
            })
        });
    if !listed {
        return Err(unknown());
    }
    let dir = table.files(id).ok_or_else(unknown)?;
    let bytes = tokio::fs::read(dir.join(name))
        .await
        .map_err(|_| unknown())?;
    let mut answer = FhirResponse::new(StatusCode::OK, None)
        .with_header(header::CONTENT_TYPE, "application/fhir+ndjson".to_owned());
    answer.raw = Some(bytes);
    Ok(answer)
}

/// A kick-off refused because the operation's job slots are taken (the table's `start`
/// answers a conflict): 429 with `Retry-After` (IG, kick-off "Response - Error"). Any other
/// error stays as it is.
pub fn too_many_requests(error: FhirError) -> Result<FhirResponse, FhirError> {
    match error {
        FhirError::Conflict(message) => {
            let refused = FhirError::TooManyRequests(message);
            Ok(
                FhirResponse::new(refused.status(), Some(refused.into_outcome()))
                    .with_header(header::RETRY_AFTER, RETRY_AFTER.to_owned()),
            )
        }
        other => Err(other),
    }
}

/// An instant (ms since the epoch) as an HTTP date (`Expires`).
fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|at| at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_second_job_while_the_slot_is_taken_is_too_many_requests_with_retry_after() {
        let jobs = Arc::new(Table::default());
        let (_job, _slot) = jobs.start("$export", "me").unwrap();
        let refused = too_many_requests(jobs.start("$export", "you").err().unwrap()).unwrap();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused
            .headers
            .iter()
            .any(|(name, value)| name == header::RETRY_AFTER && value == RETRY_AFTER));
    }

    #[test]
    fn other_errors_pass_unchanged() {
        let error = too_many_requests(FhirError::NotFound("x".into())).unwrap_err();
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }
}
