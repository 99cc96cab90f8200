//! Jobs of the asynchronous request pattern (R4 async page): a request sent with
//! `Prefer: respond-async` is answered at once with 202 and a `Content-Location` to poll, while
//! the work runs in the server as a job. Its status is at `[base]/_async/[id]` (`_` like the
//! other paths that are no resource type): `GET` answers 202 with `X-Progress` while it runs,
//! then the result; `DELETE` cancels it.
//!
//! Jobs live in this process only: their state is that of a task of this process, which a
//! restart ends anyway, so a record in the database would outlive the work it describes and
//! could only say "interrupted". After a restart the status URL answers 404 and the client
//! sends the request again (`$reindex` is safe to repeat; a Bulk Data `$export`, whose jobs
//! have a table of their own and their status at `_export/[id]`, is started again).
//!
//! One job runs at a time per server (a `$reindex` rewrites every index; two would only compete
//! for the same rows): the slot is also taken by the synchronous form of the operation, and a
//! request that finds it taken gets 409.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::{header, StatusCode};
use serde_json::Value;

use crate::error::{information, FhirError};
use crate::fhir::id::new_id;
use crate::http::response::FhirResponse;
use crate::store::Store;

/// The first path segment of a job's status URL.
pub const STATUS_PATH: &str = "_async";

/// How many finished jobs keep their result for polling; older ones answer 404.
const KEEP: usize = 20;

/// The server's jobs.
pub struct Jobs {
    /// The server's own store, unguarded: a job runs as the server, not as the client that
    /// started it (whose grant was checked when it did).
    pub store: Arc<dyn Store>,
    pub table: Arc<Table>,
    /// Bulk Data exports (`export`): a slot of their own, so an export and a reindex do not
    /// wait for each other; one export at a time.
    pub exports: Arc<Table>,
}

impl Jobs {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Jobs {
            store,
            table: Arc::new(Table::default()),
            exports: Arc::new(Table::default()),
        }
    }
}

/// The jobs that can be polled, and the one slot.
#[derive(Default)]
pub struct Table {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The id of the work holding the one slot (a job, or a synchronous run).
    busy: Option<String>,
    /// Jobs that can be polled, oldest first.
    jobs: VecDeque<Arc<Job>>,
}

/// One job: its progress while it runs, its answer once done.
pub struct Job {
    pub id: String,
    /// Who started it (`Agent::key`): only they poll or cancel it; to anyone else its status URL
    /// answers as an unknown job's.
    owner: String,
    pub progress: Progress,
    cancelled: AtomicBool,
    finished: Mutex<Option<FhirResponse>>,
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

/// The one slot, held while work runs; dropping it (work done, failed or abandoned) frees it.
pub struct Slot {
    table: Arc<Table>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.state().busy = None;
    }
}

impl Table {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the slot for work called `what`, or 409 while other work holds it.
    pub fn claim(self: &Arc<Self>, what: &str) -> Result<Slot, FhirError> {
        let mut state = self.state();
        if let Some(busy) = &state.busy {
            let polled = state.jobs.iter().any(|job| &job.id == busy);
            return Err(FhirError::Conflict(if polled {
                format!("{what} is refused: job {busy} is still running (one at a time)")
            } else {
                format!("{what} is refused: another one is still running (one at a time)")
            }));
        }
        state.busy = Some(what.to_owned());
        Ok(Slot {
            table: self.clone(),
        })
    }

