//! Jobs: work a request starts and the server runs after answering it (the R4 asynchronous
//! request pattern: `$reindex` with `Prefer: respond-async`, Bulk Data `$export`, `$import`).
//!
//! A [`Table`] holds the jobs of one kind that can be polled and the slots that limit how many
//! run at once; a [`Job`] its owner, its [`Progress`] and, once done, its [`Answer`]. How a
//! job's status and answer are put on the wire is the HTTP side's (`interaction::async_job`);
//! this module knows no HTTP.
//!
//! A server's tables are recorded in the database (`store::jobs`, table `job`): a job's row is
//! written when it starts, its progress about once a second while it runs, its answer when it
//! ends, and the row is removed when the job is cancelled, deleted or expires. A restart
//! ([`Jobs::open`]) finds every job: a finished one answers as before (an export's manifest
//! and files stay downloadable), one that was running answers its poll with a 500
//! OperationOutcome saying the server restarted while it ran, so no job is ever lost silently.
//! The work itself is not resumed: a job runs with the grant of the request that started it
//! (an export reads as its client may), which a restart does not keep.
//!
//! A table with a files directory keeps each job's files in `DIR/[job id]`; they are removed
//! with the job. Finished jobs expire after the table's expiry (an export's `--export-expiry`).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, now_ms};
use crate::fhir::id::new_id;
use crate::store::jobs::{JobRecord, JobStore};
use crate::store::{Store, StoreResult};

/// How many finished jobs a table keeps for polling; older ones are forgotten (404).
const KEEP: usize = 20;

/// How often running jobs' progress is recorded and finished jobs checked for expiry.
const TICK: Duration = Duration::from_secs(1);

/// The settings of jobs (`signaal serve --export-…`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where export files are written (a directory per job); `None`: next to the database
    /// (`signaal-export` beside a SQLite file, in the system's temporary directory for
    /// PostgreSQL).
    pub export_dir: Option<PathBuf>,
    /// The size in bytes past which a type's export continues in a new file.
    pub export_file_size: u64,
    /// How long a finished export (its manifest and files) is kept.
    pub export_expiry: Duration,
    /// How many exports may run at once; one more is refused with 429.
    pub max_exports: usize,
}

/// The default of `export_file_size`: 64 MiB.
pub const DEFAULT_EXPORT_FILE_SIZE: u64 = 64 * 1024 * 1024;
/// The default of `export_expiry`, in seconds: a day.
pub const DEFAULT_EXPORT_EXPIRY: u64 = 24 * 3600;
/// The default of `max_exports`.
pub const DEFAULT_MAX_EXPORTS: usize = 2;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            export_dir: None,
            export_file_size: DEFAULT_EXPORT_FILE_SIZE,
            export_expiry: Duration::from_secs(DEFAULT_EXPORT_EXPIRY),
            max_exports: DEFAULT_MAX_EXPORTS,
        }
    }
}

impl Settings {
    /// The export directory: the one set, or the default for the database at `database_url`.
    pub fn export_dir(&self, database_url: &str) -> PathBuf {
        if let Some(dir) = &self.export_dir {
            return dir.clone();
        }
        let file = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty());
        match file.and_then(|path| Path::new(path).parent()) {
            Some(parent) if parent.as_os_str().is_empty() => PathBuf::from("signaal-export"),
            Some(parent) => parent.join("signaal-export"),
            None => std::env::temp_dir().join("signaal-export"),
        }
    }
}

/// The server's jobs.
pub struct Jobs {
    /// The server's own store, unguarded: a job runs as the server, not as the client that
    /// started it (whose grant was checked when it did).
    pub store: Arc<dyn Store>,
    pub table: Arc<Table>,
    /// Bulk Data exports (`export`): slots of their own, so an export and a reindex do not
    /// wait for each other; at most `max_exports` at a time.
    pub exports: Arc<Table>,
    /// Bulk imports (`$import`): one at a time; a job's files are its error file.
    pub imports: Arc<Table>,
    pub settings: Settings,
}

