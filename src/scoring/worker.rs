//! The background worker of `signaal serve`: drains the scoring queue (patients whose inputs
//! changed) and re-scores everyone once a day at the configured time.
//!
//! It does not poll for new work: a commit that queues a patient wakes it (the store's
//! [`Store::queue_signal`]: in-process, and on PostgreSQL from every server on the database
//! through `LISTEN`/`NOTIFY`). A slow fallback poll (`Config::poll`, 5 s by default) picks up
//! retries that fall due, measurements stamped in the future and any wake-up that was lost.
//!
//! The queue is a table written in the same transaction as the inputs, so a crash loses
//! nothing: a patient stays queued until scored, and leaves the queue in the transaction that
//! writes its scores (one commit per patient; see `run::score_queued`). Scoring is idempotent,
//! so scoring a patient twice is harmless. Claimed patients are scored a few at a time
//! ([`CONCURRENT`]), so one patient's reads overlap another's commit. Servers on one PostgreSQL
//! claim the patients they score (`Store::claim`, `FOR UPDATE SKIP LOCKED`), so each patient is
//! scored by one of them; a claim lapses after [`CLAIM_MS`] when its server died. A patient whose scoring fails (or panics) is retried with backoff and parked after
//! [`MAX_ATTEMPTS`], logged as an error and listed by `signaal score --failed`; the others go
//! on. The daily re-score runs a batch at a time between rounds of queue work, so new data is
//! scored while it runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{NaiveTime, Utc};

pub use super::run::Scored;
use super::run::{score_queued, FullRescore};
use super::terms::Terms;
use crate::app::App;
use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, now_ms};
use crate::store::{Queued, Store};

/// How long the worker waits after the queue could not be read.
const UNREADABLE: Duration = Duration::from_secs(1);
/// How many patients of the daily re-score are done between two rounds of queue work.
const BATCH: usize = 32;
/// How long a claim on a queued patient holds (`Store::claim`): far longer than scoring one
/// patient takes; when the server that claimed it dies, another scores it after this.
const CLAIM_MS: i64 = 60_000;
/// Failed attempts after which a patient is parked (until its data changes).
pub const MAX_ATTEMPTS: i64 = 5;
/// The wait after the first failure; each further failure waits 4 times longer (5 s, 20 s,
/// 80 s, 320 s: about 7 minutes from the first failure to parking, long enough to ride out a
/// database restart).
const FIRST_RETRY_MS: i64 = 5_000;

/// When to try again after the `attempts`-th failure; `None`: park.
pub fn retry_at(attempts: i64, now: i64) -> Option<i64> {
    (attempts < MAX_ATTEMPTS).then(|| now + FIRST_RETRY_MS * 4i64.pow(attempts.max(1) as u32 - 1))
}

