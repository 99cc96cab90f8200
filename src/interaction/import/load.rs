//! Loading NDJSON into the store: what `$import` and `signaal import` share.
//!
//! Each line is one resource. It is parsed and validated like the body of a `PUT` (the type must
//! be known, the id valid, the content valid R4), then written through the write pipeline with
//! update-as-create semantics: the resource keeps its id, becoming version 1 of a new resource
//! or the next version of an existing one. Lines are written in batches of up to [`BATCH`], one
//! store transaction per batch (far faster than one per resource), in the order of the input,
//! so a later line for the same resource wins. The next batch is parsed, validated and prepared
//! for storage (index entries, JSON: `write::prepare`) while one is written, on as many threads
//! as there are cores, so the writer's turn holds only the statements; a [`Loader`] keeps that
//! pipeline going from one input to the next.
//!
//! A bad line never stops the others: it is reported as an `OperationOutcome` naming its line
//! number (in `diagnostics` and in the `operationoutcome-issue-line` extension) and the import
//! goes on. Lines of a type the store will not write at all (no scope for it) are reported
//! before the batch is written; a line the store refuses while its batch is written (a read-only
//! resource, one outside a patient-bound token's compartment) is taken out of the batch,
//! reported, and the batch written again without it. Only a failure of the store itself (the
//! database gone) stops the load.
//!
//! Writes go through the store given, so a client's import is authorized and traced (a
//! Provenance per write) like any write of that client.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::error::{FhirError, Issue};
use crate::fhir::{id, json_format, resource_types, validate::validate};
use crate::store::{Method, Store, Tx};
use crate::write::{self, in_transaction, Indexing};

/// Lines per batch, and per store transaction. Each commit writes every page its batch
/// dirtied to the log once: the hot pages of the indexes are rewritten once per batch, so a
/// larger batch writes less per line (2,000 against 500: see `docs/performance/rest-and-ingest.md`).
pub const BATCH: usize = 2_000;

/// The extension that gives the line an issue was found on (FHIR extensions pack,
/// "OperationOutcome Line of Issue").
pub const LINE_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line";

/// One NDJSON input.
pub struct Input<'a> {
    /// How the input is named in error messages (a file name or URL).
    pub name: &'a str,
    /// The one resource type the input may hold, when it is declared.
    pub rtype: Option<&'a str>,
}

/// What a load did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Resources written, per type.
    pub imported: BTreeMap<String, u64>,
    /// Lines that were not imported (each reported).
    pub failed: u64,
    /// Lines read, blank ones left out.
    pub lines: u64,
}

impl Tally {
    pub fn imported_total(&self) -> u64 {
        self.imported.values().sum()
    }

    /// Adds another input's tally.
    pub fn add(&mut self, other: &Tally) {
        for (rtype, n) in &other.imported {
            *self.imported.entry(rtype.clone()).or_default() += n;
        }
        self.failed += other.failed;
        self.lines += other.lines;
    }
}

/// A line that was not imported: where, and why.
#[derive(Debug, Clone)]
pub struct LineError {
    /// 1-based line number in its input.
    pub line: u64,
    /// `Type/id`, when the line got that far.
    pub resource: Option<String>,
    pub issues: Vec<Issue>,
}

impl LineError {
    /// The `OperationOutcome` reporting it: every issue carries the line, and its diagnostics
    /// name the input, the line and the resource.
    pub fn outcome(&self, input: &str) -> Value {
        let place = match &self.resource {
            Some(resource) => format!("{input}, line {} ({resource})", self.line),
            None => format!("{input}, line {}", self.line),
        };
        let issues: Vec<Value> = self
            .issues
            .iter()
            .map(|issue| {
                let mut issue = issue.to_json();
                issue["diagnostics"] = json!(format!(
                    "{place}: {}",
                    issue["diagnostics"].as_str().unwrap_or("")
                ));
                issue["extension"] = json!([{"url": LINE_EXTENSION, "valueInteger": self.line}]);
                issue
            })
            .collect();
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }

    /// One line of text: `input:line: message` (for a terminal).
    pub fn summary(&self, input: &str) -> String {
        let messages: Vec<&str> = self.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        match &self.resource {
            Some(resource) => format!("{input}:{}: {resource}: {}", self.line, messages.join("; ")),
            None => format!("{input}:{}: {}", self.line, messages.join("; ")),
        }
    }
}

/// What the caller hears while a load runs.
pub trait Observer: Send {
    /// `lines` more lines were handled (imported or failed).
    fn progress(&mut self, lines: u64);
    /// A line was not imported.
    fn failed(&mut self, input: &str, error: LineError) -> Result<(), FhirError>;
    /// Whether to stop (asked between batches).
    fn cancelled(&self) -> bool {
        false
    }
}

/// A parsed and validated line, prepared for storage, ready to write.
struct Ready {
    line: u64,
    rtype: String,
    id: String,
    /// The line as read: a batch written again (a line of it was refused) prepares its lines
    /// again from it.
    raw: Vec<u8>,
    /// Taken by the first attempt to write the batch.
    prepared: Mutex<Option<write::Prepared>>,
}

/// What preparing a line needs besides the line: the search parameters it is indexed with and
/// the `meta.source` of the agent writing it (`Tx::source`).
#[derive(Clone)]
struct Preparing {
    indexing: Arc<Indexing>,
    source: Option<String>,
}

impl Ready {
    /// The line prepared for storage: the one prepared in advance, or (when an earlier attempt
    /// at the batch took it) the same again from the line.
    fn take_prepared(&self, preparing: &Preparing) -> Result<write::Prepared, FhirError> {
        let held = self
            .prepared
            .lock()
            .map_err(|_| FhirError::Internal("a prepared line was poisoned".into()))?
            .take();
        if let Some(prepared) = held {
            return Ok(prepared);
        }
        let again = check(self.line, self.raw.clone(), None, preparing).map_err(|e| {
            FhirError::Internal(format!(
                "{}/{} no longer prepares: {}",
                self.rtype,
                self.id,
                e.summary("line")
            ))
        })?;
        let prepared = again.prepared.into_inner().ok().flatten();
        prepared.ok_or_else(|| FhirError::Internal("a line prepared to nothing".into()))
    }
}

/// Loads the NDJSON `reader` into `store`, indexing with `indexing` (one input: a [`Loader`]
/// given only it).
pub async fn load<R: AsyncBufRead + Unpin>(
    store: &dyn Store,
    indexing: &Arc<Indexing>,
    input: &Input<'_>,
    reader: R,
    observer: &mut dyn Observer,
) -> Result<Tally, FhirError> {
    let mut loader = Loader::new(store, indexing).await?;
    loader.load(input, reader, observer).await?;
    loader.finish(observer).await
}

/// A batch whose lines are being checked and prepared: the input they come from, and the
/// parts on the checking threads.
struct Checking {
    input: String,
    parts: Vec<tokio::task::JoinHandle<Vec<Result<Ready, LineError>>>>,
}

/// One load of any number of inputs, one after the other, as one pipeline: a batch is checked
/// while the batch before it is written, whichever input either comes from, so the cores are
/// not left idle at the start and end of each input (`signaal import` of a folder, an
/// `$import` of several files). The first batch is [`FIRST_BATCH`] lines and each next one
/// twice the one before, up to [`BATCH`]: the writer starts after a short check rather than a
/// whole batch's (an `$import` of a few thousand lines is a few batches, not one written only
/// after all of it was checked).
pub struct Loader<'a> {
    store: &'a dyn Store,
    preparing: Preparing,
    workers: usize,
    /// Batches begun so far (the size of the next one grows with it).
    begun: u32,
    checking: Option<Checking>,
    /// The input of the batch being written, while it is (still set after its write failed).
    writing: Option<String>,
    tally: Tally,
}