impl Jobs {
    /// Jobs in this process only (nothing recorded), with the default settings.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let settings = Settings::default();
        let mut exports = Table::with_limit(settings.max_exports);
        exports.files = Some(std::env::temp_dir().join("signaal-export"));
        let mut imports = Table::with_limit(1);
        imports.files = Some(std::env::temp_dir().join("signaal-import"));
        Jobs {
            store,
            table: Arc::new(Table::default()),
            exports: Arc::new(exports),
            imports: Arc::new(imports),
            settings,
        }
    }

    /// The server's jobs, recorded in `records`: those a previous run left are loaded (the
    /// running ones failed, see the module doc), and a task records progress and expires
    /// finished exports for as long as the tables live. `settings.export_dir` is resolved.
    pub async fn open(
        store: Arc<dyn Store>,
        records: Arc<dyn JobStore>,
        mut settings: Settings,
        database_url: &str,
    ) -> StoreResult<Self> {
        let export_dir = settings.export_dir(database_url);
        settings.export_dir = Some(export_dir.clone());
        let (sender, events) = mpsc::unbounded_channel();
        let recorder = |kind: &str| Recorder {
            kind: kind.to_owned(),
            store: records.clone(),
            events: sender.clone(),
        };
        let mut table = Table::with_limit(1);
        table.recorder = Some(recorder("reindex"));
        let mut exports = Table::with_limit(settings.max_exports);
        exports.recorder = Some(recorder("export"));
        exports.files = Some(export_dir.clone());
        exports.expiry = Some(settings.export_expiry);
        let mut imports = Table::with_limit(1);
        imports.recorder = Some(recorder("import"));
        imports.files = Some(import_dir(&export_dir));
        imports.expiry = Some(settings.export_expiry);
        let (table, exports, imports) = (Arc::new(table), Arc::new(exports), Arc::new(imports));
        for table in [&table, &exports, &imports] {
            table.load().await?;
        }
        tokio::spawn(record(
            records,
            events,
            vec![
                Arc::downgrade(&table),
                Arc::downgrade(&exports),
                Arc::downgrade(&imports),
            ],
        ));
        Ok(Jobs {
            store,
            table,
            exports,
            imports,
            settings,
        })
    }
}

/// Where import jobs keep their error files: `signaal-import` beside the export directory.
fn import_dir(export_dir: &Path) -> PathBuf {
    match export_dir.parent() {
        Some(parent) => parent.join("signaal-import"),
        None => PathBuf::from("signaal-import"),
    }
}

/// What a table tells its recorder, in order.
enum Event {
    Start(JobRecord),
    Finish {
        id: String,
        status: i64,
        answer: String,
        at: i64,
    },
    Remove(String),
}

/// Where a table records its jobs.
#[derive(Clone)]
struct Recorder {
    kind: String,
    store: Arc<dyn JobStore>,
    events: mpsc::UnboundedSender<Event>,
}

/// Writes the tables' events and, every [`TICK`], their running jobs' progress; expires
/// finished jobs. Ends when every table is gone.
async fn record(
    store: Arc<dyn JobStore>,
    mut events: mpsc::UnboundedReceiver<Event>,
    tables: Vec<Weak<Table>>,
) {
    let mut written: HashMap<String, (u64, u64)> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let result = match event {
                    Event::Start(job) => store.insert_job(&job).await,
                    Event::Finish { id, status, answer, at } => {
                        written.remove(&id);
                        store.finish_job(&id, status, &answer, at).await
                    }
                    Event::Remove(id) => {
                        written.remove(&id);
                        store.remove_job(&id).await
                    }
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "a job's record could not be written");
                }
            }
            _ = tick.tick() => {
                let live: Vec<Arc<Table>> = tables.iter().filter_map(Weak::upgrade).collect();
                if live.is_empty() {
                    return;
                }
                let now = now_ms();
                for table in live {
                    table.expire(now);
                    for job in table.running() {
                        let progress = (job.progress.done(), job.progress.total());
                        if written.get(&job.id) == Some(&progress) {
                            continue;
                        }
                        let (done, total) = (progress.0 as i64, progress.1 as i64);
                        if let Err(error) = store.job_progress(&job.id, done, total, now).await {
                            tracing::warn!(job = job.id, %error, "a job's progress could not be written");
                        } else {
                            written.insert(job.id.clone(), progress);
                        }
                    }
                }
            }
        }
    }
}