/// Starts the worker; it stops by itself once the server has dropped its `App`.
pub fn spawn(app: &Arc<App>) {
    let workers = app.workers.clone();
    let weak = Arc::downgrade(app);
    app.workers.spawn(async move { run(weak, workers).await });
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

/// How many claimed patients are scored at once: their reads and model runs overlap each
/// other's writes, and on SQLite their transactions share the group's commit (the one writer
/// still writes them one at a time).
const CONCURRENT: usize = 8;
/// How many queued patients a round claims: as many as are scored at once, so that a round
/// lasts about as long as scoring one patient, and a patient queued while it runs is claimed
/// by the next (with a longer batch it would wait for the whole batch to be scored first).
const CLAIMED: usize = CONCURRENT;

/// One round of queue work at `now`: claims the oldest due patients (at most [`CLAIMED`]), scores each
/// with `score` ([`CONCURRENT`] at a time, each in a task of its own, so that a panic fails
/// that patient only), defers the failed ones, and takes the scored ones off the queue unless
/// `score` settled them itself (or, when `score` answers a later instant — a measurement
/// stamped in the future — keeps them queued for then): all of them at the end of the round,
/// in one transaction. Returns how many were due.
pub async fn drain<F, Fut>(store: &dyn Store, now: i64, mut score: F) -> Result<usize, FhirError>
where
    F: FnMut(Queued) -> Fut,
    Fut: Future<Output = Result<Scored, FhirError>> + Send + 'static,
{
    let started = std::time::Instant::now();
    let queued = store.claim(CLAIMED, now, now + CLAIM_MS).await?;
    let claimed = started.elapsed();
    let mut waiting = queued.iter();
    let mut running = tokio::task::JoinSet::new();
    let mut scoring: HashMap<tokio::task::Id, &Queued> = HashMap::new();
    let mut unsettled: Vec<(&Queued, Option<i64>)> = Vec::new();
    loop {
        while running.len() < CONCURRENT {
            let Some(q) = waiting.next() else { break };
            let task = running.spawn(score(q.clone()));
            scoring.insert(task.id(), q);
        }
        let (id, outcome) = match running.join_next_with_id().await {
            None => break,
            Some(Ok((id, outcome))) => (id, outcome),
            Some(Err(e)) => (
                e.id(),
                Err(FhirError::Internal(format!("scoring stopped: {e}"))),
            ),
        };
        let Some(q) = scoring.remove(&id) else {
            continue;
        };
        match outcome {
            Ok(Scored::Due(due)) => unsettled.push((q, due)),
            outcome => settle(store, q, outcome, now).await,
        }
    }
    settle_together(store, unsettled).await;
    if !queued.is_empty() {
        tracing::debug!(
            patients = queued.len(),
            claim_ms = claimed.as_secs_f64() * 1e3,
            round_ms = started.elapsed().as_secs_f64() * 1e3,
            "scoring round"
        );
    }
    Ok(queued.len())
}

/// Settles the round's scored patients whose scoring left their queue entries to the worker
/// (`Scored::Due`: their scores did not change, so nothing was written to settle them with),
/// together (`Store::settle_scored`; decision 0057). Should that fail, they stay claimed until
/// the claim lapses, and are scored again then.
async fn settle_together(store: &dyn Store, due: Vec<(&Queued, Option<i64>)>) {
    if due.is_empty() {
        return;
    }
    let mut scored: Vec<(String, i64, Option<i64>)> = due
        .iter()
        .map(|(q, at)| (q.patient.clone(), q.generation, *at))
        .collect();
    scored.sort();
    if let Err(e) = store.settle_scored(&scored).await {
        tracing::warn!(error = %e, patients = scored.len(), "scored patients not taken off the queue");
    }
}

/// Takes a scored patient off the queue (unless its scoring did), keeps it for later, or
/// records the failure with its retry.
async fn settle(store: &dyn Store, q: &Queued, outcome: Result<Scored, FhirError>, now: i64) {
    match outcome {
        Ok(Scored::Settled) => {}
        Ok(Scored::Due(at)) => settle_together(store, vec![(q, at)]).await,
        Err(e) => {
            let attempts = q.attempts + 1;
            let retry = retry_at(attempts, now);
            let error = e.to_string();
            match retry {
                Some(at) => tracing::warn!(
                    patient = q.patient,
                    attempts,
                    error,
                    next_attempt = format_instant(at),
                    "scoring failed; retried later"
                ),
                None => tracing::error!(
                    patient = q.patient,
                    attempts,
                    error,
                    "scoring failed {attempts} times; parked until the patient's data changes \
                     (signaal score --failed lists it)"
                ),
            }
            if let Err(e) = store.defer(&q.patient, q.generation, retry, &error).await {
                tracing::warn!(patient = q.patient, error = %e, "failed scoring not recorded");
            }
        }
    }
}

/// The terminology of one round of queue work: read once, by the first patient scored (after
/// the claim, so it holds what was stored before the writes that queued the patients), then
/// shared by the others.
type RoundTerms = Arc<tokio::sync::OnceCell<Arc<Terms>>>;

/// Scores a claimed patient with the server's search parameters and scoring settings, settling
/// its queue entry in the transaction of the scores that changed (or, when none did, leaving
/// it to the round's end).
async fn score_claimed(
    app: Arc<App>,
    terms: RoundTerms,
    queued: Queued,
) -> Result<Scored, FhirError> {
    let registry = app.search_params.current();
    let terms = terms
        .get_or_try_init(|| app.scoring.terms(&*app.store))
        .await?;
    let outcome = score_queued(
        &*app.store,
        registry,
        &app.scoring,
        terms,
        &queued,
        now_ms(),
    )
    .await?;
    Ok(outcome.scored())
}

async fn run(app: Weak<App>, workers: Arc<crate::app::Workers>) {
    let (mut daily, poll, wake) = {
        let Some(app) = app.upgrade() else { return };
        let daily = app
            .scoring
            .config
            .daily_at
            .map(|at| next_daily(at, now_ms()));
        (daily, app.scoring.config.poll, app.store.queue_signal())
    };
    // Without a signal from the store, the fallback poll is all there is.
    let idle = |poll: Duration| {
        let wake = wake.clone();
        async move {
            match wake {
                Some(wake) => {
                    let _ = tokio::time::timeout(poll, wake.notified()).await;
                }
                None => tokio::time::sleep(poll.min(Duration::from_millis(100))).await,
            }
        }
    };
    let mut full: Option<(FullRescore, std::time::Instant)> = None;
    loop {
        if workers.stopping() {
            return;
        }
        let Some(strong) = app.upgrade() else { return };
        if let Some(due) = daily.filter(|due| full.is_none() && now_ms() >= *due) {
            match FullRescore::start(&*strong.store, now_ms()).await {
                Ok(run) => full = Some((run, std::time::Instant::now())),
                Err(e) => {
                    tracing::warn!(error = %e, "daily re-score not started; next attempt tomorrow")
                }
            }
            daily = strong
                .scoring
                .config
                .daily_at
                .map(|at| next_daily(at, due.max(now_ms())));
        }
        if let Some((run, started)) = &mut full {
            let registry = strong.search_params.current();
            match run
                .step(&*strong.store, registry, &strong.scoring, BATCH)
                .await
            {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(
                        patients = run.total(),
                        failed = run.failed,
                        seconds = started.elapsed().as_secs_f64(),
                        "daily re-score done"
                    );
                    full = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "daily re-score failed; next attempt tomorrow");
                    full = None;
                }
            }
        }
        let terms = RoundTerms::default();
        let round = drain(&*strong.store, now_ms(), |queued| {
            score_claimed(strong.clone(), terms.clone(), queued)
        })
        .await;
        let busy = full.is_some();
        drop(strong);
        match round {
            // Until a commit queues a patient (a wake-up that came while the round ran is
            // kept: the next wait returns at once), the fallback poll, or the daily run.
            Ok(0) if !busy => {
                let until_daily = daily
                    .map(|due| Duration::from_millis((due - now_ms()).max(0) as u64))
                    .unwrap_or(poll);
                tokio::select! {
                    _ = idle(poll.min(until_daily)) => {}
                    _ = workers.stopped() => return,
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "scoring queue not readable");
                tokio::time::sleep(UNREADABLE).await;
            }
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
