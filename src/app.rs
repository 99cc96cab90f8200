//! What every request handler shares: the store and the server's settings.

use std::sync::Arc;

use crate::auth::{Access, Auth};
use crate::jobs::Jobs;
use crate::search::definitions::{Registry, ServerRegistry};
use crate::store::Store;
use crate::write::Indexing;

#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    /// The search parameters: official, and the active SearchParameter resources stored.
    pub search_params: Arc<ServerRegistry>,
    /// The search parameters this request searches and writes with (the server's registry when
    /// it began), and whether its writes changed them: the HTTP layer gives every request its
    /// own and reloads `search_params` after one that changed them. Work outside a request (the
    /// scorer, the audit writer) takes `search_params.current()` instead.
    pub indexing: Arc<Indexing>,
    /// The FHIR base URL clients use, without a trailing slash (`http://127.0.0.1:8080/fhir`):
    /// `Location`, `fullUrl` and paging links are built from it.
    pub base_url: String,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The most entries a batch or transaction Bundle may have (more: 413).
    pub max_bundle_entries: usize,
    /// How much work one search may ask for (terms, chain depth, includes, `:iterate` rounds).
    pub search_budget: crate::search::budget::Budget,
    /// Risk scoring: its settings and the population threshold of the last full re-score.
    pub scoring: Arc<crate::scoring::run::Scoring>,
    /// Clients, tokens and the audit trail.
    pub auth: Arc<Auth>,
    /// Who is asking: the request's access (set by the HTTP layer for each request; the
    /// server's own `App` has none, `Access::Unauthenticated`). The audit log's interactions
    /// check it (`auth::audit::confine`); everything else meets it through the guarded store.
    pub access: Access,
    /// `--access-log`: log one line per request at info level (at debug otherwise).
    pub access_log: bool,
    /// How the server treats connections (timeouts, how many, the shutdown deadline).
    pub connections: crate::http::connection::Limits,
    /// Jobs of the asynchronous request pattern (`$reindex` with `Prefer: respond-async`).
    pub jobs: Arc<Jobs>,
    /// Topic-based subscriptions: topics, the live subscriptions, websocket bindings.
    pub subscriptions: Arc<crate::subscription::Subscriptions>,
    /// Request counters and latencies for `/metrics` (`http::metrics`).
    pub metrics: Arc<crate::http::metrics::Metrics>,
    /// The validation engine every write and `$validate` use (`validation`).
    pub validation: Arc<crate::validation::Validator>,
    /// The background workers of `signaal serve` (the scorer, the subscription worker).
    pub workers: Arc<Workers>,
}

/// The background workers of a server: told to stop, and waited for, before the store closes,
/// so that none is half-way through a round when its connections go (a scoring that fails for
/// that would count as a failed attempt, and a round's connection could outlive the store).
#[derive(Default)]
pub struct Workers {
    stopping: std::sync::atomic::AtomicBool,
    stop: tokio::sync::Notify,
    running: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Workers {
    /// Runs `worker` as one of the server's background workers.
    pub fn spawn(&self, worker: impl std::future::Future<Output = ()> + Send + 'static) {
        let task = tokio::spawn(worker);
        self.running.lock().expect("workers lock").push(task);
    }

    /// Whether the server is stopping: a worker returns before its next round.
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the server is stopping: a worker waiting for work returns then.
    pub async fn stopped(&self) {
        loop {
            let told = self.stop.notified();
            if self.stopping() {
                return;
            }
            told.await;
        }
    }

    /// Tells the workers to stop and waits for each to end its round, for at most `patience`
    /// in all (a worker still running then is left to the runtime's end).
    pub async fn stop(&self, patience: std::time::Duration) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.notify_waiters();
        let running = std::mem::take(&mut *self.running.lock().expect("workers lock"));
        let waited = async {
            for task in running {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(patience, waited).await.is_err() {
            tracing::warn!("a background worker did not stop in time");
        }
    }
}

/// The default of `body_limit`: 16 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The default of `max_bundle_entries`.
pub const DEFAULT_MAX_BUNDLE_ENTRIES: usize = 10_000;

impl App {
    /// The search parameters in force for this request.
    pub fn registry(&self) -> &Registry {
        self.indexing.registry()
    }

    /// The absolute URL of a path below the FHIR base (`Patient/1` → `http://…/fhir/Patient/1`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path)
    }
}
