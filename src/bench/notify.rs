//! The subscription phases: how long after a measurement's commit a coach's tool hears of the
//! Flag it raises, and how many notifications a second the server delivers.
//!
//! The benchmark runs its own receiver (a rest-hook endpoint on loopback) and subscribes it to
//! the Flag topic with `full-resource` payloads.
//! - `commit→notification`: PGO uploads that raise a weight-gain Flag (the same as the
//!   `commit→Flag` phase) are sent at a fixed rate (`--notify-rate`, open loop: the rate does
//!   not slow down when the server does); the latency is from each upload's response (its
//!   commit) to the arrival of the notification of its patient's Flag. The scorer writes the
//!   Flag, so this is commit → scoring → Flag → outbox → delivery.
//! - `notifications`: Flags written directly by `--clients` clients as fast as they go; the
//!   rate is notifications received per second, from the first write to the last arrival.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::load::success;
use super::phase::{drive, Budget, Latency, PhaseReport};
use crate::client::Client;

pub const NOTIFY_DELAY: &str = "commit→notification";
pub const NOTIFICATIONS: &str = "notifications";
/// From a Flag's commit (its `meta.lastUpdated`) to its notification's arrival.
pub const FLAG_TO_NOTIFICATION: &str = "Flag commit→notification";
const FLAG_TOPIC: &str = "https://signaal.dev/fhir/SubscriptionTopic/flag";
const IG: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
/// How long to wait for the last notifications after the writes stopped.
const GIVE_UP: Duration = Duration::from_secs(30);

/// When each patient's first Flag notification arrived, and how many flags were notified.
#[derive(Default)]
struct Arrivals {
    first: Mutex<HashMap<String, Instant>>,
    flags: Mutex<u64>,
    /// From each notified Flag's commit (its `meta.lastUpdated`, the server's clock on this
    /// machine) to its arrival, in microseconds: the subscription pipeline alone (outbox,
    /// matching, delivery), without the scorer.
    since_flag: Mutex<Vec<u64>>,
    changed: Notify,
}

async fn hook(State(arrivals): State<Arc<Arrivals>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let wall = chrono::Utc::now();
    let Ok(bundle) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut notified = 0;
    for entry in entries.iter().skip(1) {
        if let Some(patient) = entry["resource"]["subject"]["reference"].as_str() {
            let patient = patient.trim_start_matches("Patient/").to_owned();
            if let Ok(mut first) = arrivals.first.lock() {
                first.entry(patient).or_insert(now);
            }
            notified += 1;
        }
        let written = entry["resource"]["meta"]["lastUpdated"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let (Some(written), Ok(mut since)) = (written, arrivals.since_flag.lock()) {
            let micros = (wall - written.with_timezone(&chrono::Utc)).num_microseconds();
            since.push(micros.unwrap_or(0).max(0) as u64);
        }
    }
    if let Ok(mut flags) = arrivals.flags.lock() {
        *flags += notified;
    }
    arrivals.changed.notify_waiters();
    StatusCode::OK
}

/// The receiver and its subscription.
struct Subscriber {
    arrivals: Arc<Arrivals>,
    task: tokio::task::JoinHandle<()>,
    client: Client,
    id: String,
}

impl Subscriber {
    async fn start(base: &str) -> Result<Subscriber, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("the receiver cannot listen: {e}"))?;
        let endpoint = format!(
            "http://{}/hook",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let arrivals: Arc<Arrivals> = Arc::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(arrivals.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = Client::new(base);
        let subscription = json!({
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "signaal bench: a coach's tool told of every Flag",
            "criteria": FLAG_TOPIC,
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint,
                "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": format!("{IG}/backport-payload-content"), "valueCode": "full-resource"}]},
            },
        });
        let reply = client
            .post("Subscription", &subscription)
            .await
            .map_err(|e| e.to_string())?;
        success(&reply)?;
        let id = reply.json()["id"]
            .as_str()
            .ok_or("the Subscription has no id")?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = client
                .get(&format!("Subscription/{id}"))
                .await
                .map_err(|e| e.to_string())?;
            match reply.json()["status"].as_str() {
                Some("active") => break,
                Some("error") => {
                    return Err(format!(
                        "the bench subscription failed: {}",
                        reply.json()["error"]
                    ))
                }
                _ if Instant::now() > deadline => {
                    return Err("the bench subscription never became active".into())
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        Ok(Subscriber {
            arrivals,
            task,
            client,
            id,
        })
    }

    /// Turns the subscription off and stops the receiver.
    async fn stop(self) {
        if let Ok(reply) = self.client.get(&format!("Subscription/{}", self.id)).await {
            let mut s = reply.json();
            s["status"] = json!("off");
            let _ = self
                .client
                .put(&format!("Subscription/{}", self.id), &s)
                .await;
        }
        self.task.abort();
    }

    fn flags(&self) -> u64 {
        self.arrivals.flags.lock().map(|f| *f).unwrap_or(0)
    }
}

