//! The background worker of `signaal serve`: drains the scoring queue (patients whose inputs
//! changed) and re-scores everyone once a day at the configured time.
//!
//! The queue is a table written in the same transaction as the inputs, so a crash loses
//! nothing: a patient stays queued until scored. Scoring is idempotent, so scoring a patient
//! twice (a crash after scoring but before dequeuing, or two servers on one PostgreSQL) is
//! harmless.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{NaiveTime, Utc};

use super::run::{score_all, score_patient};
use crate::app::App;
use crate::fhir::datetime::now_ms;

/// How long the worker sleeps when the queue is empty: the longest a new measurement waits
/// before it is scored (plus the scoring itself).
const IDLE: Duration = Duration::from_millis(100);
/// How many queued patients are read at a time.
const BATCH: usize = 32;

/// Starts the worker; it stops by itself once the server has dropped its `App`.
pub fn spawn(app: &Arc<App>) {
    let app = Arc::downgrade(app);
    tokio::spawn(async move { run(app).await });
}

/// The next instant (ms) the daily re-score is due, strictly after `now`.
fn next_daily(at: NaiveTime, now: i64) -> i64 {
    let now_time = chrono::DateTime::from_timestamp_millis(now).unwrap_or_else(Utc::now);
    let today = now_time
        .date_naive()
        .and_time(at)
        .and_utc()
        .timestamp_millis();
    if today > now {
        today
    } else {
        today + super::DAY_MS
    }
}

async fn run(app: Weak<App>) {
    let mut daily = {
        let Some(app) = app.upgrade() else { return };
        app.scoring
            .config
            .daily_at
            .map(|at| next_daily(at, now_ms()))
    };
    loop {
        let Some(strong) = app.upgrade() else { return };
        if let Some(due) = daily.filter(|due| now_ms() >= *due) {
            let started = std::time::Instant::now();
            match score_all(&*strong.store, &strong.scoring, |_, _| {}).await {
                Ok(n) => tracing::info!(
                    patients = n,
                    seconds = started.elapsed().as_secs_f64(),
                    "daily re-score done"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "daily re-score failed; next attempt tomorrow")
                }
            }
            daily = strong
                .scoring
                .config
                .daily_at
                .map(|at| next_daily(at, due.max(now_ms())));
        }
        let queued = match strong.store.queued(BATCH).await {
            Ok(q) => q,
            Err(e) => {
                drop(strong);
                tracing::debug!(error = %e, "scoring queue not readable");
                tokio::time::sleep(IDLE * 10).await;
                continue;
            }
        };
        if queued.is_empty() {
            drop(strong);
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let mut failed = false;
        for (patient, generation) in queued {
            match score_patient(&*strong.store, &strong.scoring, &patient, now_ms()).await {
                Ok(_) => {
                    if let Err(e) = strong.store.dequeue(&patient, generation).await {
                        tracing::warn!(patient, error = %e, "scored patient not taken off the queue");
                    }
                }
                Err(e) => {
                    // Left queued: retried on the next round, after a pause.
                    tracing::warn!(patient, error = %e, "scoring failed");
                    failed = true;
                }
            }
        }
        drop(strong);
        if failed {
            tokio::time::sleep(IDLE * 10).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::testing::ms;

    #[test]
    fn the_daily_run_is_due_at_the_next_occurrence_of_its_time() {
        let at = NaiveTime::from_hms_opt(2, 0, 0).unwrap();
        assert_eq!(
            next_daily(at, ms("2024-03-01T01:00:00Z")),
            ms("2024-03-01T02:00:00Z")
        );
        assert_eq!(
            next_daily(at, ms("2024-03-01T02:00:00Z")),
            ms("2024-03-02T02:00:00Z")
        );
        assert_eq!(
            next_daily(at, ms("2024-03-01T23:00:00Z")),
            ms("2024-03-02T02:00:00Z")
        );
    }
}
