//! The websocket channel (IG: "websocket" channel type). A client gets a binding token with
//! `$get-ws-binding-token`, connects to the `websocket-url` it names and sends
//! `bind-with-token: <token>`; the server answers with a `handshake` notification for each
//! subscription the token binds, and from then on sends each notification (event and heartbeat
//! Bundles) as a text message. While no client is bound the events wait (and `$events` has
//! them); a client binding again gets what is still undelivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use tokio::sync::mpsc;

use super::notification::{self, Kind};
use crate::app::App;
use crate::fhir::datetime::now_ms;

/// Where clients connect, below the server's root.
pub const PATH: &str = "/subscriptions/websocket";
/// How long a binding token may be used.
pub const TOKEN_TTL_MS: i64 = 5 * 60 * 1000;

struct Binding {
    subscriptions: Vec<String>,
    expires: i64,
}

/// The bound websockets by subscription, and the binding tokens handed out.
#[derive(Default)]
pub struct Hub {
    sockets: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<String>>>>,
    tokens: Mutex<HashMap<String, Binding>>,
}

impl Hub {
    /// A new binding token for `subscriptions`, and when it expires (ms).
    pub fn token(&self, subscriptions: Vec<String>) -> (String, i64) {
        let now = now_ms();
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires = now + TOKEN_TTL_MS;
        let mut tokens = self.tokens.lock().expect("tokens lock");
        tokens.retain(|_, b| b.expires > now);
        tokens.insert(
            token.clone(),
            Binding {
                subscriptions,
                expires,
            },
        );
        (token, expires)
    }

    fn redeem(&self, token: &str) -> Option<Vec<String>> {
        let tokens = self.tokens.lock().expect("tokens lock");
        tokens
            .get(token)
            .filter(|b| b.expires > now_ms())
            .map(|b| b.subscriptions.clone())
    }

    fn bind(&self, subscription: &str, socket: mpsc::UnboundedSender<String>) {
        self.sockets
            .lock()
            .expect("sockets lock")
            .entry(subscription.to_owned())
            .or_default()
            .push(socket);
    }

    /// Sends a notification to every websocket bound to `subscription`; how many took it.
    pub fn send(&self, subscription: &str, text: &str) -> usize {
        let mut sockets = self.sockets.lock().expect("sockets lock");
        let Some(bound) = sockets.get_mut(subscription) else {
            return 0;
        };
        bound.retain(|s| s.send(text.to_owned()).is_ok());
        bound.len()
    }
}

/// `GET /subscriptions/websocket`: the upgrade to a websocket.
pub async fn upgrade(State(app): State<Arc<App>>, ws: WebSocketUpgrade) -> Response {
    let app = Arc::downgrade(&app);
    ws.on_upgrade(move |socket| serve(app, socket))
}

async fn serve(app: Weak<App>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let Some(app) = app.upgrade() else { return };
                let reply = bind(&app, text.trim(), &tx).await;
                drop(app);
                for message in reply {
                    if socket.send(Message::Text(message.into())).await.is_err() {
                        return;
                    }
                }
            }
            outgoing = rx.recv() => {
                let Some(text) = outgoing else { return };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A client's message: `bind-with-token: <token>` binds the socket to the token's
/// subscriptions and answers their handshakes; anything else is answered with an error text.
async fn bind(app: &App, text: &str, tx: &mpsc::UnboundedSender<String>) -> Vec<String> {
    let Some(token) = text.strip_prefix("bind-with-token:") else {
        return vec![format!(
            "error: expected 'bind-with-token: <token>', got '{text}'"
        )];
    };
    let Some(subscriptions) = app.subscriptions.hub.redeem(token.trim()) else {
        return vec!["error: the binding token is unknown or expired".into()];
    };
    let mut replies = Vec::new();
    for id in subscriptions {
        let Some(live) = app.subscriptions.live(&id) else {
            replies.push(format!("error: Subscription/{id} is not active"));
            continue;
        };
        let config = live.config();
        let events = match app.subscriptions.store.state(&id).await {
            Ok(state) => state.map_or(0, |s| s.events),
            Err(e) => {
                replies.push(format!("error: reading Subscription/{id} failed: {e}"));
                continue;
            }
        };
        let handshake = notification::bundle(
            &super::delivery::about(app, &config, &config.status, events),
            Kind::Handshake,
            &[],
        );
        replies.push(handshake.to_string());
        app.subscriptions.hub.bind(&id, tx.clone());
        live.wake.notify_one();
    }
    replies
}
