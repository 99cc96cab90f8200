//! The audit trail: an AuditEvent for every request to the FHIR API and the token endpoint
//! (who, which client, what, which patient, outcome, when), on an open server too (its agent
//! is the anonymous one).
//!
//! Requests hand their event to a bounded queue and go on; one writer stores the events in
//! batches. A full queue makes requests wait (backpressure) rather than drop events, and the
//! queue is drained when the server shuts down.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Access;
use crate::fhir::datetime::format_instant;
use crate::fhir::id::{self, new_id};
use crate::search::definitions::ServerRegistry;
use crate::store::{Method, Store};
use crate::write::{self, in_transaction, Indexing};

/// Events waiting to be written; beyond this, requests wait for the writer.
const QUEUE: usize = 1024;
/// Events written in one transaction.
const BATCH: usize = 128;

/// One request, as the audit trail records it.
#[derive(Debug, Clone)]
pub struct Event {
    pub recorded: i64,
    pub access: Access,
    pub method: String,
    /// Path segments below the FHIR base.
    pub segments: Vec<String>,
    pub query: Option<String>,
    pub status: u16,
    /// The request's `X-Request-Id` (the client's, or made by the server).
    pub request_id: Option<String>,
}

/// One request to the token endpoint (`POST /auth/token`), granted or refused.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub recorded: i64,
    /// The client id the assertion claims (`iss`), when it names one; refused requests
    /// record what was claimed, which need not be a registered client.
    pub claimed: Option<String>,
    /// Why it was refused: the client is told less (`invalid_client`), the trail keeps it.
    pub refusal: Option<String>,
    pub status: u16,
}

/// What the audit trail records: a FHIR API request or a token request.
#[derive(Debug, Clone)]
pub enum Record {
    Rest(Event),
    Token(TokenRequest),
}

impl From<Event> for Record {
    fn from(event: Event) -> Record {
        Record::Rest(event)
    }
}

impl From<TokenRequest> for Record {
    fn from(request: TokenRequest) -> Record {
        Record::Token(request)
    }
}

