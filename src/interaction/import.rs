//! Bulk import: `POST [base]/$import` loads NDJSON resources into the server as a job of the
//! asynchronous request pattern, the counterpart of the Bulk Data export (`export.rs`).
//!
//! The input is given one of two ways (docs/bulk-data.md, decision 0029):
//! - the NDJSON itself as the body, `Content-Type: application/fhir+ndjson` (up to the server's
//!   body limit; resources of any types, one a line);
//! - a `Parameters` body whose `input` parts name NDJSON files by `url` (and optionally their
//!   `type`), as the Bulk Data import drafts do. The server reads only files it serves itself,
//!   the files of a finished export of the same client (`[base]/_export/[job]/[file]`): it
//!   fetches no other URL, so a client cannot make it reach into the network (SSRF).
//!
//! `Prefer: respond-async` is required (400 without). The kick-off answers 202 with the status
//! URL `[base]/_import/[job]`: 202 with `X-Progress` (lines done/counted) and `Retry-After` while
//! the job runs, then 200 with a manifest (`application/json`): `transactionTime`, `request`,
//! `requiresAccessToken`, `output` (`type` and `count` of the resources imported per type) and
//! `error` (the OperationOutcome NDJSON file with one OperationOutcome per line that was not
//! imported, with its line number). `DELETE` there cancels the job after its current batch
//! (what was written stays) and deletes the error file.
//!
//! Every line is written as the client's own `PUT` would be (`import::load`): through the
//! request's guarded store, so the token's scopes must allow writing each type and every write
//! gets its Provenance. Declared input types the token may not write are refused at kick-off
//! (403). The job belongs to the client that started it, as an export's does. Import jobs are
//! recorded like exports (`crate::jobs`, table `import`): one import runs at a time, another
//! kick-off gets 429; its error file is removed with the job.

pub mod load;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, now_ms};
use crate::fhir::resource_types;
use crate::http::negotiate::{media_type, prefer_async};
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::async_job::Job;
use crate::interaction::bulk_status;
use crate::interaction::export;
use crate::interaction::reindex::requester;
use crate::interaction::search_parameters;
use crate::store::{Method as WriteMethod, Store};
use crate::write::Indexing;
use load::{Input, LineError, Observer};

/// What the CapabilityStatement says of the operation beyond its definition.
pub const DOCUMENTATION: &str = "Bulk import (Prefer: respond-async): an NDJSON body \
    (Content-Type: application/fhir+ndjson), or a Parameters naming this client's export files \
    (input.url, input.type). Each line is validated and written as a PUT (the resource keeps \
    its id); bad lines are reported with their line numbers. Status at [base]/_import/[job].";

/// The canonical URL of the OperationDefinition (`conformance/operation-import.json`).
pub const DEFINITION: &str = "https://signaal.dev/fhir/OperationDefinition/import";

/// The first path segment of an import's status and error-file URLs.
pub const STATUS_PATH: &str = "_import";

/// The name of a job's error file.
pub const ERROR_FILE: &str = "errors.ndjson";

/// The media types of an NDJSON body (those the Bulk Data IG names for `_outputFormat`).
const NDJSON: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// The directory of import job `id`'s files (its error file).
fn job_dir(app: &App, id: &str) -> Result<PathBuf, FhirError> {
    app.jobs
        .imports
        .files(id)
        .ok_or_else(|| FhirError::Internal("import jobs have no file directory".into()))
}

/// One input of an import.
enum Source {
    /// The request body.
    Body(Bytes),
    /// A file of an export, on this server's disk.
    File {
        url: String,
        path: PathBuf,
        rtype: String,
    },
}

impl Source {
    fn name(&self) -> &str {
        match self {
            Source::Body(_) => "the request body",
            Source::File { url, .. } => url,
        }
    }
}