/// Lines of a load's first batch (see [`Loader`]).
pub const FIRST_BATCH: usize = 250;

impl<'a> Loader<'a> {
    pub async fn new(store: &'a dyn Store, indexing: &Arc<Indexing>) -> Result<Self, FhirError> {
        // What the store's writes carry as `meta.source` (the agent's; a transaction that has
        // not run a statement has not begun).
        let preparing = Preparing {
            indexing: indexing.clone(),
            source: store.begin().await?.source().map(str::to_owned),
        };
        Ok(Loader {
            store,
            preparing,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            begun: 0,
            checking: None,
            writing: None,
            tally: Tally::default(),
        })
    }

    /// Lines in the next batch.
    fn next_size(&self) -> usize {
        FIRST_BATCH
            .saturating_mul(1 << self.begun.min(16))
            .min(BATCH)
    }

    /// Reads `input` to its end (or until the observer cancels), writing each batch of it
    /// while the next is checked; its last batch is written by the next input's first or by
    /// [`Loader::finish`].
    pub async fn load<R: AsyncBufRead + Unpin>(
        &mut self,
        input: &Input<'_>,
        mut reader: R,
        observer: &mut dyn Observer,
    ) -> Result<(), FhirError> {
        let mut line_no = 0u64;
        loop {
            if observer.cancelled() {
                return Ok(());
            }
            let size = self.next_size();
            let mut raw = Vec::with_capacity(size);
            while raw.len() < size {
                let mut buffer = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut buffer)
                    .await
                    .map_err(|e| FhirError::Internal(format!("reading {}: {e}", input.name)))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                if buffer.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                raw.push((line_no, buffer));
            }
            if raw.is_empty() {
                return Ok(());
            }
            // Parsing, validating and preparing is CPU work: off the async threads, split over
            // the cores, while the batch before is written.
            let next = Checking {
                input: input.name.to_owned(),
                parts: check_batch(raw, self.workers, input.rtype, &self.preparing),
            };
            self.begun += 1;
            if let Some(previous) = self.checking.replace(next) {
                self.write(previous, observer).await?;
            }
        }
    }

    /// Writes the last batch and returns what the load did.
    pub async fn finish(mut self, observer: &mut dyn Observer) -> Result<Tally, FhirError> {
        if let Some(last) = self.checking.take() {
            self.write(last, observer).await?;
        }
        Ok(self.tally)
    }

    /// After [`Loader::load`] failed: the input whose batch could not be written, when that
    /// was the failure (a batch of an earlier input than the one being read), else `None`
    /// (the input being read could not be read).
    pub fn failed_writing(&self) -> Option<&str> {
        self.writing.as_deref()
    }

    /// After an input could not be opened or read: writes what was read and checked before
    /// (the last batch of the input before it, or the lines of this one read so far), as a
    /// load of each input on its own would have, and returns `error`. After a failed write,
    /// nothing more is written.
    pub async fn stop<E>(mut self, error: E, observer: &mut dyn Observer) -> E {
        if self.writing.is_none() {
            if let Some(last) = self.checking.take() {
                if let Err(e) = self.write(last, observer).await {
                    tracing::warn!(error = %e, "import: the batch read before a failure could not be written");
                }
            }
        }
        error
    }

    /// Waits for a batch's lines to be checked and writes them.
    async fn write(
        &mut self,
        batch: Checking,
        observer: &mut dyn Observer,
    ) -> Result<(), FhirError> {
        self.writing = Some(batch.input.clone());
        let mut checked = Vec::with_capacity(BATCH);
        for part in batch.parts {
            checked.extend(
                part.await
                    .map_err(|e| FhirError::Internal(format!("checking lines: {e}")))?,
            );
        }
        write_batch(
            self.store,
            &self.preparing,
            &batch.input,
            checked,
            &mut self.tally,
            observer,
        )
        .await?;
        self.writing = None;
        Ok(())
    }
}