pub struct Sink {
    queue: mpsc::Sender<Record>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// Starts the writer, which stores events in `store` (unguarded: the server writes them),
    /// indexed with the server's search parameters as they are when each batch is written.
    pub fn start(store: Arc<dyn Store>, search_params: Arc<ServerRegistry>) -> Sink {
        let (queue, events) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let writer = tokio::spawn(write_events(store, search_params, events, stopped));
        Sink {
            queue,
            stop: Mutex::new(Some(stop)),
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queues an event, waiting while the queue is full.
    pub async fn record(&self, event: impl Into<Record>) {
        if self.queue.send(event.into()).await.is_err() {
            tracing::error!("audit trail closed: an AuditEvent could not be queued");
        }
    }

    /// Stops taking events and waits until every queued one is written.
    pub async fn close(&self) {
        if let Some(stop) = self.stop.lock().expect("audit lock").take() {
            let _ = stop.send(());
        }
        let writer = self.writer.lock().expect("audit lock").take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

async fn write_events(
    store: Arc<dyn Store>,
    search_params: Arc<ServerRegistry>,
    mut events: mpsc::Receiver<Record>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut closing = false;
    loop {
        let first = if closing {
            events.recv().await
        } else {
            tokio::select! {
                event = events.recv() => event,
                _ = &mut stopped => {
                    closing = true;
                    events.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        write_batch(&*store, &search_params, &batch).await;
    }
}

/// Writes a batch in one transaction, retrying a few times before giving up loudly.
async fn write_batch(store: &dyn Store, search_params: &ServerRegistry, batch: &[Record]) {
    let mut delay = std::time::Duration::from_millis(50);
    for attempt in 1..=5 {
        let indexing = &Indexing::new(search_params.current());
        let result = in_transaction(store, |tx| {
            Box::pin(async move {
                for event in batch {
                    write::write(
                        tx,
                        indexing,
                        "AuditEvent",
                        &new_id(),
                        None,
                        Method::Post,
                        Some(match event {
                            Record::Rest(event) => audit_event(event),
                            Record::Token(request) => token_audit_event(request),
                        }),
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await;
        match result {
            Ok(()) => return,
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, "writing AuditEvents failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                for event in batch {
                    tracing::error!(error = %e, ?event, "AuditEvent lost");
                }
            }
        }
    }
}

/// The RESTful interaction a request is (http://hl7.org/fhir/restful-interaction).
fn interaction(method: &str, segments: &[String]) -> &'static str {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, s.as_slice()) {
        (_, []) => "transaction",
        (_, ["metadata"]) => "capabilities",
        (_, ["_history"]) => "history-system",
        (_, [op, ..]) if op.starts_with('$') => "operation",
        (_, [_, op, ..]) if op.starts_with('$') => "operation",
        ("GET", [_]) | (_, [_, "_search"]) => "search-type",
        ("POST", [_]) => "create",
        ("DELETE", [_]) | ("DELETE", [_, _]) => "delete",
        ("PATCH", [_]) | ("PATCH", [_, _]) => "patch",
        ("PUT", [_]) | ("PUT", [_, _]) => "update",
        (_, [_, "_history"]) => "history-type",
        ("GET", [_, _]) => "read",
        (_, [_, _, "_history"]) => "history-instance",
        (_, [_, _, "_history", _]) => "vread",
        (_, [_, _, _]) => "search-compartment",
        _ => "operation",
    }
}

/// The AuditEvent action code of an HTTP method.
fn action(method: &str, interaction: &str) -> &'static str {
    match (method, interaction) {
        (_, "create") => "C",
        ("GET", _) | (_, "search-type") => "R",
        ("PUT", _) | ("PATCH", _) => "U",
        ("DELETE", _) => "D",
        _ => "E",
    }
}

/// The outcome code of an HTTP status (http://hl7.org/fhir/audit-event-outcome).
fn outcome(status: u16) -> &'static str {
    match status {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    }
}

/// The AuditEvent of a token request: a DICOM "User Authentication" / "Login" event whose
/// agent is the client the assertion claims to be.
pub fn token_audit_event(request: &TokenRequest) -> Value {
    let who = match &request.claimed {
        Some(client) => json!({
            "identifier": {"system": super::CLIENT_SYSTEM, "value": client},
            "display": super::token::client_uri(client),
        }),
        None => json!({"display": "unknown client (no client id in the request)"}),
    };
    json!({
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110114",
            "display": "User Authentication",
        },
        "subtype": [{
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110122",
            "display": "Login",
        }],
        "action": "E",
        "recorded": format_instant(request.recorded),
        "outcome": outcome(request.status),
        "outcomeDesc": match &request.refusal {
            Some(why) => format!("HTTP {}: {why}", request.status),
            None => format!("HTTP {}", request.status),
        },
        "agent": [{"who": who, "requestor": true}],
        "source": {
            "observer": {"display": "Signaal"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
        "entity": [{
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "name": "POST /auth/token",
        }],
    })
}

/// The AuditEvent resource of one request.
pub fn audit_event(event: &Event) -> Value {
    let code = interaction(&event.method, &event.segments);
    let who = match &event.access {
        Access::Granted(grant) => grant.agent.who(),
        Access::Unauthenticated => json!({"display": "anonymous (no valid access token)"}),
    };
    let agent = json!({"who": who, "requestor": true});
    let mut entities = Vec::new();
    let patient = match &event.access {
        Access::Granted(grant) => grant.patient.clone(),
        Access::Unauthenticated => None,
    }
    .or_else(|| match event.segments.as_slice() {
        [t, pid, ..] if t == "Patient" && id::is_valid(pid) => Some(pid.clone()),
        _ => None,
    });
    if let Some(patient) = &patient {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }));
    }
    if let [rtype, rid, ..] = event.segments.as_slice() {
        let reference = format!("{rtype}/{rid}");
        if id::is_valid(rid)
            && crate::fhir::resource_types::is_resource_type(rtype)
            && patient.as_ref().map(|p| format!("Patient/{p}")) != Some(reference.clone())
        {
            entities.push(json!({"what": {"reference": reference}}));
        }
    }
    let mut request = format!("{} /{}", event.method, event.segments.join("/"));
    if let Some(query) = &event.query {
        request.push('?');
        request.push_str(query);
    }
    let mut query_entity = json!({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
        "name": request,
    });
    if let Some(id) = &event.request_id {
        query_entity["detail"] = json!([{"type": "X-Request-Id", "valueString": id}]);
    }
    entities.push(query_entity);
    json!({
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": code}],
        "action": action(&event.method, code),
        "recorded": format_instant(event.recorded),
        "outcome": outcome(event.status),
        "outcomeDesc": format!("HTTP {}", event.status),
        "agent": [agent],
        "source": {
            "observer": {"display": "Signaal"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
        "entity": entities,
    })
}
