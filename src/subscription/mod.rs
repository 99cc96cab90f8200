//! Topic-based subscriptions, per the FHIR Subscriptions R5 Backport IG 1.1.0 for R4
//! (`hl7.fhir.uv.subscriptions-backport`).
//!
//! - `topic`: topics as data (shipped in `conformance/`, or posted as `Basic` resources);
//! - `config`: a Subscription resource read per the IG's R4 profile;
//! - `outbox`: the worker that reads the outbox (every write, recorded in its own transaction by
//!   the write pipeline), matches it against the topics and the subscriptions' filters as their
//!   creators may see, and records each subscription's numbered events;
//! - `delivery`: one task per subscription (handshake, events, heartbeats, retries with backoff),
//!   over its channel: `delivery::rest_hook` or `websocket`;
//! - `notification`: the notification Bundles; `status`: the server's status changes;
//!   `access`: what a subscription's creator may read; `operations`: `$status`, `$events`,
//!   `$get-ws-binding-token`.

pub mod access;
pub mod config;
pub mod delivery;
pub mod notification;
pub mod operations;
pub mod outbox;
pub mod status;
pub mod topic;
pub mod websocket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::app::App;
use crate::store::subscription::SubscriptionStore;
use config::Config;
use topic::Topics;

/// What `signaal serve` configures.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--subscription-allow-http`: rest-hook endpoints may be `http` on any host (otherwise
    /// only on loopback; `https` always).
    pub allow_http: bool,
    /// Whether the server runs the subscription worker and deliveries.
    pub worker: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_http: false,
            worker: true,
        }
    }
}

/// A subscription being delivered: its configuration as last read, and how to wake its task.
pub struct Live {
    config: Mutex<Arc<Config>>,
    pub wake: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Live {
    pub fn config(&self) -> Arc<Config> {
        self.config.lock().expect("config lock").clone()
    }
}

/// The subscriptions' shared state in the server.
pub struct Subscriptions {
    pub store: Arc<dyn SubscriptionStore>,
    pub settings: Settings,
    pub topics: RwLock<Topics>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    pub hub: websocket::Hub,
    pub http: delivery::rest_hook::HttpClient,
    /// This server among those on the database: who holds the worker lease ([`LEASE`]).
    pub instance: String,
    /// Whether this server holds the lease and runs the worker and the deliveries now.
    leading: AtomicBool,
}

/// The worker lease (`Store::take_lease`): of the servers on one database, the one holding it
/// runs the subscription worker and every delivery, so each event is matched, numbered and
/// delivered by one server.
pub const LEASE: &str = "subscription-worker";
/// How long the lease holds without renewal: how long after its holder died another server
/// takes over (at most, plus [`RENEW`]).
const LEASE_MS: i64 = 5_000;
/// How often the holder renews the lease, and how often the others try to take it.
const RENEW: Duration = Duration::from_secs(1);

impl Subscriptions {
    pub fn new(store: Arc<dyn SubscriptionStore>, settings: Settings) -> Subscriptions {
        Subscriptions {
            store,
            settings,
            topics: RwLock::new(Topics::new()),
            live: Mutex::default(),
            hub: websocket::Hub::default(),
            http: delivery::rest_hook::client(),
            instance: uuid::Uuid::new_v4().to_string(),
            leading: AtomicBool::new(false),
        }
    }

    /// Whether this server runs the worker and the deliveries now (holds [`LEASE`]).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// The subscription being delivered, if it is.
    pub fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.live.lock().expect("live lock").get(id).cloned()
    }

    /// Every subscription being delivered.
    pub fn all_live(&self) -> Vec<Arc<Live>> {
        self.live
            .lock()
            .expect("live lock")
            .values()
            .cloned()
            .collect()
    }