/// Starts checking and preparing `raw` lines on up to `workers` blocking threads, in
/// consecutive parts (their results, in order, are the lines' in order).
fn check_batch(
    raw: Vec<(u64, Vec<u8>)>,
    workers: usize,
    expected: Option<&str>,
    preparing: &Preparing,
) -> Vec<tokio::task::JoinHandle<Vec<Result<Ready, LineError>>>> {
    if raw.is_empty() {
        return Vec::new();
    }
    let size = raw.len().div_ceil(workers.max(1));
    let mut parts = Vec::new();
    let mut rest = raw.into_iter().peekable();
    while rest.peek().is_some() {
        let part: Vec<(u64, Vec<u8>)> = rest.by_ref().take(size).collect();
        let expected = expected.map(str::to_owned);
        let preparing = preparing.clone();
        parts.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|(line, bytes)| check(line, bytes, expected.as_deref(), &preparing))
                .collect::<Vec<_>>()
        }));
    }
    parts
}

/// Parses, validates and prepares one line.
fn check(
    line: u64,
    bytes: Vec<u8>,
    expected: Option<&str>,
    preparing: &Preparing,
) -> Result<Ready, LineError> {
    let fail = |resource: Option<String>, issues: Vec<Issue>| LineError {
        line,
        resource,
        issues,
    };
    // FHIR JSON as a client's body must be (`fhir::json_format`: valid JSON, unique names, no
    // stray nulls or empty elements).
    let resource: Value = json_format::parse(&bytes).map_err(|e| fail(None, e.issues()))?;
    let rtype = match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if resource_types::is_resource_type(t) => t.to_owned(),
        Some(t) => {
            return Err(fail(
                None,
                vec![
                    Issue::error("not-supported", format!("'{t}' is not an R4 resource type"))
                        .at("resourceType"),
                ],
            ))
        }
        None => {
            return Err(fail(
                None,
                vec![Issue::error("structure", "the line has no resourceType").at("resourceType")],
            ))
        }
    };
    if let Some(expected) = expected {
        if rtype != expected {
            return Err(fail(
                None,
                vec![Issue::error(
                    "invalid",
                    format!("a {rtype} in an input declared to hold {expected} resources"),
                )
                .at("resourceType")],
            ));
        }
    }
    let id = match resource.get("id").and_then(Value::as_str) {
        Some(id) if id::is_valid(id) => id.to_owned(),
        Some(id) => {
            return Err(fail(
                None,
                vec![Issue::error(
                    "invalid",
                    format!("'{id}' is not a valid id: ids are 1 to 64 of A-Z a-z 0-9 - ."),
                )
                .at(format!("{rtype}.id"))],
            ))
        }
        None => {
            return Err(fail(
                None,
                vec![Issue::error(
                    "required",
                    "the resource has no id: an import keeps each resource's id \
                     (update-as-create), so every line needs one",
                )
                .at(format!("{rtype}.id"))],
            ))
        }
    };
    let label = || Some(format!("{rtype}/{id}"));
    validate(&resource, &rtype).map_err(|e| fail(label(), e.issues()))?;
    // A line the write pipeline refuses (a shipped canonical resource, a bad SearchParameter)
    // fails here as it would when written.
    let prepared = write::prepare(
        &preparing.indexing,
        &rtype,
        &id,
        Some(resource),
        preparing.source.as_deref(),
    )
    .map_err(|e| fail(label(), e.issues()))?;
    Ok(Ready {
        line,
        rtype,
        id,
        raw: bytes,
        prepared: Mutex::new(Some(prepared)),
    })
}

