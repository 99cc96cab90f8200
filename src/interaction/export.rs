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

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::compartment::{is_the_patient, patient_params};
use crate::fhir::datetime::{format_instant, now_ms, parse_range};
use crate::fhir::id::new_id;
use crate::fhir::{meta, resource_types};
use crate::http::negotiate::prefer_async;
use crate::http::request::{parse_query, FhirRequest};
use crate::http::response::FhirResponse;
use crate::interaction::check_id;
use crate::interaction::reindex::requester;
use crate::jobs::Job;
use crate::search::extract::index_entries;
use crate::search::params::{parse, Unknown};
use crate::search::query::{Cursor, Predicate, SearchQuery};
use crate::store::{HistoryQuery, Method as WriteMethod, Store, StoreError, Version};
use crate::terminology::resolver::StoreResolver;
use crate::write::Indexing;

/// What the CapabilityStatement says of the export operations.
pub const DOCUMENTATION: &str = "Bulk Data Access 2.0.0 export (GET or POST with a Parameters \
    body, Prefer: respond-async): _outputFormat (application/fhir+ndjson, application/ndjson, \
    ndjson), _type, _since, _typeFilter, patient (POST); status at [base]/_export/[job], NDJSON \
    files served there, deleted resources for _since exports; DELETE cancels and deletes.";

/// The first path segment of an export's status and file URLs.
pub const STATUS_PATH: &str = "_export";

/// Resources read per page of the store.
pub const BATCH: usize = 500;

/// Deleted resources per line (transaction Bundle) of a `deleted` file.
const DELETED_PER_BUNDLE: usize = 500;

/// The output formats the IG names for NDJSON.
const FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Seconds a client is asked to wait between polls, and before kicking off again after 429.
const RETRY_AFTER: &str = "2";

/// Search parameters a `_typeFilter` query may not use (IG: search response parameters).
const RESULT_PARAMS: [&str; 9] = [
    "_include",
    "_revinclude",
    "_sort",
    "_count",
    "_summary",
    "_elements",
    "_total",
    "_contained",
    "_containedType",
];

/// The export's level.
pub enum Level<'a> {
    System,
    Patient,
    Group(&'a str),
}

/// What the export is asked for.
struct Request {
    types: Vec<String>,
    /// `_type` was given: its types must be readable.
    explicit: bool,
    since: Option<i64>,
    /// `_typeFilter`: per type, queries one of which a resource must match.
    filters: BTreeMap<String, Vec<SearchQuery>>,
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
        Err(error) => return too_many(busy(error)),
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

/// The export slots are taken: 429, come back later (IG, kick-off "Response - Error").
fn busy(error: FhirError) -> FhirError {
    match error {
        FhirError::Conflict(message) => FhirError::TooManyRequests(message),
        other => other,
    }
}

/// A kick-off refused because too many exports run: 429 with `Retry-After`; any other error
/// as it is.
fn too_many(error: FhirError) -> Result<FhirResponse, FhirError> {
    if error.status() != StatusCode::TOO_MANY_REQUESTS {
        return Err(error);
    }
    Ok(
        FhirResponse::new(StatusCode::TOO_MANY_REQUESTS, Some(error.into_outcome()))
            .with_header(header::RETRY_AFTER, RETRY_AFTER.to_owned()),
    )
}

/// The kick-off's parameters as name/value pairs, and the `patient` references of a POST.
/// A GET has them in the query; a POST in a Parameters body (and any in the query).
fn parameters(
    request: &FhirRequest,
) -> Result<(Vec<(String, String)>, Option<Vec<String>>), FhirError> {
    let mut params = request.params.clone();
    if request.method != Method::POST {
        if params.iter().any(|(name, _)| name == "patient") {
            return Err(FhirError::invalid(
                "patient is taken in a POST kick-off's Parameters body only",
            ));
        }
        return Ok((params, None));
    }
    if request.body.is_empty() {
        return Ok((params, None));
    }
    let body = request.json_body()?;
    if body["resourceType"] != "Parameters" {
        return Err(FhirError::invalid(
            "A POST $export takes a Parameters resource",
        ));
    }
    let mut patients: Option<Vec<String>> = None;
    for parameter in body["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"]
            .as_str()
            .ok_or_else(|| FhirError::invalid("Parameters.parameter without a name"))?;
        if name == "patient" {
            let reference = parameter["valueReference"]["reference"]
                .as_str()
                .ok_or_else(|| FhirError::invalid("patient takes a valueReference"))?;
            let id = reference
                .strip_prefix("Patient/")
                .filter(|id| crate::fhir::id::is_valid(id))
                .ok_or_else(|| {
                    FhirError::invalid(format!(
                        "patient: '{reference}' is not a reference Patient/[id]"
                    ))
                })?;
            patients.get_or_insert_with(Vec::new).push(id.to_owned());
            continue;
        }
        let value = [
            "valueString",
            "valueCode",
            "valueInstant",
            "valueDateTime",
            "valueUri",
        ]
        .iter()
        .find_map(|key| parameter[*key].as_str())
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "{name}: the value must be a string, code, instant or uri"
            ))
        })?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if let Some(patients) = &mut patients {
        patients.sort();
        patients.dedup();
    }
    Ok((params, patients))
}

