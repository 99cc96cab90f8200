//! The IG's operations on a Subscription, read through the caller's guarded store (a caller
//! that may not read the Subscription gets 404):
//! - `$status`: a `searchset` Bundle with the SubscriptionStatus (`query-status`);
//! - `$events`: a notification Bundle (`query-event`) of the recorded events
//!   `eventsSinceNumber..=eventsUntilNumber`, so a subscriber that was down catches up;
//! - `$get-ws-binding-token`: a token to bind a websocket to a websocket subscription.

use axum::http::Method;
use serde_json::{json, Value};

use super::config::{ChannelType, Content};
use super::notification::{self, About, Kind};
use crate::app::App;
use crate::error::FhirError;
use crate::fhir::datetime::format_instant;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;

/// The most events one `$events` answer carries.
pub const MAX_EVENTS: usize = 1000;

/// The Subscription as the caller may read it (404 otherwise).
async fn subscription(app: &App, id: &str) -> Result<Value, FhirError> {
    let version = app
        .store
        .read("Subscription", id)
        .await?
        .filter(|v| !v.deleted())
        .ok_or_else(|| FhirError::NotFound(format!("Subscription/{id} is not known")))?;
    crate::fhir::meta::stamp(&version)
        .ok_or_else(|| FhirError::Internal(format!("Subscription/{id} is not JSON")))
}

/// The payload content a Subscription asks for (`id-only` when it names none).
fn content_of(resource: &Value) -> Content {
    let url = super::config::extension_url("backport-payload-content");
    resource["channel"]["_payload"]["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == url.as_str())
        .find_map(|e| e["valueCode"].as_str().and_then(Content::parse))
        .unwrap_or(Content::IdOnly)
}

/// The parameters of a GET's query or a POST's Parameters body.
fn parameters(request: &FhirRequest) -> Result<Vec<(String, String)>, FhirError> {
    if request.method != Method::POST || request.body.is_empty() {
        return Ok(request.params.clone());
    }
    let body = request.json_body()?;
    if body["resourceType"] != "Parameters" {
        return Err(FhirError::invalid(
            "the operation's body must be a Parameters resource",
        ));
    }
    Ok(body["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            let value = p.as_object()?.iter().find_map(|(k, v)| {
                k.starts_with("value").then(|| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            })?;
            Some((name.to_owned(), value))
        })
        .collect())
}

fn number(params: &[(String, String)], name: &str) -> Result<Option<i64>, FhirError> {
    match params.iter().find(|(n, _)| n == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| FhirError::invalid(format!("{name} '{v}' is not an event number"))),
    }
}

/// `Subscription/[id]/$status`.
pub async fn status(app: &App, id: &str) -> Result<FhirResponse, FhirError> {
    let resource = subscription(app, id).await?;
    let state = app.subscriptions.store.state(id).await?.unwrap_or_default();
    let error = resource["error"].as_str();
    let about = About {
        base: &app.base_url,
        id,
        topic: resource["criteria"].as_str().unwrap_or_default(),
        status: resource["status"].as_str().unwrap_or_default(),
        events_since_start: state.events,
        content: Content::IdOnly,
        error,
    };
    let status = notification::status(&about, Kind::QueryStatus, &[]);
    Ok(FhirResponse::ok(json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{
            "fullUrl": format!("urn:uuid:{}", status["id"].as_str().unwrap_or_default()),
            "resource": status,
            "search": {"mode": "match"},
        }],
    })))
}

/// `Subscription/[id]/$events`.
pub async fn events(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let resource = subscription(app, id).await?;
    let params = parameters(request)?;
    let since = number(&params, "eventsSinceNumber")?;
    let until = number(&params, "eventsUntilNumber")?;
    let content = match params.iter().find(|(n, _)| n == "content") {
        None => content_of(&resource),
        Some((_, code)) => Content::parse(code).ok_or_else(|| {
            FhirError::invalid(format!(
                "content '{code}' is not one of empty, id-only, full-resource"
            ))
        })?,
    };
    let state = app.subscriptions.store.state(id).await?.unwrap_or_default();
    // Without a lower bound: the newest events (at most MAX_EVENTS).
    let until_n = until.unwrap_or(state.events).min(state.events);
    let since = since
        .unwrap_or((until_n - MAX_EVENTS as i64 + 1).max(1))
        .max(1);
    let events = app
        .subscriptions
        .store
        .events(id, since, Some(until_n), MAX_EVENTS)
        .await?;
    // What the caller may read of each focus (the request's guarded store).
    let notified = super::delivery::readable_events(app.store.as_ref(), &events).await;
    let about = About {
        base: &app.base_url,
        id,
        topic: resource["criteria"].as_str().unwrap_or_default(),
        status: resource["status"].as_str().unwrap_or_default(),
        events_since_start: state.events,
        content,
        error: resource["error"].as_str(),
    };
    Ok(FhirResponse::ok(notification::bundle(
        &about,
        Kind::QueryEvent,
        &notified,
    )))
}

/// `Subscription/[id]/$get-ws-binding-token`.
pub async fn get_ws_binding_token(app: &App, id: &str) -> Result<FhirResponse, FhirError> {
    let resource = subscription(app, id).await?;
    if resource["channel"]["type"] != "websocket" {
        return Err(FhirError::invalid(format!(
            "Subscription/{id} has a {} channel: binding tokens are for websocket channels",
            resource["channel"]["type"].as_str().unwrap_or("missing")
        )));
    }
    let live = app.subscriptions.live(id);
    if live.is_none_or(|l| l.config().channel != ChannelType::WebSocket) {
        return Err(FhirError::invalid(format!(
            "Subscription/{id} is not active (status {})",
            resource["status"].as_str().unwrap_or("missing")
        )));
    }
    let (token, expires) = app.subscriptions.hub.token(vec![id.to_owned()]);
    let ws_base = app
        .base_url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let root = ws_base.strip_suffix("/fhir").unwrap_or(&ws_base);
    Ok(FhirResponse::ok(json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": format_instant(expires)},
            {"name": "subscription", "valueString": id},
            {"name": "websocket-url", "valueUrl": format!("{root}{}", super::websocket::PATH)},
        ],
    })))
}