/// `POST [base]/$import`.
pub async fn kick_off(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    if !prefer_async(&request.headers)? {
        return Err(FhirError::invalid(
            "$import is asynchronous: send it with the header Prefer: respond-async",
        ));
    }
    if let Some((name, _)) = request.params.first() {
        return Err(FhirError::invalid(format!(
            "$import takes no URL parameter ('{name}'): send the NDJSON as the body, or a \
             Parameters naming the files"
        )));
    }
    let owner = requester(app, request).await?;
    let media = request
        .header("content-type")
        .map(media_type)
        .unwrap_or_default();
    let sources = if NDJSON.contains(&media.as_str()) {
        if request.body.iter().all(u8::is_ascii_whitespace) {
            return Err(FhirError::invalid("The NDJSON body is empty"));
        }
        vec![Source::Body(request.body.clone())]
    } else {
        let parameters = request.json_body().map_err(|e| match e {
            FhirError::UnsupportedMediaType(_) => FhirError::UnsupportedMediaType(format!(
                "Content-Type '{media}' is not supported: send application/fhir+ndjson (the \
                 resources) or application/fhir+json (a Parameters naming the files)"
            )),
            other => other,
        })?;
        files(app, &owner, &parameters)?
    };
    // Declared types the token may not write are refused now (others line by line).
    let declared: Vec<&str> = sources
        .iter()
        .filter_map(|s| match s {
            Source::File { rtype, .. } => Some(rtype.as_str()),
            Source::Body(_) => None,
        })
        .collect();
    if !declared.is_empty() {
        let mut tx = app.store.begin().await?;
        for rtype in declared {
            tx.may_write(rtype, WriteMethod::Put).await?;
        }
    }
    // One import at a time: another is asked to come back (429).
    let (job, slot) = match app.jobs.imports.start_recorded("$import", &owner).await {
        Ok(started) => started,
        Err(error) => return bulk_status::too_many_requests(error),
    };
    let dir = job_dir(app, &job.id)?;
    let status_url = app.url(&format!("{STATUS_PATH}/{}", job.id));
    let manifest = json!({
        "transactionTime": format_instant(now_ms()),
        "request": app.url("$import"),
        "requiresAccessToken": app.auth.enforced(),
    });
    let (store, indexing) = (app.store.clone(), app.indexing.clone());
    // The registry is reloaded as the server (not as the client) if the import changed the
    // active SearchParameters.
    let server = App {
        store: app.jobs.store.clone(),
        ..app.clone()
    };
    let worker = job.clone();
    let errors_url = format!("{status_url}/{ERROR_FILE}");
    let work = tokio::spawn(async move {
        let result = run(
            store.as_ref(),
            &indexing,
            &worker,
            sources,
            &dir,
            errors_url,
            manifest,
        )
        .await;
        if indexing.search_params_changed() {
            search_parameters::reload(&server).await?;
        }
        let written = indexing.definitions_written();
        if !written.is_empty() {
            crate::interaction::stored_definitions::reload_written(&server, &written).await?;
        }
        result
    });
    let finished = job.clone();
    tokio::spawn(async move {
        let result = work
            .await
            .unwrap_or_else(|e| Err(FhirError::Internal(format!("the import job stopped: {e}"))));
        if let Err(error) = &result {
            tracing::warn!(job = finished.id, %error, "import failed");
        }
        finished.finish(result);
        drop(slot);
    });
    Ok(job.accepted(status_url))
}

