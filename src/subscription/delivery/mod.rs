//! One delivery task per subscription, so a slow or dead endpoint only ever holds up its own
//! notifications: the handshake (a rest-hook subscription is `active` only once its endpoint
//! took it, `error` if it did not), then the recorded events in order, at most `maxCount` a
//! notification, heartbeats when nothing was sent for the heartbeat period, and retries with
//! backoff when the channel fails. How far delivery got is stored after each success, so a
//! restarted server goes on where it stopped (a notification may come twice, never not at all).
//!
//! Before each notification the creator's access is checked again: events about resources it
//! may no longer read are left out, and a subscription whose creator is gone is put in `error`.

pub mod rest_hook;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::access;
use super::config::{ChannelType, Config};
use super::notification::{self, About, Kind, Notified};
use super::Live;
use crate::app::App;
use crate::fhir::datetime::now_ms;
use crate::store::subscription::{Event, State};

/// The wait after the first failed delivery; it doubles with each further failure up to
/// [`MAX_BACKOFF_MS`], and the subscription stays active (its events wait, and `$events` has
/// them).
const FIRST_RETRY_MS: i64 = 500;
const MAX_BACKOFF_MS: i64 = 60_000;
/// How often a task looks at its state when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// When to try again after the `attempts`-th failure in a row.
pub fn retry_at(attempts: i64, now: i64) -> i64 {
    let shift = (attempts.max(1) - 1).min(20) as u32;
    now + (FIRST_RETRY_MS << shift).min(MAX_BACKOFF_MS)
}

/// Why a send did not deliver.
enum Failure {
    /// Try again later (the endpoint failed).
    Retry(String),
    /// Nobody to deliver to yet (no websocket bound): wait, without backoff.
    Unbound,
}

