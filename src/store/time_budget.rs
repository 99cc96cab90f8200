//! The time budget of a request's searches.
//!
//! The HTTP layer runs each request [`within`] a budget (`--search-timeout`): the search
//! statements the request runs (searches, counts, includes, `$everything`'s compartment, the
//! searches of conditional interactions inside their write transaction) may take that long in
//! all. Each statement runs with what is left, and the database stops it when that is spent:
//! SQLite through a progress handler, PostgreSQL through `statement_timeout` (see
//! [`Backend::arm`](super::backend::Backend::arm)). The request then fails with
//! [`StoreError::TimedOut`] (400, `too-costly`). A statement whose request is dropped (the
//! client went away, or the server's shutdown deadline passed) is stopped too: SQLite's
//! progress handler sees it, and a PostgreSQL connection running it is closed, which the
//! server notices (`client_connection_check_interval`).
//!
//! Work outside a request (the scoring worker, the audit writer, export and reindex jobs) runs
//! without a budget: the budget lives in the request's task.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::StoreError;

tokio::task_local! {
    static BUDGET: Arc<Clock>;
}

/// Runs `work` with the search statements it runs limited to `timeout` in all.
pub async fn within<F: Future>(timeout: Duration, work: F) -> F::Output {
    BUDGET
        .scope(
            Arc::new(Clock {
                timeout,
                spent: Mutex::new(Duration::ZERO),
            }),
            work,
        )
        .await
}

/// The budget of the request running now, if any.
pub(crate) fn current() -> Option<Arc<Clock>> {
    BUDGET.try_with(Arc::clone).ok()
}

/// What a request's search statements have spent of its budget.
pub(crate) struct Clock {
    timeout: Duration,
    spent: Mutex<Duration>,
}

impl Clock {
    /// Starts a statement with what is left of the budget; refused when nothing is.
    pub(crate) fn start(&self) -> Result<Limit, StoreError> {
        let left = self.timeout.saturating_sub(*self.spent.lock().unwrap());
        // Below a millisecond, PostgreSQL's statement_timeout cannot say it.
        if left < Duration::from_millis(1) {
            return Err(self.spent_error());
        }
        let started = Instant::now();
        let alive = Arc::new(());
        Ok(Limit {
            started,
            deadline: started + left,
            left,
            watch: Arc::downgrade(&alive),
            alive,
        })
    }

    /// Counts a finished statement's time.
    pub(crate) fn spend(&self, limit: &Limit) {
        *self.spent.lock().unwrap() += limit.started.elapsed();
    }

    /// The error of a statement stopped by the budget (`stopped`: the database's error).
    pub(crate) fn spent_error(&self) -> StoreError {
        StoreError::TimedOut(format!(
            "The search was stopped: the searches of one request may run for {} s in all (the \
             server's search-timeout). Narrow it down: more selective parameters, fewer \
             _include/_revinclude, a smaller _count",
            self.timeout.as_secs_f64()
        ))
    }
}

/// The limit of one statement: its deadline, and whether the request that runs it is still
/// waiting for it.
pub struct Limit {
    started: Instant,
    /// When the statement must have ended.
    pub deadline: Instant,
    /// The time it has, from its start.
    pub left: Duration,
    /// Dropped with the statement's future: a statement whose request went away is stopped.
    alive: Arc<()>,
    watch: Weak<()>,
}

impl Limit {
    /// What a database's progress check calls: whether the statement may go on.
    pub fn check(&self) -> impl Fn() -> bool + Send + 'static {
        let (deadline, watch) = (self.deadline, self.watch.clone());
        move || watch.strong_count() > 0 && Instant::now() < deadline
    }

    /// Whether the statement's time is up.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Keeps the statement alive until the limit is dropped.
    pub fn alive(&self) -> &Arc<()> {
        &self.alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_share_one_budget_per_request() {
        assert!(current().is_none(), "no budget outside a request");
        within(Duration::from_millis(30), async {
            let clock = current().expect("a budget inside");
            let limit = clock.start().unwrap();
            assert!(limit.left <= Duration::from_millis(30));
            assert!(limit.check()());
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert!(!limit.check()(), "past the deadline");
            clock.spend(&limit);
            assert!(matches!(clock.start(), Err(StoreError::TimedOut(_))));
        })
        .await;
    }

    #[tokio::test]
    async fn a_dropped_statement_is_stopped() {
        within(Duration::from_secs(60), async {
            let limit = current().unwrap().start().unwrap();
            let check = limit.check();
            assert!(check());
            drop(limit);
            assert!(!check(), "the statement's request went away");
        })
        .await;
    }
}