/// The files a Parameters body names (`input` parts with `url` and optional `type`), each a
/// file of a finished export of `owner`.
fn files(app: &App, owner: &str, parameters: &Value) -> Result<Vec<Source>, FhirError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::invalid(
            "$import takes a Parameters resource naming the files (or an NDJSON body)",
        ));
    }
    let mut sources = Vec::new();
    for parameter in parameters["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap_or_default();
        match name {
            "inputFormat" => {
                let format = primitive(parameter).unwrap_or_default();
                if !NDJSON.contains(&format) {
                    return Err(FhirError::invalid(format!(
                        "inputFormat '{format}' is not supported: use application/fhir+ndjson"
                    )));
                }
            }
            // Where the data came from: for the client's own records.
            "inputSource" => {}
            "input" => {
                let part = |n: &str| {
                    parameter["part"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["name"] == n)
                        .and_then(primitive)
                };
                let url = part("url").ok_or_else(|| {
                    FhirError::invalid("Each input needs a url part naming an NDJSON file")
                })?;
                let rtype = part("type");
                if let Some(t) = rtype {
                    if !resource_types::is_resource_type(t) {
                        return Err(FhirError::invalid(format!(
                            "input type '{t}' is not a resource type"
                        )));
                    }
                }
                sources.push(export_file(app, owner, url, rtype)?);
            }
            other => {
                return Err(FhirError::invalid(format!(
                    "$import does not support the parameter '{other}' (it takes input, \
                     inputFormat and inputSource)"
                )))
            }
        }
    }
    if sources.is_empty() {
        return Err(FhirError::invalid(
            "The Parameters name no input: give at least one input with a url",
        ));
    }
    Ok(sources)
}

/// A primitive parameter value, whatever its `value[x]` type.
fn primitive(parameter: &Value) -> Option<&str> {
    [
        "valueUrl",
        "valueUri",
        "valueString",
        "valueCode",
        "valueCanonical",
    ]
    .iter()
    .find_map(|k| parameter.get(*k).and_then(Value::as_str))
}

/// Resolves the URL of a file of one of `owner`'s finished exports to the file on disk.
fn export_file(
    app: &App,
    owner: &str,
    url: &str,
    declared: Option<&str>,
) -> Result<Source, FhirError> {
    let not_ours = || {
        FhirError::invalid(format!(
            "input url '{url}' is not a file of one of your finished exports on this server \
             ({}/{}/[job]/[file]): the server fetches no other URL; send other NDJSON as the \
             request body (Content-Type: application/fhir+ndjson)",
            app.base_url,
            export::STATUS_PATH
        ))
    };
    let rest = url
        .strip_prefix(&format!("{}/", app.base_url))
        .ok_or_else(not_ours)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let [export::STATUS_PATH, job, file] = segments.as_slice() else {
        return Err(not_ours());
    };
    let job = app.jobs.exports.find(job, owner).map_err(|_| not_ours())?;
    let finished = job.finished();
    let listed = finished
        .as_ref()
        .filter(|answer| answer.status == StatusCode::OK)
        .and_then(|answer| answer.body.as_ref())
        .and_then(|manifest| manifest["output"].as_array())
        .and_then(|outputs| outputs.iter().find(|o| o["url"] == url))
        .ok_or_else(not_ours)?;
    let rtype = listed["type"].as_str().unwrap_or_default().to_owned();
    if let Some(declared) = declared {
        if declared != rtype {
            return Err(FhirError::invalid(format!(
                "input '{url}' holds {rtype} resources, not {declared}"
            )));
        }
    }
    Ok(Source::File {
        url: url.to_owned(),
        path: app
            .jobs
            .exports
            .files(&job.id)
            .ok_or_else(not_ours)?
            .join(file),
        rtype,
    })
}

/// The job's observer: progress into the job, failed lines into the error file.
struct JobObserver<'a> {
    job: &'a Job,
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    errors: u64,
}

impl Observer for JobObserver<'_> {
    fn progress(&mut self, lines: u64) {
        self.job.progress.add_done(lines);
    }

    fn failed(&mut self, input: &str, error: LineError) -> Result<(), FhirError> {
        if self.file.is_none() {
            let file = std::fs::File::create(&self.path).map_err(io)?;
            self.file = Some(std::io::BufWriter::new(file));
        }
        let writer = self.file.as_mut().expect("opened above");
        let mut line = serde_json::to_vec(&error.outcome(input))
            .map_err(|e| FhirError::Internal(e.to_string()))?;
        line.push(b'\n');
        writer.write_all(&line).map_err(io)?;
        self.errors += 1;
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.job.cancelled()
    }
}

fn io(e: std::io::Error) -> FhirError {
    FhirError::Internal(format!("import error file: {e}"))
}

