//! Notification Bundles (IG: `backport-subscription-notification-r4`): a `history` Bundle whose
//! first entry is the SubscriptionStatus as a Parameters (`backport-subscription-status-r4`),
//! then one entry per event focus (its URL, and the resource for `full-resource`).

use serde_json::{json, Value};

use super::config::Content;
use crate::fhir::datetime::{format_instant, now_ms};
use crate::store::subscription::Event;
use crate::store::Method;

/// The notification types (R5 `subscription-notification-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Heartbeat => "heartbeat",
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

const STATUS_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
const NOTIFICATION_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";

/// The subscription a notification is about, as it stands.
pub struct About<'a> {
    /// The FHIR base URL.
    pub base: &'a str,
    pub id: &'a str,
    pub topic: &'a str,
    pub status: &'a str,
    pub events_since_start: i64,
    pub content: Content,
    pub error: Option<&'a str>,
}

/// One event with its focus resource (the JSON of the version, with `meta`) when the payload
/// carries it.
pub struct Notified<'a> {
    pub event: &'a Event,
    pub resource: Option<Value>,
}

/// The SubscriptionStatus Parameters.
pub fn status(about: &About<'_>, kind: Kind, events: &[Notified<'_>]) -> Value {
    let mut parameter = vec![
        json!({"name": "subscription", "valueReference": {"reference": format!("{}/Subscription/{}", about.base, about.id)}}),
    ];
    // The IG: the topic SHOULD NOT be sent with empty payloads.
    if about.content != Content::Empty {
        parameter.push(json!({"name": "topic", "valueCanonical": about.topic}));
    }
    parameter.push(json!({"name": "status", "valueCode": about.status}));
    parameter.push(json!({"name": "type", "valueCode": kind.code()}));
    parameter.push(json!({"name": "events-since-subscription-start", "valueString": about.events_since_start.to_string()}));
    for notified in events {
        let event = notified.event;
        let mut part = vec![
            json!({"name": "event-number", "valueString": event.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": format_instant(event.at)}),
        ];
        if about.content != Content::Empty {
            part.push(json!({"name": "focus", "valueReference": {"reference": focus_url(about.base, event)}}));
        }
        parameter.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(error) = about.error {
        parameter.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Parameters",
        "id": crate::fhir::id::new_id(),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameter,
    })
}

fn focus_url(base: &str, event: &Event) -> String {
    format!("{base}/{}/{}", event.focus_type, event.focus_id)
}

/// A notification Bundle of `kind` with `events`.
pub fn bundle(about: &About<'_>, kind: Kind, events: &[Notified<'_>]) -> Value {
    let status = status(about, kind, events);
    let mut entry = vec![json!({
        "fullUrl": format!("urn:uuid:{}", status["id"].as_str().unwrap_or_default()),
        "resource": status,
        "request": {"method": "GET", "url": format!("{}/Subscription/{}/$status", about.base, about.id)},
        "response": {"status": "200"},
    })];
    if about.content != Content::Empty {
        for notified in events {
            let event = notified.event;
            let (method, url, code) = match event.method {
                Method::Delete => (
                    "DELETE",
                    format!("{}/{}", event.focus_type, event.focus_id),
                    "204",
                ),
                _ if event.focus_version == 1 => ("POST", event.focus_type.clone(), "201"),
                _ => (
                    "PUT",
                    format!("{}/{}", event.focus_type, event.focus_id),
                    "200",
                ),
            };
            let mut e = json!({
                "fullUrl": focus_url(about.base, event),
                "request": {"method": method, "url": url},
                "response": {"status": code},
            });
            if about.content == Content::FullResource {
                if let Some(resource) = &notified.resource {
                    e["resource"] = resource.clone();
                }
            }
            entry.push(e);
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": crate::fhir::id::new_id(),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(now_ms()),
        "entry": entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_the_first_entry_of_a_history_bundle() {
        let event = Event {
            subscription: "s1".into(),
            number: 7,
            focus_type: "Flag".into(),
            focus_id: "f1".into(),
            focus_version: 2,
            method: Method::Put,
            at: 0,
        };
        let about = About {
            base: "http://x/fhir",
            id: "s1",
            topic: "t",
            status: "active",
            events_since_start: 7,
            content: Content::IdOnly,
            error: None,
        };
        let b = bundle(
            &about,
            Kind::EventNotification,
            &[Notified {
                event: &event,
                resource: None,
            }],
        );
        assert_eq!(b["type"], "history");
        assert_eq!(b["entry"][0]["resource"]["resourceType"], "Parameters");
        assert_eq!(b["entry"][1]["fullUrl"], "http://x/fhir/Flag/f1");
        assert_eq!(b["entry"][1]["request"]["method"], "PUT");
        assert!(b["entry"][1].get("resource").is_none());
        let params = b["entry"][0]["resource"]["parameter"].as_array().unwrap();
        assert!(params
            .iter()
            .any(|p| p["name"] == "notification-event" && p["part"][0]["valueString"] == "7"));
    }
}
