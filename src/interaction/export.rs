//! Bulk Data export (FHIR Bulk Data Access IG 2.0.0, https://hl7.org/fhir/uv/bulkdata/export.html):
//! `GET [base]/$export`, `[base]/Patient/$export` and `[base]/Group/[id]/$export`.
//!
//! The kick-off needs `Prefer: respond-async` (400 without) and answers 202 with the status URL
//! `[base]/_export/[job]` in `Content-Location`. Polling it answers 202 with `X-Progress`
//! (resources written so far / counted) and `Retry-After` while the job runs, then 200 with the
//! manifest (`application/json`). The files are NDJSON, one or more per type (a new file every
//! [`FILE_LIMIT`] resources), served at `[base]/_export/[job]/[file]`. `DELETE` on the status
//! URL cancels the job and deletes its files.
//!
//! What goes in is what the client may read: the job reads through the request's own store
//! (`auth::guard::GuardedStore`), so `system/*.read` or per-type scopes decide the types (types
//! it may not read are left out; naming one in `_type` is 403), and a patient-bound token gets
//! its own patient's data only. The job, its status and its files belong to the client that
//! started it: to any other the URLs answer 404.
//!
//! The job pages through the store [`BATCH`] resources at a time and appends each page to its
//! file, so memory stays flat however large the export. Files are written under
//! `$SIGNAAL_EXPORT_DIR` (default: `signaal-export` in the system's temporary directory), one
//! directory per job. The job itself lives in this process (`async_job`): after a restart the
//! status URL answers 404 and the client starts the export again.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::compartment::{is_the_patient, patient_params};
use crate::fhir::datetime::{format_instant, now_ms, parse_range};
use crate::fhir::{meta, resource_types};
use crate::http::negotiate::prefer_async;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::async_job::Job;
use crate::interaction::check_id;
use crate::interaction::reindex::requester;
use crate::search::query::{Cursor, SearchQuery};
use crate::store::{Store, StoreError, Version};

/// What the CapabilityStatement says of the export operations.
pub const DOCUMENTATION: &str = "Bulk Data Access 2.0.0 export (GET, Prefer: respond-async): \
    _outputFormat (application/fhir+ndjson, application/ndjson, ndjson), _type, _since; \
    status at [base]/_export/[job], NDJSON files served there; DELETE cancels and deletes.";

/// The first path segment of an export's status and file URLs.
pub const STATUS_PATH: &str = "_export";

/// Resources read per page of the store.
pub const BATCH: usize = 500;

/// Resources per file: past this, a type continues in a new file.
pub const FILE_LIMIT: u64 = 50_000;

/// The output formats the IG names for NDJSON.
const FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Seconds a client is asked to wait between polls.
const RETRY_AFTER: &str = "2";

/// The export's level.
pub enum Level<'a> {
    System,
    Patient,
    Group(&'a str),
}

/// What the export is asked for.
struct Request {
    types: Vec<String>,
    since: Option<i64>,
}

