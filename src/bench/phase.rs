//! One phase of the benchmark: N workers repeat an operation until the time or request budget
//! is spent, and the duration of every operation is recorded. Percentiles are computed from
//! the full list of durations (sorted once at the end), not estimated, so p99 and max are the
//! real ones.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a phase runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Time(Duration),
    /// Operations in total, over all workers.
    Requests(u64),
}

/// No single operation may take longer than this; a stuck one counts as an error, so a phase
/// always ends.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Below this many operations the failure rate is not judged during a phase (it still is at
/// its end).
const MIN_JUDGED: u64 = 20;

/// Latency distribution, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub mean: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    /// Nearest-rank percentiles of the recorded durations.
    pub fn of(mut micros: Vec<u64>) -> Self {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * micros.len() as f64).ceil() as usize;
            micros[index.clamp(1, micros.len()) - 1]
        };
        Latency {
            mean: micros.iter().sum::<u64>() / micros.len() as u64,
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: micros[micros.len() - 1],
        }
    }
}

/// What one phase did.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub name: String,
    /// Operations finished (successful or not).
    pub requests: u64,
    /// Operations that failed: a non-2xx status, a transport error, a timeout.
    pub errors: u64,
    /// From the start of the phase until the last worker stopped.
    pub elapsed: Duration,
    /// Durations of all operations, failed ones included.
    pub latency: Latency,
    /// Resources the successful operations wrote or read: one per operation, unless the
    /// phase says otherwise (a transaction of 100 entries writes 100).
    pub resources: u64,
    /// Storage the phase added to the database, per successful operation (with `--database`).
    pub bytes_per_request: Option<f64>,
}

impl PhaseReport {
    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.requests - self.errors) as f64 / secs
        } else {
            0.0
        }
    }

    /// Resources per second of wall time.
    pub fn resource_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.resources as f64 / secs
        } else {
            0.0
        }
    }
}

#[derive(Default)]
struct Shared {
    issued: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    abort: AtomicBool,
    first_error: Mutex<Option<String>>,
}

/// Runs `clients` workers; `make_worker(w)` gives worker `w` its operation, called with a
/// sequence number unique within the phase. Preparing the operation (building and serialising
/// the resource) happens before the clock starts; only the returned future is timed.
///
/// Stops early, with an error, when most operations fail: numbers from a failing server mean
/// nothing, and hammering it further helps no one.
pub async fn drive<M, F, Fut>(
    name: &str,
    clients: usize,
    budget: Budget,
    mut make_worker: M,
) -> Result<PhaseReport, String>
where
    M: FnMut(usize) -> F,
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    match budget {
        Budget::Time(d) => eprintln!(
            "signaal bench: {name}: {clients} clients for {} s",
            d.as_secs()
        ),
        Budget::Requests(n) => eprintln!("signaal bench: {name}: {clients} clients, {n} requests"),
    }
    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let (deadline, limit) = match budget {
        Budget::Time(d) => (Some(start + d), None),
        Budget::Requests(n) => (None, Some(n)),
    };
    let mut workers = Vec::with_capacity(clients);
    for w in 0..clients {
        let mut operation = make_worker(w);
        let shared = shared.clone();
        workers.push(tokio::spawn(async move {
            let mut durations = Vec::new();
            loop {
                if shared.abort.load(Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let seq = shared.issued.fetch_add(1, Relaxed);
                if limit.is_some_and(|n| seq >= n) {
                    break;
                }
                let pending = operation(seq);
                let began = Instant::now();
                let outcome = match tokio::time::timeout(TIMEOUT, pending).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
                };
                durations.push(began.elapsed().as_micros() as u64);
                let done = shared.done.fetch_add(1, Relaxed) + 1;
                if let Err(error) = outcome {
                    let errors = shared.errors.fetch_add(1, Relaxed) + 1;
                    if let Ok(mut first) = shared.first_error.lock() {
                        first.get_or_insert(error);
                    }
                    if done >= MIN_JUDGED && errors * 2 > done {
                        shared.abort.store(true, Relaxed);
                    }
                }
            }
            durations
        }));
    }
    let mut durations = Vec::new();
    for worker in workers {
        durations.extend(
            worker
                .await
                .map_err(|e| format!("{name}: a worker failed: {e}"))?,
        );
    }
    let elapsed = start.elapsed();
    let requests = shared.done.load(Relaxed);
    let errors = shared.errors.load(Relaxed);
    if errors * 2 > requests {
        let first = shared
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        return Err(format!(
            "{name}: {errors} of {requests} requests failed, so the benchmark stopped. \
             First failure: {first}"
        ));
    }
    Ok(PhaseReport {
        bytes_per_request: None,
        name: name.to_owned(),
        requests,
        errors,
        elapsed,
        latency: Latency::of(durations),
        resources: requests - errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::of((1..=100).rev().collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max, l.mean), (50, 95, 99, 100, 50));
        let one = Latency::of(vec![7]);
        assert_eq!((one.p50, one.p99, one.max), (7, 7, 7));
    }

    #[tokio::test]
    async fn stops_when_most_requests_fail() {
        let result = drive("t", 2, Budget::Time(Duration::from_secs(30)), |_| {
            |_| async { Err::<(), _>("500 boom".to_owned()) }
        })
        .await;
        let message = result.unwrap_err();
        assert!(message.contains("First failure: 500 boom"), "{message}");
    }

    #[tokio::test]
    async fn request_budget_is_exact() {
        let report = drive("t", 3, Budget::Requests(10), |_| |_| async { Ok(()) })
            .await
            .unwrap();
        assert_eq!((report.requests, report.errors), (10, 0));
    }
}