pub async fn run(app: Weak<App>, live: Arc<Live>, handshake: bool) {
    if handshake {
        let Some(strong) = app.upgrade() else { return };
        if !hand_shake(&strong, &live).await {
            strong.subscriptions.ended(&live);
            return;
        }
    }
    let mut last_sent = Instant::now();
    loop {
        let Some(strong) = app.upgrade() else { return };
        let wait = match step(&strong, &live, &mut last_sent).await {
            Ok(Some(wait)) => wait,
            Ok(None) => continue,
            Err(stop) => {
                let id = live.config().id.clone();
                tracing::warn!(subscription = id, reason = stop, "subscription stopped");
                if let Err(e) =
                    super::status::set(&strong, &id, &["requested", "active"], "error", Some(&stop))
                        .await
                {
                    tracing::warn!(subscription = id, error = %e, "recording a subscription's error failed");
                }
                strong.subscriptions.ended(&live);
                return;
            }
        };
        drop(strong);
        tokio::select! {
            _ = live.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The handshake: a rest-hook endpoint must take a `handshake` notification; a websocket
/// subscription gets its handshake when a client binds. Then `active`; on failure `error`.
async fn hand_shake(app: &Arc<App>, live: &Live) -> bool {
    let config = live.config();
    let state = app
        .subscriptions
        .store
        .state(&config.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let outcome = match config.channel {
        ChannelType::WebSocket => Ok(()),
        ChannelType::RestHook => {
            let bundle = notification::bundle(
                &about(app, &config, "requested", state.events),
                Kind::Handshake,
                &[],
            );
            send(app, &config, &bundle).await.map_err(|f| f.reason())
        }
    };
    let (status, error) = match &outcome {
        Ok(()) => ("active", None),
        Err(reason) => ("error", Some(format!("the handshake failed: {reason}"))),
    };
    if let Err(e) =
        super::status::set(app, &config.id, &["requested"], status, error.as_deref()).await
    {
        tracing::warn!(subscription = config.id, error = %e, "recording a handshake's outcome failed");
        return false;
    }
    outcome.is_ok()
}

impl Failure {
    fn reason(self) -> String {
        match self {
            Failure::Retry(e) => e,
            Failure::Unbound => "no websocket is bound".into(),
        }
    }
}

/// One step of a delivery task: sends what is due (the next events, or a heartbeat) and says
/// how long to wait before the next step (`None`: go on at once). `Err`: the subscription must
/// stop (its creator's access is gone), with the reason.
async fn step(
    app: &Arc<App>,
    live: &Live,
    last_sent: &mut Instant,
) -> Result<Option<Duration>, String> {
    let config = live.config();
    let store = &app.subscriptions.store;
    let state = match store.state(&config.id).await {
        Ok(Some(state)) => state,
        Ok(None) => return Ok(Some(POLL)),
        Err(e) => {
            tracing::warn!(subscription = config.id, error = %e, "reading a subscription's state failed");
            return Ok(Some(POLL));
        }
    };
    // The creator's access, again at every step: a removed client's subscription stops.
    access::owner_grant(app, state.owner.as_deref()).await?;
    let now = now_ms();
    let pending = state.events > state.delivered;
    if pending && now >= state.next_attempt_at && config.status == "active" {
        match deliver(app, &config, &state).await? {
            Ok(last) => {
                if let Err(e) = store.delivered(&config.id, last).await {
                    tracing::warn!(subscription = config.id, error = %e, "recording a delivery failed");
                }
                *last_sent = Instant::now();
                return Ok(None);
            }
            Err(Failure::Unbound) => return Ok(Some(heartbeat_wait(&config, *last_sent))),
            Err(Failure::Retry(error)) => {
                let attempts = state.attempts + 1;
                let at = retry_at(attempts, now);
                tracing::info!(
                    subscription = config.id,
                    attempts,
                    error,
                    "a notification was not delivered; retrying"
                );
                if let Err(e) = store.failed(&config.id, attempts, at, &error).await {
                    tracing::warn!(subscription = config.id, error = %e, "recording a failed delivery failed");
                }
                let wait = Duration::from_millis((at - now).max(0) as u64);
                return Ok(Some(wait.min(heartbeat_wait(&config, *last_sent))));
            }
        }
    }
    if let Some(period) = config.heartbeat {
        if config.status == "active" && last_sent.elapsed() >= period {
            let bundle = notification::bundle(
                &about(app, &config, &config.status, state.events),
                Kind::Heartbeat,
                &[],
            );
            if let Err(Failure::Retry(e)) = send(app, &config, &bundle).await {
                tracing::info!(
                    subscription = config.id,
                    error = e,
                    "a heartbeat was not delivered"
                );
            }
            *last_sent = Instant::now();
        }
    }
    let mut wait = heartbeat_wait(&config, *last_sent).min(POLL);
    if pending && state.next_attempt_at > now {
        wait = wait.min(Duration::from_millis((state.next_attempt_at - now) as u64));
    }
    Ok(Some(wait))
}

fn heartbeat_wait(config: &Config, last_sent: Instant) -> Duration {
    match config.heartbeat {
        Some(period) => period.saturating_sub(last_sent.elapsed()),
        None => POLL,
    }
}

/// Sends the next events (at most `maxCount`) that the creator may still read; `Ok(last)`: the
/// number of the last event now done with. The outer `Err`: the creator's access is gone.
async fn deliver(
    app: &Arc<App>,
    config: &Config,
    state: &State,
) -> Result<Result<i64, Failure>, String> {
    let grant = access::owner_grant(app, state.owner.as_deref()).await?;
    let guarded = access::guarded(app, grant);
    let events = match app
        .subscriptions
        .store
        .events(&config.id, state.delivered + 1, None, config.max_count)
        .await
    {
        Ok(events) => events,
        Err(e) => {
            return Ok(Err(Failure::Retry(format!(
                "reading the events failed: {e}"
            ))))
        }
    };
    let Some(last) = events.last().map(|e| e.number) else {
        return Ok(Ok(state.delivered));
    };
    let notified = readable_events(&guarded, &events).await;
    if notified.is_empty() {
        return Ok(Ok(last));
    }
    let bundle = notification::bundle(
        &about(app, config, &config.status, state.events),
        Kind::EventNotification,
        &notified,
    );
    Ok(send(app, config, &bundle).await.map(|()| last))
}

/// The events whose focus `store` (the creator's guarded store) may read, with the resource.
pub async fn readable_events<'a>(
    store: &dyn crate::store::Store,
    events: &'a [Event],
) -> Vec<Notified<'a>> {
    let mut notified = Vec::with_capacity(events.len());
    for event in events {
        if let Some(resource) = access::readable(store, event).await {
            notified.push(Notified {
                event,
                resource: Some(resource),
            });
        }
    }
    notified
}

/// What a notification says about the subscription.
pub fn about<'a>(app: &'a App, config: &'a Config, status: &'a str, events: i64) -> About<'a> {
    About {
        base: &app.base_url,
        id: &config.id,
        topic: &config.topic,
        status,
        events_since_start: events,
        content: config.content,
        error: None,
    }
}

async fn send(app: &App, config: &Config, bundle: &Value) -> Result<(), Failure> {
    let body = serde_json::to_vec(bundle).map_err(|e| Failure::Retry(e.to_string()))?;
    match config.channel {
        ChannelType::RestHook => rest_hook::post(
            &app.subscriptions.http,
            config.endpoint.as_deref().unwrap_or_default(),
            &config.headers,
            body,
            config.timeout,
        )
        .await
        .map_err(Failure::Retry),
        ChannelType::WebSocket => {
            let text = String::from_utf8(body).map_err(|e| Failure::Retry(e.to_string()))?;
            if app.subscriptions.hub.send(&config.id, &text) > 0 {
                Ok(())
            } else {
                Err(Failure::Unbound)
            }
        }
    }
}