/// Loads every source and returns the manifest.
async fn run(
    store: &dyn Store,
    indexing: &Arc<Indexing>,
    job: &Job,
    sources: Vec<Source>,
    dir: &Path,
    errors_url: String,
    mut manifest: Value,
) -> Result<Value, FhirError> {
    let mut total = 0;
    for source in &sources {
        total += match source {
            Source::Body(bytes) => count_lines(bytes),
            Source::File { path, .. } => count_file_lines(path).await?,
        };
    }
    job.progress.set_total(total);
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let mut observer = JobObserver {
        job,
        path: dir.join(ERROR_FILE),
        file: None,
        errors: 0,
    };
    // One pipeline over every source (`load::Loader`).
    let mut loader = load::Loader::new(store, indexing).await?;
    for source in &sources {
        if job.cancelled() {
            break;
        }
        let loaded = match source {
            Source::Body(bytes) => {
                let input = Input {
                    name: source.name(),
                    rtype: None,
                };
                loader.load(&input, &bytes[..], &mut observer).await
            }
            Source::File { path, rtype, .. } => match tokio::fs::File::open(path).await {
                Ok(file) => {
                    let input = Input {
                        name: source.name(),
                        rtype: Some(rtype.as_str()),
                    };
                    let reader = tokio::io::BufReader::with_capacity(1 << 20, file);
                    loader.load(&input, reader, &mut observer).await
                }
                Err(e) => Err(FhirError::Internal(format!("{}: {e}", source.name()))),
            },
        };
        if let Err(e) = loaded {
            // What was read before the failure (the previous source's last batch) is written
            // all the same, as a load of each source on its own would have.
            return Err(loader.stop(e, &mut observer).await);
        }
    }
    let tally = loader.finish(&mut observer).await?;
    if let Some(mut file) = observer.file.take() {
        file.flush().map_err(io)?;
    }
    if job.cancelled() {
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
    manifest["output"] = json!(tally
        .imported
        .iter()
        .map(|(rtype, count)| json!({"type": rtype, "count": count}))
        .collect::<Vec<_>>());
    manifest["error"] = if observer.errors > 0 {
        json!([{"type": "OperationOutcome", "url": errors_url, "count": observer.errors}])
    } else {
        json!([])
    };
    Ok(manifest)
}

/// Non-blank lines in `bytes`.
pub fn count_lines(bytes: &[u8]) -> u64 {
    let mut seen = false;
    count_finished_lines(bytes, &mut seen) + u64::from(seen)
}

/// Non-blank lines of a file, read in chunks.
pub async fn count_file_lines(path: &Path) -> Result<u64, FhirError> {
    use tokio::io::AsyncReadExt;
    let failed = |e: std::io::Error| FhirError::Internal(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(failed)?;
    let mut buffer = vec![0u8; 1 << 20];
    let (mut n, mut seen) = (0, false);
    loop {
        let read = file.read(&mut buffer).await.map_err(failed)?;
        if read == 0 {
            return Ok(n + u64::from(seen));
        }
        n += count_finished_lines(&buffer[..read], &mut seen);
    }
}

/// Non-blank lines ended in `bytes`; `seen` says whether the line in progress has a non-blank
/// character so far (carried from one chunk to the next).
fn count_finished_lines(bytes: &[u8], seen: &mut bool) -> u64 {
    let mut n = 0;
    for &b in bytes {
        if b == b'\n' {
            n += u64::from(*seen);
            *seen = false;
        } else if !b.is_ascii_whitespace() {
            *seen = true;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_not_counted() {
        assert_eq!(count_lines(b"{}\n\n  \n{}"), 2);
        assert_eq!(count_lines(b"{}\n{}\n"), 2);
        assert_eq!(count_lines(b""), 0);
    }

    #[test]
    fn a_line_split_across_chunks_counts_once() {
        let mut seen = false;
        let n = count_finished_lines(b"{\"a\":", &mut seen)
            + count_finished_lines(b"1}\n{}", &mut seen);
        assert_eq!((n, seen), (1, true));
    }
}