/// The kick-off's parameters; Patient and Group exports hold only compartment types.
async fn read_params(
    app: &App,
    params: &[(String, String)],
    compartment_only: bool,
) -> Result<Request, FhirError> {
    let mut types: Option<Vec<String>> = None;
    let mut since = None;
    let mut filters: Vec<String> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "_outputFormat" => {
                if !FORMATS.contains(&value.as_str()) {
                    return Err(FhirError::invalid(format!(
                        "_outputFormat '{value}' is not supported: use application/fhir+ndjson \
                         (or application/ndjson, ndjson)"
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
            "_typeFilter" => filters.extend(split_type_filters(value).map(str::to_owned)),
            "includeAssociatedData" => {
                return Err(FhirError::invalid(format!(
                    "includeAssociatedData ({value}) is not supported: Signaal exports no \
                     associated data sets (such as LatestProvenanceResources); send the \
                     request without it"
                )))
            }
            "_elements" => {
                return Err(FhirError::invalid(
                    "_elements is not supported by $export: send the request without it",
                ))
            }
            other => unknown.push(other),
        }
    }
    if !unknown.is_empty() {
        unknown.dedup();
        return Err(FhirError::invalid(format!(
            "$export does not support the parameter{} '{}' (it takes _outputFormat, _since, \
             _type, _typeFilter and, in a POST, patient)",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join("', '")
        )));
    }
    let in_compartment = |t: &str| is_the_patient(t) || !patient_params(t).is_empty();
    let explicit = types.is_some();
    let mut types = match types {
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
    types.sort();
    types.dedup();
    let mut by_type: BTreeMap<String, Vec<SearchQuery>> = BTreeMap::new();
    for filter in filters {
        let (rtype, query) = type_filter(app, &filter).await?;
        if !types.contains(&rtype) {
            return Err(FhirError::invalid(format!(
                "_typeFilter '{filter}': {rtype} is not among the types exported"
            )));
        }
        by_type.entry(rtype).or_default().push(query);
    }
    Ok(Request {
        types,
        explicit,
        since,
        filters: by_type,
    })
}

/// The queries of a `_typeFilter` value: comma-separated `Type?query`, so a comma splits only
/// where a resource type and `?` follow (a comma inside a query ORs its values).
fn split_type_filters(value: &str) -> impl Iterator<Item = &str> {
    let mut starts = vec![0];
    for (i, _) in value.match_indices(',') {
        let rest = &value[i + 1..];
        let starts_query = rest
            .split_once('?')
            .is_some_and(|(t, _)| resource_types::is_resource_type(t.trim()));
        if starts_query {
            starts.push(i + 1);
        }
    }
    let mut ends: Vec<usize> = starts[1..].iter().map(|s| s - 1).collect();
    ends.push(value.len());
    starts
        .into_iter()
        .zip(ends)
        .map(move |(s, e)| value[s..e].trim())
        .filter(|q| !q.is_empty())
}

/// One `_typeFilter` query, parsed and resolved by the search code as a search of its type.
async fn type_filter(app: &App, filter: &str) -> Result<(String, SearchQuery), FhirError> {
    let bad = |why: String| FhirError::invalid(format!("_typeFilter '{filter}': {why}"));
    let (rtype, query) = filter
        .split_once('?')
        .ok_or_else(|| bad("not a search query [type]?[parameters]".into()))?;
    if !resource_types::is_resource_type(rtype) {
        return Err(bad(format!("'{rtype}' is not a resource type")));
    }
    let params = parse_query(query);
    if params.is_empty() {
        return Err(bad("the query has no parameters".into()));
    }
    if let Some((name, _)) = params
        .iter()
        .find(|(name, _)| RESULT_PARAMS.contains(&name.split(':').next().unwrap_or(name)))
    {
        return Err(bad(format!(
            "search result parameters such as {name} are not allowed in a _typeFilter"
        )));
    }
    let mut parsed = parse(
        app.registry(),
        &app.search_budget,
        rtype,
        &params,
        Unknown::Refuse,
        &app.base_url,
    )
    .map_err(|e| bad(e.to_string()))?;
    crate::search::resolve(&StoreResolver::new(app.store.as_ref()), &mut parsed.query).await?;
    Ok((rtype.to_owned(), parsed.query))
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

/// One page of current resources of a type, in row order, after a row.
fn page(rtype: &str, after: Option<i64>, count: usize) -> SearchQuery {
    paged(
        SearchQuery {
            rtype: rtype.to_owned(),
            ..Default::default()
        },
        after,
        count,
    )
}

/// `query`'s page after a row.
fn paged(mut query: SearchQuery, after: Option<i64>, count: usize) -> SearchQuery {
    query.count = count;
    query.after = after.map(|rid| Cursor {
        keys: Vec::new(),
        rid,
    });
    query.before = None;
    query
}

/// NDJSON files of one kind of line (a resource type, or `Bundle` for deletions).
struct Output {
    rtype: String,
    /// The file name's stem.
    stem: String,
    dir: PathBuf,
    files_url: String,
    size_limit: u64,
    /// The file being written: its writer, name, lines and bytes.
    file: Option<(tokio::io::BufWriter<tokio::fs::File>, String, u64, u64)>,
    done: Vec<Value>,
    /// The names of every file written, the open one included.
    names: Vec<String>,
}

impl Output {
    fn new(export: &Export, rtype: &str, stem: &str) -> Self {
        Output {
            rtype: rtype.to_owned(),
            stem: stem.to_owned(),
            dir: export.dir.clone(),
            files_url: export.files_url.clone(),
            size_limit: export.file_size,
            file: None,
            done: Vec::new(),
            names: Vec::new(),
        }
    }

    /// The ids among `wanted` of the resources written so far (read back from the files).
    async fn written(&mut self, wanted: &HashSet<String>) -> Result<HashSet<String>, FhirError> {
        use tokio::io::AsyncBufReadExt;
        if let Some((writer, ..)) = self.file.as_mut() {
            writer.flush().await.map_err(io)?;
        }
        let mut found = HashSet::new();
        for name in &self.names {
            let file = tokio::fs::File::open(self.dir.join(name))
                .await
                .map_err(io)?;
            let mut lines = tokio::io::BufReader::new(file).lines();
            while let Some(line) = lines.next_line().await.map_err(io)? {
                if let Some(id) = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|r| r["id"].as_str().map(str::to_owned))
                {
                    if wanted.contains(&id) {
                        found.insert(id);
                    }
                }
            }
        }
        Ok(found)
    }

    async fn line(&mut self, value: &Value) -> Result<(), FhirError> {
        if self.file.as_ref().is_some_and(|f| f.3 >= self.size_limit) {
            self.close().await?;
        }
        if self.file.is_none() {
            let name = format!("{}-{}.ndjson", self.stem, self.done.len() + 1);
            let file = tokio::fs::File::create(self.dir.join(&name))
                .await
                .map_err(io)?;
            self.names.push(name.clone());
            self.file = Some((tokio::io::BufWriter::new(file), name, 0, 0));
        }
        let (writer, _, count, bytes) = self.file.as_mut().expect("opened above");
        let mut line = serde_json::to_vec(value).map_err(|e| FhirError::Internal(e.to_string()))?;
        line.push(b'\n');
        writer.write_all(&line).await.map_err(io)?;
        *count += 1;
        *bytes += line.len() as u64;
        Ok(())
    }

    async fn write(&mut self, version: &Version) -> Result<(), FhirError> {
        match meta::stamp(version) {
            Some(resource) => self.line(&resource).await,
            None => Ok(()),
        }
    }

    async fn close(&mut self) -> Result<(), FhirError> {
        if let Some((mut writer, name, count, _)) = self.file.take() {
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

/// An export job's work.
struct Export {
    store: Arc<dyn Store>,
    indexing: Arc<Indexing>,
    dir: PathBuf,
    files_url: String,
    file_size: u64,
    transaction_time: i64,
    asked: Request,
    /// Group members or the POST's `patient` list: only their compartments.
    members: Option<Vec<String>>,
}

impl Export {
    /// Writes the files and returns the manifest.
    async fn run(&self, job: &Job, mut manifest: Value) -> Result<Value, FhirError> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        let mut outputs: Vec<Output> = self
            .asked
            .types
            .iter()
            .map(|rtype| Output::new(self, rtype, rtype))
            .collect();
        match &self.members {
            Some(members) => self.compartments(job, members, &mut outputs).await?,
            None => {
                let mut total = 0;
                for rtype in &self.asked.types {
                    total += self.store.count(&page(rtype, None, BATCH)).await?;
                }
                job.progress.set_total(total);
                for out in outputs.iter_mut() {
                    if job.cancelled() {
                        break;
                    }
                    self.every(job, out).await?;
                }
            }
        }
        let mut output = Vec::new();
        for out in outputs.iter_mut() {
            out.close().await?;
            output.append(&mut out.done);
        }
        let mut deleted = Output::new(self, "Bundle", "deleted");
        if self.asked.since.is_some() && !job.cancelled() {
            self.deleted(&mut deleted).await?;
        }
        deleted.close().await?;
        if job.cancelled() {
            let _ = tokio::fs::remove_dir_all(&self.dir).await;
        }
        manifest["output"] = json!(output);
        manifest["deleted"] = json!(deleted.done);
        manifest["error"] = json!([]);
        Ok(manifest)
    }

    /// Whether a version as of the transaction time is exported under `_since`.
    fn fresh(&self, version: &Version) -> bool {
        self.asked
            .since
            .is_none_or(|since| version.last_updated > since)
    }

    /// The version of `version`'s resource current at the transaction time (`None`: it did
    /// not exist then, or was deleted).
    async fn as_of(&self, version: Version) -> Result<Option<Version>, FhirError> {
        if version.last_updated <= self.transaction_time {
            return Ok(Some(version));
        }
        let t = self.transaction_time;
        let then = self
            .store
            .history(&HistoryQuery {
                rtype: Some(version.rtype.clone()),
                id: Some(version.id.clone()),
                at: Some((t, t + 1)),
                count: 1,
                ..Default::default()
            })
            .await?;
        Ok(then
            .into_iter()
            .next()
            .map(|entry| entry.version)
            .filter(|v| !v.deleted()))
    }

    /// Every resource of `out`'s type (matching one of its `_typeFilter` queries), page by
    /// page, then those deleted since the transaction time that existed at it.
    async fn every(&self, job: &Job, out: &mut Output) -> Result<(), FhirError> {
        let plain = [page(&out.rtype, None, BATCH)];
        let queries = self
            .asked
            .filters
            .get(&out.rtype)
            .map(Vec::as_slice)
            .unwrap_or(&plain[..]);
        for (k, query) in queries.iter().enumerate() {
            let mut after = None;
            loop {
                if job.cancelled() {
                    return Ok(());
                }
                let mut hits = self
                    .store
                    .search(&paged(query.clone(), after, BATCH))
                    .await?;
                let more = hits.len() > BATCH;
                hits.truncate(BATCH);
                after = hits.last().map(|hit| hit.rid);
                // A resource an earlier query of the type matched is written already.
                let ids: Vec<String> = hits.iter().map(|h| h.version.id.clone()).collect();
                let earlier = self.matching(&queries[..k], &ids).await?;
                job.progress.add_done(hits.len() as u64);
                for hit in hits {
                    if earlier.contains(&hit.version.id) {
                        continue;
                    }
                    if let Some(version) = self.as_of(hit.version).await? {
                        if self.fresh(&version) {
                            out.write(&version).await?;
                        }
                    }
                }
                if !more {
                    break;
                }
            }
        }
        if !self.asked.filters.contains_key(&out.rtype) {
            self.deleted_since_transaction(job, out).await?;
        }
        Ok(())
    }

    /// The ids among `ids` that one of `queries` matches.
    async fn matching(
        &self,
        queries: &[SearchQuery],
        ids: &[String],
    ) -> Result<HashSet<String>, FhirError> {
        let mut found = HashSet::new();
        if ids.is_empty() {
            return Ok(found);
        }
        for query in queries {
            let mut query = paged(query.clone(), None, ids.len());
            query
                .filters
                .push(ids.iter().map(|id| Predicate::Id(id.clone())).collect());
            for hit in self.store.search(&query).await? {
                found.insert(hit.version.id);
            }
        }
        Ok(found)
    }

    /// Resources of `out`'s type deleted after the transaction time: exported as they were
    /// at it, if they existed then. One deleted while the pages were read may have been
    /// written from its page already: those are looked up in the files (deletions during an
    /// export are few, and the files are read only when there are some).
    async fn deleted_since_transaction(
        &self,
        job: &Job,
        out: &mut Output,
    ) -> Result<(), FhirError> {
        let mut seen = HashSet::new();
        let mut missing: Vec<Version> = Vec::new();
        let mut before = None;
        loop {
            if job.cancelled() {
                return Ok(());
            }
            let mut entries = self
                .store
                .history(&HistoryQuery {
                    rtype: Some(out.rtype.clone()),
                    since: Some(self.transaction_time + 1),
                    before_seq: before,
                    count: BATCH,
                    ..Default::default()
                })
                .await?;
            let more = entries.len() > BATCH;
            entries.truncate(BATCH);
            before = entries.last().map(|e| e.seq);
            for entry in entries {
                let version = entry.version;
                if version.method != WriteMethod::Delete || !seen.insert(version.id.clone()) {
                    continue;
                }
                let current = self.store.read(&version.rtype, &version.id).await?;
                if current.is_some_and(|c| !c.deleted()) {
                    // Written again since: the pages had it.
                    continue;
                }
                if let Some(then) = self.as_of(version).await? {
                    if self.fresh(&then) {
                        missing.push(then);
                    }
                }
            }
            if !more {
                break;
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<String> = missing.iter().map(|v| v.id.clone()).collect();
        let written = out.written(&wanted).await?;
        for version in missing {
            if !written.contains(&version.id) {
                out.write(&version).await?;
            }
        }
        Ok(())
    }

    /// Each member's compartment in turn (one patient's data at a time).
    async fn compartments(
        &self,
        job: &Job,
        members: &[String],
        outputs: &mut [Output],
    ) -> Result<(), FhirError> {
        let types: Vec<&str> = self.asked.types.iter().map(String::as_str).collect();
        job.progress.set_total(members.len() as u64);
        for patient in members {
            if job.cancelled() {
                break;
            }
            let mut versions = Vec::new();
            for version in self.store.compartment(patient, &types).await? {
                if let Some(version) = self.as_of(version).await? {
                    if self.fresh(&version) {
                        versions.push(version);
                    }
                }
            }
            // `_typeFilter`: per type, only the resources one of its queries matches.
            for (rtype, queries) in &self.asked.filters {
                let ids: Vec<String> = versions
                    .iter()
                    .filter(|v| &v.rtype == rtype)
                    .map(|v| v.id.clone())
                    .collect();
                let matched = self.matching(queries, &ids).await?;
                versions.retain(|v| &v.rtype != rtype || matched.contains(&v.id));
            }
            for version in &versions {
                if let Some(out) = outputs.iter_mut().find(|o| o.rtype == version.rtype) {
                    out.write(version).await?;
                }
            }
            job.progress.add_done(1);
        }
        Ok(())
    }

    /// The manifest's `deleted`: resources of the exported types deleted after `_since` and
    /// still deleted at the transaction time, in transaction Bundles of `DELETE` entries.
    async fn deleted(&self, out: &mut Output) -> Result<(), FhirError> {
        let Some(since) = self.asked.since else {
            return Ok(());
        };
        let mut entries: Vec<Value> = Vec::new();
        for rtype in &self.asked.types {
            let mut seen = HashSet::new();
            let mut before = None;
            loop {
                let mut found = self
                    .store
                    .history(&HistoryQuery {
                        rtype: Some(rtype.clone()),
                        since: Some(since + 1),
                        before_seq: before,
                        count: BATCH,
                        ..Default::default()
                    })
                    .await?;
                let more = found.len() > BATCH;
                found.truncate(BATCH);
                before = found.last().map(|e| e.seq);
                for entry in found {
                    let version = entry.version;
                    if version.method != WriteMethod::Delete
                        || version.last_updated > self.transaction_time
                        || !seen.insert(version.id.clone())
                    {
                        continue;
                    }
                    // Deleted as of the transaction time (not written again before it), and
                    // for a patient list, in one of its compartments before it was deleted.
                    let (rtype, id) = (version.rtype.clone(), version.id.clone());
                    let at_transaction = self
                        .store
                        .history(&HistoryQuery {
                            rtype: Some(rtype.clone()),
                            id: Some(id.clone()),
                            at: Some((self.transaction_time, self.transaction_time + 1)),
                            count: 1,
                            ..Default::default()
                        })
                        .await?;
                    if at_transaction.first().is_some_and(|e| !e.version.deleted()) {
                        continue;
                    }
                    if !self.in_members(&version).await? {
                        continue;
                    }
                    entries.push(json!({
                        "request": {"method": "DELETE", "url": format!("{rtype}/{id}")},
                    }));
                    if entries.len() >= DELETED_PER_BUNDLE {
                        out.line(&self.deletion_bundle(std::mem::take(&mut entries)))
                            .await?;
                    }
                }
                if !more {
                    break;
                }
            }
        }
        if !entries.is_empty() {
            out.line(&self.deletion_bundle(entries)).await?;
        }
        Ok(())
    }

    fn deletion_bundle(&self, entries: Vec<Value>) -> Value {
        json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": format_instant(self.transaction_time)},
            "type": "transaction",
            "entry": entries,
        })
    }

    /// Whether a deleted resource was, before its deletion, in the compartment of one of the
    /// export's patients (always, without a patient list).
    async fn in_members(&self, deletion: &Version) -> Result<bool, FhirError> {
        let Some(members) = &self.members else {
            return Ok(true);
        };
        if is_the_patient(&deletion.rtype) {
            return Ok(members.contains(&deletion.id));
        }
        let before = match deletion.version {
            1 => None,
            v => {
                self.store
                    .vread(&deletion.rtype, &deletion.id, v - 1)
                    .await?
            }
        };
        let Some(resource) = before
            .and_then(|b| b.content)
            .and_then(|c| serde_json::from_str::<Value>(&c).ok())
        else {
            return Ok(false);
        };
        let entries = index_entries(self.indexing.registry(), &resource, &deletion.rtype);
        let patient = crate::fhir::compartment::patient(&deletion.rtype, &deletion.id, |param| {
            entries
                .references
                .iter()
                .find(|r| r.param == param && r.target_type.as_deref() == Some("Patient"))
                .and_then(|r| r.target_id.clone())
        });
        Ok(patient.is_some_and(|p| members.contains(&p)))
    }
}

/// `GET`/`DELETE [base]/_export/[job]`: progress or the manifest; cancellation.
pub async fn status(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let owner = requester(app, request).await?;
    let table = &app.jobs.exports;
    if request.method == Method::DELETE {
        // The job deletes what it wrote when it stops; a finished job's files go now.
        return table.cancel(id, &owner);
    }
    let answer = table.status(id, &owner)?;
    Ok(if answer.status == StatusCode::ACCEPTED {
        answer.with_header(header::RETRY_AFTER, RETRY_AFTER.to_owned())
    } else if answer.status == StatusCode::OK {
        // The manifest is plain JSON, not a FHIR resource (IG, "Response - Complete Status").
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

/// An instant as an HTTP date (`Expires`).
fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|at| at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// `GET [base]/_export/[job]/[file]`: one NDJSON file of a finished export of this client.
pub async fn file(
    app: &App,
    request: &FhirRequest,
    id: &str,
    name: &str,
) -> Result<FhirResponse, FhirError> {
    let owner = requester(app, request).await?;
    let table = &app.jobs.exports;
    let job = table.find(id, &owner)?;
    let unknown = || FhirError::NotFound(format!("No export file {id}/{name}"));
    let listed = job
        .finished()
        .as_ref()
        .and_then(|answer| answer.body.as_ref())
        .is_some_and(|manifest| {
            ["output", "deleted"].iter().any(|list| {
                manifest[*list].as_array().into_iter().flatten().any(|o| {
                    o["url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with(&format!("/{name}")))
                })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Table;

    #[test]
    fn a_second_export_while_one_runs_is_too_many_requests() {
        let exports = Arc::new(Table::default());
        let (_job, _slot) = exports.start("$export", "me").unwrap();
        let refused = busy(exports.start("$export", "you").err().unwrap());
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn type_filters_split_between_queries_not_inside_them() {
        let value =
            "MedicationRequest?status=active,completed,Condition?code=x&clinical-status=a,b";
        let queries: Vec<&str> = split_type_filters(value).collect();
        assert_eq!(
            queries,
            [
                "MedicationRequest?status=active,completed",
                "Condition?code=x&clinical-status=a,b"
            ]
        );
    }
}