/// The jobs that can be polled, and the slots.
pub struct Table {
    state: Mutex<State>,
    /// How much work may run at once.
    limit: usize,
    recorder: Option<Recorder>,
    /// Where the jobs' files are (`DIR/[job id]`).
    files: Option<PathBuf>,
    /// How long a finished job is kept.
    expiry: Option<Duration>,
}

impl Default for Table {
    /// One job at a time, in this process only.
    fn default() -> Self {
        Table::with_limit(1)
    }
}

#[derive(Default)]
struct State {
    /// The ids of the work holding a slot (a job, or a synchronous run).
    running: Vec<String>,
    /// Jobs that can be polled, oldest first.
    jobs: VecDeque<Arc<Job>>,
}

/// A finished job's answer: the status the poll answers with and its body (the result, or the
/// OperationOutcome of the failure), and when it finished (ms).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub at: i64,
}

/// One job: its progress while it runs, its answer once done.
pub struct Job {
    pub id: String,
    /// Who started it (`Agent::key`): only they poll or cancel it; to anyone else its status URL
    /// answers as an unknown job's.
    owner: String,
    pub progress: Progress,
    cancelled: AtomicBool,
    finished: Mutex<Option<Answer>>,
    recorder: Option<Recorder>,
}

/// How far work has come, in resources.
#[derive(Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

impl Progress {
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// `done/total` for `X-Progress`. The total is counted when the work starts; resources
    /// written since can make it more, so it is raised to what is done.
    pub fn text(&self) -> String {
        let done = self.done();
        format!("{done}/{}", self.total().max(done))
    }
}

/// A slot, held while work runs; dropping it (work done, failed or abandoned) frees it.
pub struct Slot {
    table: Arc<Table>,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.table.state();
        if let Some(i) = state.running.iter().position(|r| r == &self.id) {
            state.running.remove(i);
        }
    }
}

impl Table {
    /// A table in this process only where `limit` jobs may run at once.
    pub fn with_limit(limit: usize) -> Self {
        Table {
            state: Mutex::new(State::default()),
            limit: limit.max(1),
            recorder: None,
            files: None,
            expiry: None,
        }
    }

