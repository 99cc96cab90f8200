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
use std::sync::{Arc, Mutex, RwLock, Weak};

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
}

impl Subscriptions {
    pub fn new(store: Arc<dyn SubscriptionStore>, settings: Settings) -> Subscriptions {
        Subscriptions {
            store,
            settings,
            topics: RwLock::new(Topics::new()),
            live: Mutex::default(),
            hub: websocket::Hub::default(),
            http: delivery::rest_hook::client(),
        }
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

/// Starts the subscription worker (it stops by itself once the server has dropped its `App`):
/// loads the posted topics, resumes the subscriptions that were active or requested, and
/// drains the outbox.
pub fn spawn(app: &Arc<App>) {
    let weak: Weak<App> = Arc::downgrade(app);
    tokio::spawn(async move {
        if let Some(app) = weak.upgrade() {
            if let Err(e) = outbox::resume(&app).await {
                tracing::error!(error = %e, "resuming the subscriptions failed");
            }
        }
        outbox::run(weak).await;
    });
}
