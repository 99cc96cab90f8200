//! Bulk Data export (FHIR Bulk Data Access IG 2.0.0, https://hl7.org/fhir/uv/bulkdata/export.html):
//! `[base]/$export`, `[base]/Patient/$export` and `[base]/Group/[id]/$export`, by GET (query
//! parameters) or POST (a Parameters body).
//!
//! The kick-off needs `Prefer: respond-async` (400 without) and answers 202 with the status URL
//! `[base]/_export/[job]` in `Content-Location`. Polling it answers 202 with `X-Progress`
//! (resources written so far / counted) and `Retry-After` while the job runs, then 200 with the
//! manifest (`application/json`, `Expires` when the files go). The files are NDJSON, one or more
//! per type (a new file past the server's `--export-file-size`), served at
//! `[base]/_export/[job]/[file]`. `DELETE` on the status URL cancels the job and deletes its
//! files. More exports than `--max-exports` at once: 429 with `Retry-After`.
//!
//! Parameters: `_outputFormat` (`application/fhir+ndjson`, `application/ndjson`, `ndjson`),
//! `_since` (resources changed later than it), `_type`, `_typeFilter` (search queries run through
//! the ordinary search code; several for one type are OR-ed), and in a POST `patient`
//! (Patient and Group level: only those patients' compartments). `includeAssociatedData`,
//! `_elements` and any other parameter are refused with 400 naming them.
//!
//! What goes in is what the client may read: the job reads through the request's own store
//! (`auth::guard::GuardedStore`), so `system/*.read` or per-type scopes decide the types (types
//! it may not read are left out; naming one in `_type` is 403), and a patient-bound token gets
//! its own patient's data only. The job, its status and its files belong to the client that
//! started it: to any other the URLs answer 404.
//!
//! Consistency: the export is the data as of `transactionTime`, the instant of the kick-off. A
//! resource written after it is exported as it was then (its version current at that instant,
//! from its history), or left out if it did not exist; one deleted after it is still exported
//! (system and Patient level, types without `_typeFilter`). With `_since`, the manifest's
//! `deleted` lists the resources deleted after `_since` and up to `transactionTime` (IG:
//! transaction Bundles of `DELETE` entries). The job pages through the store [`BATCH`]
//! resources at a time and appends each page to its file, so memory stays flat however large
//! the export.

//!
//! The operation's rooms: [`parameters`] reads the kick-off, [`job`] is the export job that
//! pages through the store, [`output`] writes the NDJSON files. The status and file requests
//! are `super::bulk_status`, shared with `$import`.

mod job;
mod output;
mod parameters;

use std::collections::HashSet;

use serde_json::json;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, now_ms};
use crate::http::negotiate::prefer_async;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::bulk_status;
use crate::interaction::reindex::requester;
use crate::store::StoreError;

use job::{page, Export};
use parameters::{group_members, parameters, read_params};

/// What the CapabilityStatement says of the export operations.
pub const DOCUMENTATION: &str = "Bulk Data Access 2.0.0 export (GET or POST with a Parameters \
    body, Prefer: respond-async): _outputFormat (application/fhir+ndjson, application/ndjson, \
    ndjson), _type, _since, _typeFilter, patient (POST); status at [base]/_export/[job], NDJSON \
    files served there, deleted resources for _since exports; DELETE cancels and deletes.";

/// The first path segment of an export's status and file URLs.
pub const STATUS_PATH: &str = "_export";

/// Resources read per page of the store.
pub const BATCH: usize = 500;

/// The export's level.
pub enum Level<'a> {
    System,
    Patient,
    Group(&'a str),
}