/// The directory the files of every export go to.
pub(crate) fn root() -> PathBuf {
    std::env::var_os("SIGNAAL_EXPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("signaal-export"))
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
    let compartment_only = !matches!(level, Level::System);
    let mut asked = read_params(request, compartment_only)?;
    let store = app.store.clone();
    let members = match level {
        Level::Group(id) => Some(group_members(store.as_ref(), id).await?),
        _ => None,
    };
    // Types named in `_type` must be readable; of all types, those that are not are left out.
    let explicit = request.params.iter().any(|(k, _)| k == "_type");
    let mut readable = Vec::new();
    for rtype in asked.types {
        match store.search(&page(&rtype, None, 0)).await {
            Ok(_) => readable.push(rtype),
            Err(StoreError::Forbidden(message)) if explicit => {
                return Err(FhirError::Forbidden(message))
            }
            Err(StoreError::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    asked.types = readable;
    let owner = requester(app, request).await?;
    // One export at a time: another is asked to come back (IG: 429 Too Many Requests).
    let (job, slot) = app.jobs.exports.start("$export", &owner).map_err(busy)?;
    let dir = root().join(&job.id);
    let files_url = app.url(&format!("{STATUS_PATH}/{}", job.id));
    let manifest = json!({
        "transactionTime": format_instant(now_ms()),
        "request": request_url(app, request),
        "requiresAccessToken": app.auth.enforced(),
    });
    let worker = job.clone();
    let work =
        tokio::spawn(
            async move { run(store, &worker, asked, members, dir, files_url, manifest).await },
        );
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

/// The export slot is taken: 429, come back later.
fn busy(error: FhirError) -> FhirError {
    match error {
        FhirError::Conflict(message) => FhirError::TooManyRequests(message),
        other => other,
    }
}

/// The kick-off's parameters; Patient and Group exports hold only compartment types.
fn read_params(request: &FhirRequest, compartment_only: bool) -> Result<Request, FhirError> {
    let mut types: Option<Vec<String>> = None;
    let mut since = None;
    for (name, value) in &request.params {
        match name.as_str() {
            "_outputFormat" => {
                if !FORMATS.contains(&value.as_str()) {
                    return Err(FhirError::invalid(format!(
                        "_outputFormat '{value}' is not supported: use application/fhir+ndjson"
                    )));
                }
            }
            "_since" => {
                since = Some(
                    parse_range(value)
                        .map_err(|e| FhirError::invalid(format!("_since: {e}")))?
                        .0,
                )
            }
            "_type" => {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !resource_types::is_resource_type(t) {
                        return Err(FhirError::invalid(format!(
                            "_type: '{t}' is not a resource type"
                        )));
                    }
                    types.get_or_insert_with(Vec::new).push(t.to_owned());
                }
            }
            "_typeFilter" | "patient" | "includeAssociatedData" | "_elements" => {
                return Err(FhirError::invalid(format!(
                    "$export does not support the parameter '{name}'"
                )))
            }
            other => {
                return Err(FhirError::invalid(format!(
                    "$export does not support the parameter '{other}' \
                     (it takes _outputFormat, _type and _since)"
                )))
            }
        }
    }
    let in_compartment = |t: &str| is_the_patient(t) || !patient_params(t).is_empty();
    let types = match types {
        Some(types) => {
            if compartment_only {
                if let Some(t) = types.iter().find(|t| !in_compartment(t)) {
                    return Err(FhirError::invalid(format!(
                        "_type: {t} is in no Patient compartment, so not in a Patient or Group export"
                    )));
                }
            }
            types
        }
        None => resource_types::all()
            .iter()
            .filter(|t| !compartment_only || in_compartment(t))
            .cloned()
            .collect(),
    };
    Ok(Request { types, since })
}

/// The ids of the Patients a Group names in `member.entity`.
async fn group_members(store: &dyn Store, id: &str) -> Result<Vec<String>, FhirError> {
    check_id(id)?;
    let group = match store.read("Group", id).await? {
        Some(v) if !v.deleted() => v,
        _ => return Err(FhirError::NotFound(format!("Group/{id} is not known"))),
    };
    let group: Value = serde_json::from_str(group.content.as_deref().unwrap_or("{}"))
        .map_err(|e| FhirError::Internal(format!("stored Group/{id}: {e}")))?;
    let mut members: Vec<String> = group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["inactive"] != true)
        .filter_map(|m| m["entity"]["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_owned)
        .collect();
    members.sort();
    members.dedup();
    Ok(members)
}

/// The kick-off URL as the client sent it.
fn request_url(app: &App, request: &FhirRequest) -> String {
    let mut url = app.url(&request.segments.join("/"));
    if !request.params.is_empty() {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(&request.params);
        url = format!("{url}?{}", query.finish());
    }
    url
}

/// One page of current resources of a type, in row order, after a row.
fn page(rtype: &str, after: Option<i64>, count: usize) -> SearchQuery {
    SearchQuery {
        rtype: rtype.to_owned(),
        count,
        after: after.map(|rid| Cursor {
            keys: Vec::new(),
            rid,
        }),
        ..Default::default()
    }
}

/// The files of one type being written.
struct Output {
    rtype: String,
    dir: PathBuf,
    files_url: String,
    file: Option<(tokio::io::BufWriter<tokio::fs::File>, String, u64)>,
    done: Vec<Value>,
}

impl Output {
    async fn write(&mut self, version: &Version) -> Result<(), FhirError> {
        let Some(resource) = meta::stamp(version) else {
            return Ok(());
        };
        if self.file.as_ref().is_some_and(|f| f.2 >= FILE_LIMIT) {
            self.close().await?;
        }
        if self.file.is_none() {
            let name = format!("{}-{}.ndjson", self.rtype, self.done.len() + 1);
            let file = tokio::fs::File::create(self.dir.join(&name))
                .await
                .map_err(io)?;
            self.file = Some((tokio::io::BufWriter::new(file), name, 0));
        }
        let (writer, _, count) = self.file.as_mut().expect("opened above");
        let mut line =
            serde_json::to_vec(&resource).map_err(|e| FhirError::Internal(e.to_string()))?;
        line.push(b'\n');
        writer.write_all(&line).await.map_err(io)?;
        *count += 1;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), FhirError> {
        if let Some((mut writer, name, count)) = self.file.take() {
            writer.flush().await.map_err(io)?;
            self.done.push(json!({
                "type": self.rtype,
                "url": format!("{}/{name}", self.files_url),
                "count": count,
            }));
        }
        Ok(())
    }
}

fn io(e: std::io::Error) -> FhirError {
    FhirError::Internal(format!("export file: {e}"))
}

/// Writes the files and returns the manifest.
async fn run(
    store: Arc<dyn Store>,
    job: &Job,
    asked: Request,
    members: Option<Vec<String>>,
    dir: PathBuf,
    files_url: String,
    mut manifest: Value,
) -> Result<Value, FhirError> {
    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
    let fresh = |v: &Version| asked.since.is_none_or(|since| v.last_updated >= since);
    let mut outputs: Vec<Output> = asked
        .types
        .iter()
        .map(|rtype| Output {
            rtype: rtype.clone(),
            dir: dir.clone(),
            files_url: files_url.clone(),
            file: None,
            done: Vec::new(),
        })
        .collect();
    match members {
        // A Group: each member's compartment in turn (one patient's data at a time).
        Some(members) => {
            let types: Vec<&str> = asked.types.iter().map(String::as_str).collect();
            job.progress.set_total(members.len() as u64);
            for patient in members {
                if job.cancelled() {
                    break;
                }
                for version in store.compartment(&patient, &types).await? {
                    if fresh(&version) {
                        if let Some(out) = outputs.iter_mut().find(|o| o.rtype == version.rtype) {
                            out.write(&version).await?;
                        }
                    }
                }
                job.progress.add_done(1);
            }
        }
        // Every resource of each type, page by page.
        None => {
            let mut total = 0;
            for rtype in &asked.types {
                total += store.count(&page(rtype, None, BATCH)).await?;
            }
            job.progress.set_total(total);
            'types: for out in outputs.iter_mut() {
                let mut after = None;
                loop {
                    if job.cancelled() {
                        break 'types;
                    }
                    let mut hits = store.search(&page(&out.rtype, after, BATCH)).await?;
                    let more = hits.len() > BATCH;
                    hits.truncate(BATCH);
                    for hit in &hits {
                        if fresh(&hit.version) {
                            out.write(&hit.version).await?;
                        }
                    }
                    job.progress.add_done(hits.len() as u64);
                    match hits.last() {
                        Some(last) if more => after = Some(last.rid),
                        _ => break,
                    }
                }
            }
        }
    }
    let mut output = Vec::new();
    for out in outputs.iter_mut() {
        out.close().await?;
        output.append(&mut out.done);
    }
    if job.cancelled() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    manifest["output"] = json!(output);
    manifest["error"] = json!([]);
    Ok(manifest)
}

/// `GET`/`DELETE [base]/_export/[job]`: progress or the manifest; cancellation.
pub async fn status(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let owner = requester(app, request).await?;
    let table = &app.jobs.exports;
    if request.method == Method::DELETE {
        let answer = table.cancel(id, &owner)?;
        // The job deletes what it wrote when it stops; a finished job's files go now.
        let _ = tokio::fs::remove_dir_all(root().join(id)).await;
        return Ok(answer);
    }
    let answer = table.status(id, &owner)?;
    Ok(if answer.status == StatusCode::ACCEPTED {
        answer.with_header(header::RETRY_AFTER, RETRY_AFTER.to_owned())
    } else if answer.status == StatusCode::OK {
        // The manifest is plain JSON, not a FHIR resource (IG, "Response - Complete Status").
        answer.with_header(header::CONTENT_TYPE, "application/json".to_owned())
    } else {
        answer
    })
}

/// `GET [base]/_export/[job]/[file]`: one NDJSON file of a finished export of this client.
pub async fn file(
    app: &App,
    request: &FhirRequest,
    id: &str,
    name: &str,
) -> Result<FhirResponse, FhirError> {
    let owner = requester(app, request).await?;
    let job = app.jobs.exports.find(id, &owner)?;
    let unknown = || FhirError::NotFound(format!("No export file {id}/{name}"));
    let listed = job
        .finished()
        .as_ref()
        .and_then(|answer| answer.body.as_ref())
        .is_some_and(|manifest| {
            manifest["output"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| {
                    o["url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with(&format!("/{name}")))
                })
        });
    if !listed {
        return Err(unknown());
    }
    let bytes = tokio::fs::read(root().join(id).join(name))
        .await
        .map_err(|_| unknown())?;
    let mut answer = FhirResponse::new(StatusCode::OK, None)
        .with_header(header::CONTENT_TYPE, "application/fhir+ndjson".to_owned());
    answer.raw = Some(bytes);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interaction::async_job::Table;

    #[test]
    fn a_second_export_while_one_runs_is_too_many_requests() {
        let exports = Arc::new(Table::default());
        let (_job, _slot) = exports.start("$export", "me").unwrap();
        let refused = busy(exports.start("$export", "you").err().unwrap());
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
