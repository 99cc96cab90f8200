//! The subscription worker: reads the outbox (every committed write, oldest first), and for
//! each write
//! - of a Subscription: checks it and starts (handshake), updates or stops its delivery;
//! - of a Basic that is (or was) a topic: puts the topic in (or out of) force;
//! - of anything: matches it against the topics of the active subscriptions (trigger, then the
//!   subscription's filters and its creator's access, as a search of the focus resource through
//!   the creator's guarded store), and records an event for each match.
//!
//! The events and the removal of the outbox rows are one transaction: a crash before it leaves
//! the rows for the next round (nothing lost; the round is redone), after it the events are
//! stored for delivery. The delivery tasks are then woken.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;

use super::access;
use super::config::{self, Config};
use super::topic::{Interaction, Topic};
use crate::app::App;
use crate::error::FhirError;
use crate::search::params::{self, Unknown};
use crate::store::subscription::{NewEvent, OutboxEntry};
use crate::store::Store;
use crate::terminology::resolver::StoreResolver;

/// How long the worker sleeps when the outbox is empty: the most a notification waits after
/// its write's commit (plus the matching and the delivery).
const IDLE: Duration = Duration::from_millis(10);
/// How many outbox rows one round reads.
const BATCH: usize = 200;

/// Drains the outbox while this server holds the worker lease (renewed every second);
/// returns when it no longer does (or the server is gone).
pub async fn run(app: Weak<App>) {
    let mut renewed = std::time::Instant::now();
    loop {
        let Some(app) = app.upgrade() else { return };
        if app.workers.stopping() {
            return;
        }
        if renewed.elapsed() >= super::RENEW {
            if !super::renew(&app).await {
                return;
            }
            renewed = std::time::Instant::now();
        }
        let outcome = round(&app).await;
        drop(app);
        match outcome {
            Ok(0) => tokio::time::sleep(IDLE).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the subscription worker failed a round; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One round: up to a batch of outbox rows. Returns how many there were.
pub async fn round(app: &Arc<App>) -> Result<usize, FhirError> {
    let subscriptions = &app.subscriptions;
    let entries = subscriptions.store.outbox(BATCH).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let mut events = Vec::new();
    let mut done = Vec::with_capacity(entries.len());
    for entry in &entries {
        // Only the types a topic of a live subscription, or the worker itself, cares about are
        // read at all.
        if watched(app, &entry.rtype) {
            let current = if entry.method == crate::store::Method::Delete {
                None
            } else {
                content(app.store.as_ref(), entry, entry.version).await?
            };
            match entry.rtype.as_str() {
                "Subscription" => subscription_written(app, entry, current.as_ref()).await?,
                "Basic" => subscriptions
                    .topics
                    .write()
                    .expect("topics lock")
                    .basic_written(&entry.id, current.as_ref()),
                _ => {}
            }
            let previous = if entry.version > 1 {
                content(app.store.as_ref(), entry, entry.version - 1).await?
            } else {
                None
            };
            events.extend(matches(app, entry, previous.as_ref(), current.as_ref()).await?);
        }
        done.push(entry.seq);
    }
    let recorded = subscriptions.store.record_events(&done, &events).await?;
    let woken: BTreeSet<&str> = recorded.iter().map(|e| e.subscription.as_str()).collect();
    for id in woken {
        if let Some(live) = subscriptions.live(id) {
            live.wake.notify_one();
        }
    }
    Ok(entries.len())
}

/// Whether writes of `rtype` matter to the worker now.
fn watched(app: &App, rtype: &str) -> bool {
    if rtype == "Subscription" || rtype == "Basic" {
        return true;
    }
    let topics = app.subscriptions.topics.read().expect("topics lock");
    app.subscriptions.all_live().iter().any(|live| {
        topics
            .get(&live.config().topic)
            .is_some_and(|t| t.resources().any(|r| r == rtype))
    })
}

/// The content of a version, `None` when it is a deletion or gone.
async fn content(
    store: &dyn Store,
    entry: &OutboxEntry,
    version: i64,
) -> Result<Option<Value>, FhirError> {
    Ok(store
        .vread(&entry.rtype, &entry.id, version)
        .await?
        .and_then(|v| v.content)
        .and_then(|c| serde_json::from_str(&c).ok()))
}

/// A Subscription was written: by a client (requested: check it, record who asked, and start
/// with a handshake; off: stop), or by this server (active, error: take the new status).
async fn subscription_written(
    app: &Arc<App>,
    entry: &OutboxEntry,
    current: Option<&Value>,
) -> Result<(), FhirError> {
    let subscriptions = &app.subscriptions;
    let Some(resource) = current else {
        subscriptions.stop(&entry.id);
        subscriptions.store.forget(&entry.id).await?;
        return Ok(());
    };
    let status = resource["status"].as_str().unwrap_or_default();
    if !matches!(status, "requested" | "active") {
        subscriptions.stop(&entry.id);
        return Ok(());
    }
    let checked = {
        let topics = subscriptions.topics.read().expect("topics lock");
        config::read(resource, &topics, subscriptions.settings.allow_http)
    };
    match checked {
        Err(reason) => {
            subscriptions.stop(&entry.id);
            let app = app.clone();
            let id = entry.id.clone();
            // Not awaited here: the write goes through the outbox this worker drains.
            tokio::spawn(async move {
                if let Err(e) =
                    super::status::set(&app, &id, &["requested", "active"], "error", Some(&reason))
                        .await
                {
                    tracing::warn!(subscription = id, error = %e, "recording a subscription's error failed");
                }
            });
        }
        Ok(config) => {
            let known = subscriptions.store.state(&entry.id).await?.is_some();
            let requested = status == "requested";
            if requested || !known {
                subscriptions
                    .store
                    .set_owner(&entry.id, entry.source.as_deref())
                    .await?;
            }
            subscriptions.start(app, config, requested);
        }
    }
    Ok(())
}

/// The events a write is for the live subscriptions.
async fn matches(
    app: &Arc<App>,
    entry: &OutboxEntry,
    previous: Option<&Value>,
    current: Option<&Value>,
) -> Result<Vec<NewEvent>, FhirError> {
    let interaction = Interaction::of(entry.method, entry.version);
    let mut candidates: Vec<(Arc<Config>, Topic)> = Vec::new();
    {
        let topics = app.subscriptions.topics.read().expect("topics lock");
        for live in app.subscriptions.all_live() {
            let config = live.config();
            // A requested subscription counts its events too (the IG's
            // eventsSinceSubscriptionStart counts from its creation): its handshake may have
            // reached the client, who then writes, before the worker has read the `active`
            // version the handshake's success wrote. Delivery waits for `active`.
            if !matches!(config.status.as_str(), "active" | "requested") {
                continue;
            }
            if let Some(topic) = topics.get(&config.topic) {
                if topic.triggered_by(&entry.rtype, interaction, previous, current) {
                    candidates.push((config, topic.clone()));
                }
            }
        }
    }
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    for (config, _topic) in candidates {
        if !seen.insert(config.id.clone()) {
            continue;
        }
        if admits(app, &config, entry).await? {
            events.push(NewEvent {
                subscription: config.id.clone(),
                focus_type: entry.rtype.clone(),
                focus_id: entry.id.clone(),
                focus_version: entry.version,
                method: entry.method,
                at: entry.at,
            });
        }
    }
    Ok(events)
}

/// Whether a subscription's creator may read the written resource and it passes the
/// subscription's filters on its type: one search of the resource by id and the filters,
/// through the creator's guarded store (a deletion: the creator may read the version before;
/// filters do not apply to what is gone).
async fn admits(app: &App, config: &Config, entry: &OutboxEntry) -> Result<bool, FhirError> {
    let state = app.subscriptions.store.state(&config.id).await?;
    let owner = state.and_then(|s| s.owner);
    let Ok(grant) = access::owner_grant(app, owner.as_deref()).await else {
        // The delivery task finds the same and stops the subscription.
        return Ok(false);
    };
    let guarded = access::guarded(app, grant);
    if entry.method == crate::store::Method::Delete {
        let event = crate::store::subscription::Event {
            subscription: config.id.clone(),
            number: 0,
            focus_type: entry.rtype.clone(),
            focus_id: entry.id.clone(),
            focus_version: entry.version,
            method: entry.method,
            at: entry.at,
        };
        return Ok(access::readable(&guarded, &event).await.is_some());
    }
    let mut criteria: Vec<(String, String)> = vec![("_id".into(), entry.id.clone())];
    for (rtype, params) in &config.filters {
        if *rtype == entry.rtype {
            criteria.extend(params.iter().cloned());
        }
    }
    let parsed = params::parse(
        app.registry(),
        &app.search_budget,
        &entry.rtype,
        &criteria,
        Unknown::Refuse,
        &app.base_url,
    );
    let mut query = match parsed {
        Ok(parsed) => parsed.query,
        Err(e) => {
            tracing::warn!(subscription = config.id, error = %e, "a subscription's filter is not a valid search");
            return Ok(false);
        }
    };
    query.count = 1;
    crate::search::resolve(&StoreResolver::new(app.store.as_ref()), &mut query).await?;
    match guarded.search(&query).await {
        Ok(hits) => Ok(!hits.is_empty()),
        Err(crate::store::StoreError::Forbidden(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The posted topics, as stored now: at start, and on a server that does not run the worker
/// whenever another server's commit wrote a Basic (`Store::registry_signal`), so its
/// CapabilityStatement lists them.
pub async fn load_topics(app: &App) -> Result<(), FhirError> {
    let basics = search_all(
        app,
        "Basic",
        &[(
            "code".into(),
            format!("{}|{}", super::topic::FHIR_TYPES, super::topic::TOPIC_CODE),
        )],
    )
    .await?;
    let mut topics = super::topic::Topics::new();
    for (id, basic) in &basics {
        topics.basic_written(id, Some(basic));
    }
    *app.subscriptions.topics.write().expect("topics lock") = topics;
    Ok(())
}

/// When this server takes the worker lease: the posted topics, and the delivery of every
/// subscription that was active (no new handshake) or requested (its handshake).
pub async fn resume(app: &Arc<App>) -> Result<(), FhirError> {
    load_topics(app).await?;
    let subscriptions = search_all(
        app,
        "Subscription",
        &[("status".into(), "active,requested".into())],
    )
    .await?;
    for (id, resource) in subscriptions {
        let checked = {
            let topics = app.subscriptions.topics.read().expect("topics lock");
            config::read(&resource, &topics, app.subscriptions.settings.allow_http)
        };
        match checked {
            Ok(config) => {
                if app.subscriptions.store.state(&id).await?.is_none() {
                    // Its creation is still in the outbox: the round will start it.
                    continue;
                }
                let requested = config.status == "requested";
                app.subscriptions.start(app, config, requested);
            }
            Err(reason) => {
                super::status::set(app, &id, &["requested", "active"], "error", Some(&reason))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Every current resource of `rtype` matching `criteria` (raw store: the server's own view).
async fn search_all(
    app: &App,
    rtype: &str,
    criteria: &[(String, String)],
) -> Result<Vec<(String, Value)>, FhirError> {
    let parsed = params::parse(
        app.registry(),
        &app.search_budget,
        rtype,
        criteria,
        Unknown::Refuse,
        &app.base_url,
    )?;
    let mut query = parsed.query;
    query.count = 10_000;
    let hits = app.store.search(&query).await?;
    Ok(hits
        .into_iter()
        .filter_map(|h| {
            let content: Value = serde_json::from_str(h.version.content.as_deref()?).ok()?;
            Some((h.version.id, content))
        })
        .collect())
}