    /// Takes the slot and registers a new job of `owner` that can be polled (409 while other
    /// work runs).
    pub fn start(self: &Arc<Self>, what: &str, owner: &str) -> Result<(Arc<Job>, Slot), FhirError> {
        let slot = self.claim(what)?;
        let job = Arc::new(Job {
            id: new_id(),
            owner: owner.to_owned(),
            progress: Progress::default(),
            cancelled: AtomicBool::new(false),
            finished: Mutex::new(None),
        });
        let mut state = self.state();
        state.busy = Some(job.id.clone());
        if state.jobs.len() >= KEEP {
            // Only one job runs at a time, and it is not among these yet: every one is finished.
            state.jobs.pop_front();
        }
        state.jobs.push_back(job.clone());
        Ok((job, slot))
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

    /// `GET [base]/_async/[id]`: 202 with `X-Progress` (done/total resources) while the job
    /// runs, then its answer: 200 with the result, or the error (a 5xx with an OperationOutcome).
    pub fn status(&self, id: &str, owner: &str) -> Result<FhirResponse, FhirError> {
        let job = self.find(id, owner)?;
        if let Some(answer) = &*job.finished() {
            return Ok(FhirResponse::new(answer.status, answer.body.clone()));
        }
        Ok(FhirResponse::new(StatusCode::ACCEPTED, None).with_header(
            header::HeaderName::from_static("x-progress"),
            job.progress.text(),
        ))
    }

    /// `DELETE [base]/_async/[id]`: cancels the job (it stops at its next batch boundary; what
    /// it finished stays done) or forgets the answer of a finished one. Either way the status
    /// URL answers 404 from now on; 202 with an OperationOutcome.
    pub fn cancel(&self, id: &str, owner: &str) -> Result<FhirResponse, FhirError> {
        let job = self.find(id, owner)?;
        job.cancelled.store(true, Ordering::Relaxed);
        self.state().jobs.retain(|j| j.id != id);
        let message = if job.finished().is_some() {
            format!("Job {id} had finished; its result is deleted")
        } else {
            format!("Job {id} is cancelled; it stops after the batch it is working on")
        };
        Ok(FhirResponse::new(
            StatusCode::ACCEPTED,
            Some(information(message)),
        ))
    }
}

impl Job {
    pub fn finished(&self) -> MutexGuard<'_, Option<FhirResponse>> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Records the job's answer. An error is the job's failure, not the poll's: a 5xx (R4
    /// async page, "Error Status") carrying the error's own OperationOutcome.
    pub fn finish(&self, result: Result<Value, FhirError>) {
        let answer = match result {
            Ok(body) => FhirResponse::ok(body),
            Err(error) => {
                let status = error.status();
                let status = if status.is_server_error() {
                    status
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                FhirResponse::new(status, Some(error.into_outcome()))
            }
        };
        *self.finished() = Some(answer);
    }

    /// The kick-off answer: 202, the status URL in `Content-Location`, and an OperationOutcome
    /// saying the same.
    pub fn accepted(&self, status_url: String) -> FhirResponse {
        FhirResponse::new(
            StatusCode::ACCEPTED,
            Some(information(format!(
                "Job {} accepted; its status is at {status_url}",
                self.id
            ))),
        )
        .with_header(header::CONTENT_LOCATION, status_url)
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
    fn a_running_job_reports_progress_then_its_result() {
        let jobs = jobs();
        let (job, _slot) = jobs.start("$reindex", "me").unwrap();
        job.progress.set_total(10);
        job.progress.add_done(4);
        let running = jobs.status(&job.id, "me").unwrap();
        assert_eq!(running.status, StatusCode::ACCEPTED);
        assert_eq!(running.headers[0].1, "4/10");
        job.finish(Err(FhirError::Conflict("x".into())));
        assert_eq!(
            jobs.status(&job.id, "me").unwrap().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_job_answers_only_its_owner() {
        let jobs = jobs();
        let (job, _slot) = jobs.start("$reindex", "me").unwrap();
        assert!(matches!(
            jobs.status(&job.id, "you"),
            Err(FhirError::NotFound(_))
        ));
        assert!(matches!(
            jobs.cancel(&job.id, "you"),
            Err(FhirError::NotFound(_))
        ));
        assert!(!job.cancelled());
        assert_eq!(
            jobs.status(&job.id, "me").unwrap().status,
            StatusCode::ACCEPTED
        );
    }

    #[test]
    fn a_cancelled_job_is_gone_for_pollers_but_keeps_the_slot_until_it_stops() {
        let jobs = jobs();
        let (job, slot) = jobs.start("$reindex", "me").unwrap();
        assert_eq!(
            jobs.cancel(&job.id, "me").unwrap().status,
            StatusCode::ACCEPTED
        );
        assert!(job.cancelled());
        assert!(matches!(
            jobs.status(&job.id, "me"),
            Err(FhirError::NotFound(_))
        ));
        assert!(jobs.claim("$reindex").is_err());
        drop(slot);
        assert!(jobs.claim("$reindex").is_ok());
    }
}

impl Table {
    /// Whether work holds the slot now, and how many jobs can be polled (running or with an
    /// answer not yet collected): the backlog `/metrics` reports.
    pub fn backlog(&self) -> (bool, usize) {
        let state = self.state();
        (state.busy.is_some(), state.jobs.len())
    }
}