/// Both phases: the latency at `rate` uploads a second for `seconds`, then the throughput.
pub async fn run(
    base: &str,
    clients: usize,
    budget: Budget,
    rate: u32,
) -> Result<Vec<PhaseReport>, String> {
    let subscriber = Subscriber::start(base).await?;
    let latency = delay(base, &subscriber, budget, rate).await;
    let pipeline = subscriber
        .arrivals
        .since_flag
        .lock()
        .map(|mut d| std::mem::take(&mut *d))
        .unwrap_or_default();
    let throughput = match &latency {
        Ok(_) => throughput(base, &subscriber, clients, budget).await,
        Err(e) => Err(e.clone()),
    };
    subscriber.stop().await;
    let latency = latency?;
    let flags = PhaseReport {
        bytes_per_request: None,
        name: FLAG_TO_NOTIFICATION.into(),
        requests: pipeline.len() as u64,
        errors: 0,
        elapsed: latency.elapsed,
        latency: Latency::of(pipeline.clone()),
        resources: pipeline.len() as u64,
    };
    Ok(vec![latency, flags, throughput?])
}

async fn delay(
    base: &str,
    subscriber: &Subscriber,
    budget: Budget,
    rate: u32,
) -> Result<PhaseReport, String> {
    if rate == 0 || rate > 10_000 {
        return Err("--notify-rate must be between 1 and 10000".into());
    }
    let client = Client::new(base);
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let errors = Arc::new(Mutex::new(0u64));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let done = match budget {
            Budget::Time(d) => started.elapsed() >= d,
            Budget::Requests(n) => sent >= n,
        };
        if done {
            break;
        }
        tick.tick().await;
        sent += 1;
        let (client, committed, errors) = (client.clone(), committed.clone(), errors.clone());
        tasks.spawn(async move {
            let outcome = super::flags::post_weight_gain(&client).await;
            match outcome {
                Ok((patient, at)) => {
                    if let Ok(mut c) = committed.lock() {
                        c.insert(patient, at);
                    }
                }
                Err(_) => {
                    if let Ok(mut e) = errors.lock() {
                        *e += 1;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let writes_done = Instant::now();
    let expected: Vec<(String, Instant)> = committed
        .lock()
        .map(|c| c.iter().map(|(p, i)| (p.clone(), *i)).collect())
        .unwrap_or_default();
    // Wait for every committed patient's Flag notification (or give up).
    loop {
        let all = {
            let first = subscriber
                .arrivals
                .first
                .lock()
                .map_err(|e| e.to_string())?;
            expected.iter().all(|(p, _)| first.contains_key(p))
        };
        if all || writes_done.elapsed() > GIVE_UP {
            break;
        }
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            subscriber.arrivals.changed.notified(),
        )
        .await;
    }
    let first = subscriber
        .arrivals
        .first
        .lock()
        .map_err(|e| e.to_string())?;
    let mut micros = Vec::with_capacity(expected.len());
    let mut missing = 0u64;
    for (patient, at) in &expected {
        match first.get(patient) {
            Some(arrived) => micros.push(arrived.saturating_duration_since(*at).as_micros() as u64),
            None => missing += 1,
        }
    }
    let errors = *errors.lock().map_err(|e| e.to_string())?;
    Ok(PhaseReport {
        bytes_per_request: None,
        name: format!("{NOTIFY_DELAY} @{rate}/s"),
        requests: sent,
        errors: errors + missing,
        elapsed: started.elapsed(),
        latency: Latency::of(micros),
        resources: (sent - errors) * 4,
    })
}

async fn throughput(
    base: &str,
    subscriber: &Subscriber,
    clients: usize,
    budget: Budget,
) -> Result<PhaseReport, String> {
    let before = subscriber.flags();
    let started = Instant::now();
    let mut report = drive(NOTIFICATIONS, clients, budget, |_| {
        let client = Client::new(base);
        move |n| {
            let client = client.clone();
            let flag = json!({
                "resourceType": "Flag", "status": "active",
                "code": {"text": "signaal bench"},
                "subject": {"reference": format!("Patient/bench-notify-{n}")},
            });
            async move {
                let reply = client
                    .post("Flag", &flag)
                    .await
                    .map_err(|e| e.to_string())?;
                success(&reply)
            }
        }
    })
    .await?;
    let written = report.requests - report.errors;
    let deadline = Instant::now() + GIVE_UP;
    while subscriber.flags() - before < written && Instant::now() < deadline {
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            subscriber.arrivals.changed.notified(),
        )
        .await;
    }
    let notified = subscriber.flags() - before;
    // The rate is of notified flags, over the time until the last one arrived.
    report.elapsed = started.elapsed();
    report.errors += written.saturating_sub(notified);
    report.resources = notified;
    Ok(report)
}