/// Writes one batch in one transaction. A line the store refuses is reported and the batch is
/// written again without it; a failure of the store itself ends the load.
async fn write_batch(
    store: &dyn Store,
    preparing: &Preparing,
    input: &str,
    checked: Vec<Result<Ready, LineError>>,
    tally: &mut Tally,
    observer: &mut dyn Observer,
) -> Result<(), FhirError> {
    let handled = checked.len() as u64;
    let mut errors = Vec::new();
    let mut ready = Vec::with_capacity(checked.len());
    for line in checked {
        match line {
            Ok(line) => ready.push(line),
            Err(error) => errors.push(error),
        }
    }
    // Types the store refuses outright (a scope that does not allow writing them) fail their
    // lines here, rather than one retried transaction each.
    let mut types: Vec<&str> = ready.iter().map(|l| l.rtype.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let mut refused: HashMap<String, Vec<Issue>> = HashMap::new();
    if !types.is_empty() {
        let mut tx = store.begin().await?;
        for rtype in types {
            if let Err(e) = tx.may_write(rtype, Method::Put).await {
                refused.insert(rtype.to_owned(), FhirError::from(e).issues());
            }
        }
    }
    if !refused.is_empty() {
        let (kept, out): (Vec<Ready>, Vec<Ready>) = ready
            .into_iter()
            .partition(|l| !refused.contains_key(&l.rtype));
        ready = kept;
        for line in out {
            errors.push(LineError {
                line: line.line,
                issues: refused[&line.rtype].clone(),
                resource: Some(format!("{}/{}", line.rtype, line.id)),
            });
        }
    }
    while !ready.is_empty() {
        let failed_at = AtomicUsize::new(usize::MAX);
        // Every resource of the batch, locked and read at once (`Tx::lock_all`): each line's
        // `lock_current` then answers without a statement of its own.
        let mut keys: Vec<(String, String)> = ready
            .iter()
            .map(|l| (l.rtype.clone(), l.id.clone()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (batch, failed_at_ref, keys) = (&ready, &failed_at, &keys);
        let written = in_transaction(store, |tx| {
            Box::pin(async move {
                failed_at_ref.store(usize::MAX, Ordering::Relaxed);
                tx.lock_all(keys).await?;
                for (i, line) in batch.iter().enumerate() {
                    if let Err(e) = write_one(tx, preparing, line).await {
                        failed_at_ref.store(i, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                Ok(())
            })
        })
        .await;
        match written {
            Ok(()) => break,
            Err(error) => {
                let at = failed_at.load(Ordering::Relaxed);
                // Not a line's fault: the store failed (or the commit did).
                if at == usize::MAX || is_store_failure(&error) {
                    return Err(error);
                }
                let line = ready.remove(at);
                errors.push(LineError {
                    line: line.line,
                    resource: Some(format!("{}/{}", line.rtype, line.id)),
                    issues: error.issues(),
                });
            }
        }
    }
    for line in &ready {
        *tally.imported.entry(line.rtype.clone()).or_default() += 1;
    }
    errors.sort_by_key(|e| e.line);
    tally.failed += errors.len() as u64;
    tally.lines += handled;
    for error in errors {
        observer.failed(input, error)?;
    }
    observer.progress(handled);
    Ok(())
}

/// Update-as-create of one resource (as `PUT [type]/[id]` without `If-Match`).
async fn write_one(tx: &mut dyn Tx, preparing: &Preparing, line: &Ready) -> Result<(), FhirError> {
    tx.may_write(&line.rtype, Method::Put).await?;
    let prepared = line.take_prepared(preparing)?;
    let current = tx.lock_current(&line.rtype, &line.id).await?;
    write::write_prepared(tx, prepared, current, Method::Put).await?;
    Ok(())
}

/// Errors that are the store's, not a line's: they end the load.
fn is_store_failure(error: &FhirError) -> bool {
    matches!(error, FhirError::Internal(_) | FhirError::Unavailable(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::definitions::Registry;

    /// [`check`] as `signaal import` runs it: the official search parameters, no source.
    fn check(line: u64, bytes: &[u8], expected: Option<&str>) -> Result<Ready, LineError> {
        let preparing = Preparing {
            indexing: Arc::new(Indexing::new(Registry::official())),
            source: None,
        };
        super::check(line, bytes.to_vec(), expected, &preparing)
    }

    /// A reader whose every read fails: a file that cannot be read to its end.
    struct Unreadable;

    impl tokio::io::AsyncRead for Unreadable {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("the disk went away")))
        }
    }

    /// Counts the lines handled; a failed line fails the test.
    struct Lines(u64);

    impl Observer for Lines {
        fn progress(&mut self, lines: u64) {
            self.0 += lines;
        }
        fn failed(&mut self, input: &str, error: LineError) -> Result<(), FhirError> {
            panic!("{input}: line {} failed", error.line)
        }
    }

    fn patient(id: &str) -> Vec<u8> {
        format!("{{\"resourceType\":\"Patient\",\"id\":\"{id}\"}}\n").into_bytes()
    }

    #[tokio::test]
    async fn an_input_that_cannot_be_read_leaves_the_batch_before_it_written() {
        let (dir, url) = crate::store::scratch_sqlite("load");
        let store = crate::store::open(&url).await.unwrap();
        let indexing = Arc::new(Indexing::new(Registry::official()));
        let mut loader = Loader::new(&*store, &indexing).await.unwrap();
        let mut lines = Lines(0);
        // The first input fits one batch: it waits, checked, for the next input's first.
        let first = [patient("kestrel-1"), patient("kestrel-2")].concat();
        let input = Input {
            name: "first.ndjson",
            rtype: None,
        };
        loader.load(&input, &first[..], &mut lines).await.unwrap();
        let second = patient("kestrel-3");
        let broken =
            tokio::io::BufReader::new(tokio::io::AsyncReadExt::chain(&second[..], Unreadable));
        let input = Input {
            name: "second.ndjson",
            rtype: None,
        };
        let error = loader.load(&input, broken, &mut lines).await.unwrap_err();
        assert_eq!(
            loader.failed_writing(),
            None,
            "nothing failed to be written"
        );
        let error = loader.stop(error, &mut lines).await;
        assert!(error.to_string().contains("the disk went away"), "{error}");
        for id in ["kestrel-1", "kestrel-2"] {
            assert!(store.read("Patient", id).await.unwrap().is_some(), "{id}");
        }
        assert_eq!(lines.0, 2);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_line_that_is_not_json_is_reported_with_its_number() {
        let error = check(7, b"{not json", None).err().unwrap();
        assert_eq!(error.line, 7);
        let outcome = error.outcome("upload");
        assert_eq!(outcome["issue"][0]["extension"][0]["valueInteger"], 7);
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("upload, line 7: "));
    }

    #[test]
    fn a_line_needs_a_known_type_an_id_and_valid_content() {
        assert!(check(1, br#"{"resourceType":"Nonsense","id":"a"}"#, None).is_err());
        assert!(check(1, br#"{"resourceType":"Patient"}"#, None).is_err());
        assert!(check(1, br#"{"resourceType":"Patient","id":"a b"}"#, None).is_err());
        let invalid = check(
            1,
            br#"{"resourceType":"Patient","id":"a","gender":7}"#,
            None,
        )
        .err()
        .unwrap();
        assert_eq!(invalid.resource.as_deref(), Some("Patient/a"));
        let ok = check(1, br#"{"resourceType":"Patient","id":"a"}"#, None).unwrap();
        assert_eq!((ok.rtype.as_str(), ok.id.as_str()), ("Patient", "a"));
    }

    #[test]
    fn a_declared_type_refuses_other_types() {
        assert!(check(
            1,
            br#"{"resourceType":"Patient","id":"a"}"#,
            Some("Observation")
        )
        .is_err());
    }
}
