//! A subscriber's endpoint for the subscription tests: an HTTP server on loopback that takes the
//! notifications POSTed to it (a rest-hook) and hands them to the test in order. It can be taken
//! "down" (answers 503) to make the server retry.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};

/// A notification as the endpoint got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub headers: HeaderMap,
}

impl Received {
    /// The notification type (`handshake`, `heartbeat`, `event-notification`).
    pub fn kind(&self) -> String {
        status_parameter(&self.body, "type")
    }

    /// The event numbers it carries.
    pub fn event_numbers(&self) -> Vec<i64> {
        event_numbers(&self.body)
    }
}

/// A parameter of the SubscriptionStatus (the Bundle's first entry), as text.
pub fn status_parameter(bundle: &Value, name: &str) -> String {
    let status = &bundle["entry"][0]["resource"];
    status["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| {
            p.as_object()?
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// The `event-number`s of a notification Bundle's status.
pub fn event_numbers(bundle: &Value) -> Vec<i64> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "notification-event")
        .filter_map(|p| {
            p["part"]
                .as_array()?
                .iter()
                .find(|part| part["name"] == "event-number")?["valueString"]
                .as_str()?
                .parse()
                .ok()
        })
        .collect()
}

struct Shared {
    tx: mpsc::UnboundedSender<Received>,
    down: AtomicBool,
    refused: AtomicUsize,
    /// How long each answer takes (ms): a slow endpoint.
    delay_ms: AtomicU64,
    /// Answer every notification with a 307 to this URL instead of taking it.
    redirect: std::sync::Mutex<Option<String>>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    rx: Mutex<mpsc::UnboundedReceiver<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on a free loopback port; notifications go to `/hook`.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            down: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            delay_ms: AtomicU64::new(0),
            redirect: std::sync::Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            shared,
            rx: Mutex::new(rx),
            task,
        }
    }

    /// Answer 503 to every notification (`true`) or take them again.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Take `delay` to answer each notification from now on.
    pub fn set_slow(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answer every notification with `307 Temporary Redirect` to `location` (`None`: take
    /// them again).
    pub fn set_redirect(&self, location: Option<String>) {
        *self.shared.redirect.lock().unwrap() = location;
    }

    /// How many notifications were refused while down.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The next notification, within `limit`.
    pub async fn next(&self, limit: Duration) -> Option<Received> {
        tokio::time::timeout(limit, self.rx.lock().await.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next notification of type `kind`, skipping others (heartbeats), within `limit`.
    pub async fn next_of(&self, kind: &str, limit: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let received = self.next(left).await?;
            if received.kind() == kind {
                return Some(received);
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if shared.down.load(Ordering::SeqCst) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let redirect = shared.redirect.lock().unwrap().clone();
    if let Some(location) = redirect {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = shared.tx.send(Received { body, headers });
    StatusCode::OK.into_response()
}