    /// Starts delivering a subscription (first its handshake, when `handshake`), or, when it is
    /// delivered already and no handshake is asked, takes its new configuration.
    pub fn start(&self, app: &Arc<App>, config: Config, handshake: bool) {
        let id = config.id.clone();
        let mut live = self.live.lock().expect("live lock");
        if let Some(running) = live.get(&id) {
            if !handshake {
                *running.config.lock().expect("config lock") = Arc::new(config);
                running.wake.notify_one();
                return;
            }
            if let Some(task) = running.task.lock().expect("task lock").take() {
                task.abort();
            }
        }
        let running = Arc::new(Live {
            config: Mutex::new(Arc::new(config)),
            wake: Notify::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(delivery::run(
            Arc::downgrade(app),
            running.clone(),
            handshake,
        ));
        *running.task.lock().expect("task lock") = Some(task);
        live.insert(id, running);
    }

    /// Stops delivering a subscription (off, error, deleted).
    pub fn stop(&self, id: &str) {
        if let Some(running) = self.live.lock().expect("live lock").remove(id) {
            if let Some(task) = running.task.lock().expect("task lock").take() {
                task.abort();
            }
        }
    }

    /// Forgets a stopped delivery task that ended by itself (error), unless it was replaced.
    fn ended(&self, live: &Arc<Live>) {
        let mut map = self.live.lock().expect("live lock");
        let id = live.config().id.clone();
        if map.get(&id).is_some_and(|l| Arc::ptr_eq(l, live)) {
            map.remove(&id);
        }
    }

    /// Stops every delivery task (the server is shutting down).
    pub fn stop_all(&self) {
        for (_, running) in self.live.lock().expect("live lock").drain() {
            if let Some(task) = running.task.lock().expect("task lock").take() {
                task.abort();
            }
        }
    }
}

/// Starts the subscription worker (it stops by itself once the server has dropped its `App`).
/// Of the servers on one database, only the one holding the worker lease runs it: that one
/// loads the posted topics, resumes the subscriptions that were active or requested, and
/// drains the outbox while it renews the lease every second. The others try to take the lease
/// every second, so one of them goes on within [`LEASE_MS`] when the holder dies; a holder
/// that fails to renew (it lost the database, or was too slow and another took over) stops its
/// deliveries at once. On a SQLite file, one process: its server always holds the lease.
pub fn spawn(app: &Arc<App>) {
    let weak: Weak<App> = Arc::downgrade(app);
    let workers = app.workers.clone();
    app.workers.spawn(async move {
        if let Some(app) = weak.upgrade() {
            if let Err(e) = outbox::load_topics(&app).await {
                tracing::error!(error = %e, "loading the posted subscription topics failed");
            }
        }
        loop {
            if workers.stopping() {
                return;
            }
            let Some(app) = weak.upgrade() else { return };
            if renew(&app).await {
                tracing::info!(
                    instance = app.subscriptions.instance,
                    "this server runs the subscription worker"
                );
                if let Err(e) = outbox::resume(&app).await {
                    tracing::error!(error = %e, "resuming the subscriptions failed");
                }
                drop(app);
                outbox::run(weak.clone()).await;
                // Stopping: the lease is given up by `release`, which needs `leading` as it is.
                if workers.stopping() {
                    return;
                }
                let Some(app) = weak.upgrade() else { return };
                app.subscriptions.stop_all();
                app.subscriptions.leading.store(false, Ordering::Relaxed);
                tracing::warn!(
                    instance = app.subscriptions.instance,
                    "the subscription worker lease was lost: another server delivers"
                );
            } else {
                drop(app);
            }
            tokio::select! {
                _ = tokio::time::sleep(RENEW) => {}
                _ = workers.stopped() => return,
            }
        }
    });
}

/// Takes or renews the worker lease; whether this server holds it now.
async fn renew(app: &App) -> bool {
    let subscriptions = &app.subscriptions;
    let now = crate::fhir::datetime::now_ms();
    let held = match app
        .store
        .take_lease(LEASE, &subscriptions.instance, now, now + LEASE_MS)
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "taking the subscription worker lease failed");
            false
        }
    };
    subscriptions.leading.store(held, Ordering::Relaxed);
    held
}

/// Gives the worker lease up (the server is shutting down), so another server goes on at once.
pub async fn release(app: &App) {
    let subscriptions = &app.subscriptions;
    subscriptions.stop_all();
    if subscriptions.leading.swap(false, Ordering::Relaxed) {
        if let Err(e) = app
            .store
            .release_lease(LEASE, &subscriptions.instance)
            .await
        {
            tracing::warn!(error = %e, "giving up the subscription worker lease failed");
        }
    }
}