/// The kick-off request.
pub async fn kick_off(
    app: &App,
    request: &FhirRequest,
    level: Level<'_>,
) -> Result<FhirResponse, FhirError> {
    if !prefer_async(&request.headers)? {
        return Err(FhirError::invalid(
            "$export is asynchronous: send it with the header Prefer: respond-async",
        ));
    }
    let (params, patients) = parameters(request)?;
    if patients.is_some() && matches!(level, Level::System) {
        return Err(FhirError::invalid(
            "patient is not applicable to a system-level export: use Patient/$export or \
             Group/[id]/$export",
        ));
    }
    let compartment_only = !matches!(level, Level::System);
    let mut asked = read_params(app, &params, compartment_only).await?;
    let store = app.store.clone();
    let members = match level {
        Level::Group(id) => Some(group_members(store.as_ref(), id).await?),
        _ => None,
    };
    let members = match (members, patients) {
        (members, None) => members,
        (Some(members), Some(patients)) => {
            let outside: Vec<&str> = patients
                .iter()
                .filter(|p| !members.contains(p))
                .map(String::as_str)
                .collect();
            if !outside.is_empty() {
                return Err(FhirError::invalid(format!(
                    "patient: not members of the Group: Patient/{}",
                    outside.join(", Patient/")
                )));
            }
            Some(patients)
        }
        (None, Some(patients)) => {
            let keys: Vec<(String, String)> = patients
                .iter()
                .map(|p| ("Patient".to_owned(), p.clone()))
                .collect();
            let known: HashSet<String> = store
                .read_current(&keys)
                .await?
                .into_iter()
                .map(|hit| hit.version.id)
                .collect();
            let unknown: Vec<&str> = patients
                .iter()
                .filter(|p| !known.contains(*p))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(FhirError::invalid(format!(
                    "patient: unknown Patient/{}",
                    unknown.join(", Patient/")
                )));
            }
            Some(patients)
        }
    };
    // Types named in `_type` must be readable; of all types, those that are not are left out.
    let mut readable = Vec::new();
    for rtype in asked.types {
        match store.search(&page(&rtype, None, 0)).await {
            Ok(_) => readable.push(rtype),
            Err(StoreError::Forbidden(message)) if asked.explicit => {
                return Err(FhirError::Forbidden(message))
            }
            Err(StoreError::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    asked.types = readable;
    asked.filters.retain(|t, _| asked.types.contains(t));
    let owner = requester(app, request).await?;
    let exports = &app.jobs.exports;
    let (job, slot) = match exports.start_recorded("$export", &owner).await {
        Ok(started) => started,
        Err(error) => return bulk_status::too_many_requests(error),
    };
    let transaction_time = now_ms();
    let export = Export {
        store,
        indexing: app.indexing.clone(),
        dir: exports
            .files(&job.id)
            .unwrap_or_else(|| std::env::temp_dir().join("signaal-export").join(&job.id)),
        files_url: app.url(&format!("{STATUS_PATH}/{}", job.id)),
        file_size: app.jobs.settings.export_file_size,
        transaction_time,
        asked,
        members,
    };
    let manifest = json!({
        "transactionTime": format_instant(transaction_time),
        "request": request_url(app, request),
        "requiresAccessToken": app.auth.enforced(),
    });
    let worker = job.clone();
    let work = tokio::spawn(async move { export.run(&worker, manifest).await });
    let finished = job.clone();
    tokio::spawn(async move {
        let result = work
            .await
            .unwrap_or_else(|e| Err(FhirError::Internal(format!("the export job stopped: {e}"))));
        if let Err(error) = &result {
            tracing::warn!(job = finished.id, %error, "export failed");
        }
        finished.finish(result);
        drop(slot);
    });
    Ok(job.accepted(app.url(&format!("{STATUS_PATH}/{}", job.id))))
}

/// The kick-off URL as the client sent it (a POST's without its parameters, IG).
fn request_url(app: &App, request: &FhirRequest) -> String {
    let mut url = app.url(&request.segments.join("/"));
    if !request.params.is_empty() {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(&request.params);
        url = format!("{url}?{}", query.finish());
    }
    url
}
