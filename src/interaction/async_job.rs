//! Jobs of the asynchronous request pattern (R4 async page), as the client sees them: a
//! request sent with `Prefer: respond-async` is answered at once with 202 and a
//! `Content-Location` to poll, while the work runs in the server as a job (`crate::jobs`). Its
//! status is at `[base]/_async/[id]` (`_` like the other paths that are no resource type):
//! `GET` answers 202 with `X-Progress` while it runs, then the result; `DELETE` cancels it.
//!
//! One job runs at a time per table (a `$reindex` rewrites every index; two would only compete
//! for the same rows): the slot is also taken by the synchronous form of the operation, and a
//! request that finds it taken gets 409.

use axum::http::{header, StatusCode};

use crate::error::{information, FhirError};
use crate::http::response::FhirResponse;
pub use crate::jobs::{Answer, Job, Jobs, Progress, Slot, Table};

/// The first path segment of a job's status URL.
pub const STATUS_PATH: &str = "_async";

impl Table {
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
        job.cancel();
        self.forget(id);
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
    use std::sync::Arc;

    use super::*;

    fn jobs() -> Arc<Table> {
        Arc::new(Table::default())
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