    /// How much work holds a slot now, and how many jobs can be polled (running or with an
    /// answer not yet collected): the backlog `/metrics` reports.
    pub fn backlog(&self) -> (usize, usize) {
        let state = self.state();
        (state.running.len(), state.jobs.len())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for work called `what`, or 409 while the table's limit of work runs.
    pub fn claim(self: &Arc<Self>, what: &str) -> Result<Slot, FhirError> {
        self.claim_as(what, what.to_owned())
    }

    fn claim_as(self: &Arc<Self>, what: &str, id: String) -> Result<Slot, FhirError> {
        let mut state = self.state();
        if state.running.len() >= self.limit {
            let polled: Vec<&str> = state
                .running
                .iter()
                .filter(|busy| state.jobs.iter().any(|job| &&job.id == busy))
                .map(String::as_str)
                .collect();
            let at_a_time = if self.limit == 1 {
                "one at a time".to_owned()
            } else {
                format!("{} at a time", self.limit)
            };
            return Err(FhirError::Conflict(if polled.is_empty() {
                format!("{what} is refused: another one is still running ({at_a_time})")
            } else if polled.len() == 1 {
                format!(
                    "{what} is refused: job {} is still running ({at_a_time})",
                    polled[0]
                )
            } else {
                format!(
                    "{what} is refused: jobs {} are still running ({at_a_time})",
                    polled.join(", ")
                )
            }));
        }
        state.running.push(id.clone());
        Ok(Slot {
            table: self.clone(),
            id,
        })
    }

    /// Takes a slot and registers a new job of `owner` that can be polled (409 while the
    /// table's limit of work runs). Its record is written in the background; see
    /// [`Table::start_recorded`] to wait for it.
    pub fn start(self: &Arc<Self>, what: &str, owner: &str) -> Result<(Arc<Job>, Slot), FhirError> {
        let (job, slot) = self.new_job(what, owner)?;
        if let Some(recorder) = &self.recorder {
            let _ = recorder
                .events
                .send(Event::Start(job.record(&recorder.kind)));
        }
        Ok((job, slot))
    }

    /// [`Table::start`], answering once the job's record is written: a job the client is told
    /// about is one a restart finds (the record failing, the job is not started).
    pub async fn start_recorded(
        self: &Arc<Self>,
        what: &str,
        owner: &str,
    ) -> Result<(Arc<Job>, Slot), FhirError> {
        let (job, slot) = self.new_job(what, owner)?;
        if let Some(recorder) = &self.recorder {
            if let Err(error) = recorder.store.insert_job(&job.record(&recorder.kind)).await {
                self.state().jobs.retain(|j| j.id != job.id);
                return Err(error.into());
            }
        }
        Ok((job, slot))
    }

    fn new_job(self: &Arc<Self>, what: &str, owner: &str) -> Result<(Arc<Job>, Slot), FhirError> {
        let id = new_id();
        let slot = self.claim_as(what, id.clone())?;
        let job = Arc::new(Job {
            id,
            owner: owner.to_owned(),
            progress: Progress::default(),
            cancelled: AtomicBool::new(false),
            finished: Mutex::new(None),
            recorder: self.recorder.clone(),
        });
        self.keep(job.clone());
        Ok((job, slot))
    }

    /// Keeps a job for polling, forgetting the oldest finished one past [`KEEP`].
    fn keep(&self, job: Arc<Job>) {
        let mut state = self.state();
        state.jobs.push_back(job);
        while state.jobs.len() > KEEP + self.limit {
            match state.jobs.iter().position(|j| j.finished().is_some()) {
                Some(i) => {
                    let old = state.jobs.remove(i).expect("found above");
                    self.removed(&old.id);
                }
                None => break,
            }
        }
    }

    /// The job `id` of `owner` (404 for anyone else, as for an unknown job).
    pub fn find(&self, id: &str, owner: &str) -> Result<Arc<Job>, FhirError> {
        self.state()
            .jobs
            .iter()
            .find(|job| job.id == id && job.owner == owner)
            .cloned()
            .ok_or_else(|| FhirError::NotFound(format!("No asynchronous job {id}")))
    }

    /// Forgets job `id`: its status URL answers 404 from now on, its record and files go.
    pub fn forget(&self, id: &str) {
        self.state().jobs.retain(|j| j.id != id);
        self.removed(id);
    }

    /// The directory of job `id`'s files, for a table that keeps files.
    pub fn files(&self, id: &str) -> Option<PathBuf> {
        self.files.as_ref().map(|dir| dir.join(id))
    }

    /// A job is gone: its record and its files too.
    fn removed(&self, id: &str) {
        if let Some(recorder) = &self.recorder {
            let _ = recorder.events.send(Event::Remove(id.to_owned()));
        }
        if let Some(dir) = self.files(id) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// The jobs still running.
    fn running(&self) -> Vec<Arc<Job>> {
        self.state()
            .jobs
            .iter()
            .filter(|j| j.finished().is_none())
            .cloned()
            .collect()
    }

    /// Forgets the finished jobs older than the table's expiry.
    fn expire(&self, now: i64) {
        let Some(expiry) = self.expiry else { return };
        let expired: Vec<String> = self
            .state()
            .jobs
            .iter()
            .filter(|j| {
                j.finished()
                    .as_ref()
                    .is_some_and(|a| a.at + expiry.as_millis() as i64 <= now)
            })
            .map(|j| j.id.clone())
            .collect();
        for id in expired {
            tracing::info!(job = id, "a finished job expired; its files are removed");
            self.forget(&id);
        }
    }

    /// When a finished job `job` expires (ms), for a table whose jobs do.
    pub fn expires(&self, job: &Job) -> Option<i64> {
        let expiry = self.expiry?;
        let at = job.finished().as_ref()?.at;
        Some(at + expiry.as_millis() as i64)
    }

    /// Loads the jobs a previous run recorded (see the module doc).
    async fn load(self: &Arc<Self>) -> StoreResult<()> {
        let Some(recorder) = &self.recorder else {
            return Ok(());
        };
        for record in recorder.store.jobs(&recorder.kind).await? {
            let job = Job {
                id: record.id.clone(),
                owner: record.owner.clone(),
                progress: Progress::default(),
                cancelled: AtomicBool::new(false),
                finished: Mutex::new(None),
                recorder: Some(recorder.clone()),
            };
            job.progress.set_total(record.total as u64);
            job.progress.add_done(record.done as u64);
            match &record.finished {
                Some((status, answer)) => {
                    *job.finished() = Some(Answer {
                        status: StatusCode::from_u16(*status as u16)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        body: serde_json::from_str(answer).ok(),
                        at: record.updated,
                    });
                }
                None => {
                    // Its work died with the previous run: say so, and drop what it wrote.
                    if let Some(dir) = self.files(&record.id) {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    job.finish(Err(FhirError::Internal(format!(
                        "The server restarted while job {} ran (started {}, {} of {} \
                         resources done); its work is lost: start it again",
                        record.id,
                        format_instant(record.started),
                        record.done,
                        record.total.max(record.done),
                    ))));
                }
            }
            self.keep(Arc::new(job));
        }
        Ok(())
    }
}

impl Job {
    pub fn finished(&self) -> MutexGuard<'_, Option<Answer>> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Asks the job to stop (at its next batch boundary).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// The job's record as it starts.
    fn record(&self, kind: &str) -> JobRecord {
        let now = now_ms();
        JobRecord {
            id: self.id.clone(),
            kind: kind.to_owned(),
            owner: self.owner.clone(),
            done: 0,
            total: 0,
            finished: None,
            started: now,
            updated: now,
        }
    }

    /// Records the job's answer. An error is the job's failure, not the poll's: a 5xx (R4
    /// async page, "Error Status") carrying the error's own OperationOutcome.
    pub fn finish(&self, result: Result<Value, FhirError>) {
        let at = now_ms();
        let answer = match result {
            Ok(body) => Answer {
                status: StatusCode::OK,
                body: Some(body),
                at,
            },
            Err(error) => {
                let status = error.status();
                let status = if status.is_server_error() {
                    status
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                Answer {
                    status,
                    body: Some(error.into_outcome()),
                    at,
                }
            }
        };
        if let Some(recorder) = &self.recorder {
            let _ = recorder.events.send(Event::Finish {
                id: self.id.clone(),
                status: answer.status.as_u16() as i64,
                answer: answer
                    .body
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_else(|| "null".into()),
                at,
            });
        }
        *self.finished() = Some(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs() -> Arc<Table> {
        Arc::new(Table::default())
    }

    #[test]
    fn one_job_at_a_time_and_the_slot_frees_when_it_ends() {
        let jobs = jobs();
        let (job, slot) = jobs.start("$reindex", "me").unwrap();
        let refused = jobs.start("$reindex", "me").err().unwrap();
        assert!(matches!(refused, FhirError::Conflict(ref m) if m.contains(&job.id)));
        assert!(jobs.claim("$reindex").is_err());
        drop(slot);
        assert!(jobs.claim("$reindex").is_ok());
    }

    #[test]
    fn a_failed_job_answers_with_a_server_error() {
        let jobs = jobs();
        let (job, _slot) = jobs.start("$reindex", "me").unwrap();
        job.finish(Err(FhirError::Conflict("x".into())));
        let answer = job.finished().clone().unwrap();
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.body.unwrap()["resourceType"], "OperationOutcome");
    }

    #[test]
    fn a_job_is_found_by_its_owner_only() {
        let jobs = jobs();
        let (job, _slot) = jobs.start("$reindex", "me").unwrap();
        assert!(matches!(
            jobs.find(&job.id, "you"),
            Err(FhirError::NotFound(_))
        ));
        assert!(jobs.find(&job.id, "me").is_ok());
    }
}
