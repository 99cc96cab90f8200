//! The audit trail: a record of every request to the FHIR API and the token endpoint (who,
//! which client, what, which patient, outcome, when, the request id), on an open server too
//! (its agent is the anonymous one).
//!
//! Each request becomes one compact row of the audit log (`store::audit`), never a resource:
//! requests hand their entry to a bounded queue and go on; one writer appends the entries in
//! large batches (up to [`BATCH`] rows, or whatever came within [`FLUSH`] of the first), on
//! its own connection — on SQLite its own database file — so it never waits for the resource
//! writer. A full queue makes requests wait (backpressure) rather than drop entries; shutdown
//! drains the queue before the log closes. A `kill -9` loses what was queued and not yet
//! written: at most the last [`FLUSH`] of requests (and never more than [`QUEUE`] +
//! [`BATCH`] entries).
//!
//! The rows are served as AuditEvent resources ([`audit_event`]), read and searched by
//! `interaction::audit_event` under [`confine`], and optionally shipped as NDJSON
//! AuditEvents to a file a SIEM collector reads (`--audit-forward`). Entries older than
//! `--audit-retention` days are removed every hour.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::scope::{Perm, ADMIN_ONLY};
use super::{Access, Agent, Allowed, Grant};
use crate::fhir::datetime::{format_instant, now_ms};
use crate::fhir::id;
use crate::store::audit::{Actor, AuditEntry, AuditFilter, AuditLog, AuditQuery, EventKind};
use crate::store::StoreError;

/// Entries waiting to be written; beyond this, requests wait for the writer.
pub const QUEUE: usize = 16_384;
/// The most entries written in one transaction.
pub const BATCH: usize = 2_000;
/// How long the writer gathers entries after the first one of a batch before writing them.
pub const FLUSH: Duration = Duration::from_millis(100);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// What `signaal serve` is told about the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// `--audit-retention DAYS`: entries older than this are removed (`None`: kept).
    pub retention_days: Option<u32>,
    /// `--audit-forward FILE`: every written entry is also appended there as one line of
    /// NDJSON (an AuditEvent), for a SIEM's collector to ship.
    pub forward: Option<PathBuf>,
}

/// One request to the FHIR API, as the audit trail records it.
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
    /// Which endpoint (`GET /auth/authorize`…); `None`: the token endpoint.
    pub endpoint: Option<&'static str>,
}

impl From<Event> for AuditEntry {
    fn from(event: Event) -> AuditEntry {
        let code = interaction(&event.method, &event.segments);
        // A person's token: the person the client acted for (SMART App Launch's fhirUser).
        let user = match &event.access {
            Access::Granted(grant) => grant.user.clone(),
            Access::Unauthenticated => None,
        };
        let (actor, client, bound) = match &event.access {
            Access::Granted(grant) => match &grant.agent {
                Agent::Client { id, system, .. } => (
                    Actor::Client,
                    Some(if system == super::CLIENT_SYSTEM {
                        id.clone()
                    } else {
                        format!("{system}|{id}")
                    }),
                    grant.patient.clone(),
                ),
                _ => (Actor::Anonymous, None, grant.patient.clone()),
            },
            Access::Unauthenticated => (Actor::Unauthenticated, None, None),
        };
        let patient = bound.or_else(|| match event.segments.as_slice() {
            [t, pid, ..] if t == "Patient" && id::is_valid(pid) => Some(pid.clone()),
            _ => None,
        });
        let entity = match event.segments.as_slice() {
            [rtype, rid, ..]
                if id::is_valid(rid) && crate::fhir::resource_types::is_resource_type(rtype) =>
            {
                Some(format!("{rtype}/{rid}"))
            }
            _ => None,
        }
        .filter(|e| patient.as_ref().map(|p| format!("Patient/{p}")).as_ref() != Some(e));
        let path = event.segments.join("/");
        let told = entity
            .clone()
            .or_else(|| patient.as_ref().map(|p| format!("Patient/{p}")));
        AuditEntry {
            seq: 0,
            recorded: event.recorded,
            event: EventKind::Rest,
            actor,
            status: event.status as i64,
            action: action(&event.method, code).to_owned(),
            interaction: Some(code.to_owned()),
            client,
            patient,
            entity,
            path: (told.as_deref() != Some(path.as_str())).then_some(path),
            query: event.query,
            request_id: event.request_id,
            detail: user,
            method: event.method,
        }
    }
}

impl From<TokenRequest> for AuditEntry {
    fn from(request: TokenRequest) -> AuditEntry {
        AuditEntry {
            seq: 0,
            recorded: request.recorded,
            event: EventKind::Login,
            actor: if request.claimed.is_some() {
                Actor::Client
            } else {
                Actor::Unauthenticated
            },
            status: request.status as i64,
            action: "E".into(),
            method: "POST".into(),
            interaction: None,
            client: request.claimed,
            patient: None,
            entity: None,
            path: request.endpoint.map(str::to_owned),
            query: None,
            request_id: None,
            detail: request.refusal,
        }
    }
}

pub struct Sink {
    log: Arc<dyn AuditLog>,
    queue: mpsc::Sender<AuditEntry>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    retention: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// Starts the writer on `log` (and retention, when configured).
    pub fn start(log: Arc<dyn AuditLog>, settings: &AuditSettings) -> Sink {
        let (queue, entries) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let writer = tokio::spawn(write_entries(
            log.clone(),
            settings.forward.clone(),
            entries,
            stopped,
        ));
        let retention = settings.retention_days.map(|days| {
            let log = Arc::downgrade(&log);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RETENTION_EVERY);
                loop {
                    tick.tick().await;
                    let Some(log) = log.upgrade() else { return };
                    let cutoff = now_ms() - i64::from(days) * DAY_MS;
                    match log.forget_before(cutoff).await {
                        Ok(()) => tracing::debug!(
                            before = format_instant(cutoff),
                            "audit retention: older entries removed"
                        ),
                        Err(e) => tracing::warn!(error = %e, "audit retention failed"),
                    }
                }
            })
        });
        Sink {
            log,
            queue,
            stop: Mutex::new(Some(stop)),
            writer: Mutex::new(Some(writer)),
            retention: Mutex::new(retention),
        }
    }

    /// The log the entries are written to (read by the AuditEvent interactions).
    pub fn log(&self) -> &Arc<dyn AuditLog> {
        &self.log
    }

    /// Queues an entry, waiting while the queue is full.
    pub async fn record(&self, entry: impl Into<AuditEntry>) {
        if self.queue.send(entry.into()).await.is_err() {
            tracing::error!("audit trail closed: an entry could not be queued");
        }
    }

    /// Stops taking entries, waits until every queued one is written, and closes the log.
    pub async fn close(&self) {
        if let Some(stop) = self.stop.lock().expect("audit lock").take() {
            let _ = stop.send(());
        }
        if let Some(retention) = self.retention.lock().expect("audit lock").take() {
            retention.abort();
        }
        let writer = self.writer.lock().expect("audit lock").take();
        if let Some(writer) = writer {
            let _ = writer.await;
            self.log.close().await;
        }
    }
}

async fn write_entries(
    log: Arc<dyn AuditLog>,
    forward: Option<PathBuf>,
    mut entries: mpsc::Receiver<AuditEntry>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut closing = false;
    loop {
        let first = if closing {
            entries.recv().await
        } else {
            tokio::select! {
                entry = entries.recv() => entry,
                _ = &mut stopped => {
                    closing = true;
                    entries.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        // Gather for a moment: one transaction (one fsync) for many requests.
        let deadline = tokio::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            while batch.len() < BATCH {
                match entries.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            if closing || batch.len() >= BATCH {
                break;
            }
            tokio::select! {
                entry = entries.recv() => match entry {
                    Some(entry) => batch.push(entry),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut stopped, if !closing => {
                    closing = true;
                    entries.close();
                }
            }
        }
        if write_batch(&*log, &mut batch).await {
            if let Some(file) = &forward {
                forward_batch(file, &batch);
            }
        }
    }
}

/// Writes a batch, retrying a few times before giving up loudly; true once written.
async fn write_batch(log: &dyn AuditLog, batch: &mut [AuditEntry]) -> bool {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match log.append(batch).await {
            Ok(()) => return true,
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, "writing the audit log failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                for entry in batch.iter() {
                    tracing::error!(error = %e, ?entry, "audit entry lost");
                }
            }
        }
    }
    false
}

/// Appends the written entries to the forward file as NDJSON AuditEvents.
fn forward_batch(file: &std::path::Path, batch: &[AuditEntry]) {
    let mut text = String::new();
    for entry in batch {
        text.push_str(&audit_event(entry).to_string());
        text.push('\n');
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::error!(file = %file.display(), error = %e, "audit entries not forwarded");
    }
}

/// Limits a read or search of the log to what `access` may see: a scope naming AuditEvent
/// (never `*`) with `perm`; a patient-bound token sees the events about its Patient only.
/// Granular scope filters (`AuditEvent.rs?…`) are not applied to the log: such a scope is
/// refused rather than read wider than it says.
pub fn confine(access: &Access, query: &mut AuditQuery, perm: Perm) -> Result<(), StoreError> {
    let grant = granted(access, perm)?;
    if let Some(patient) = &grant.patient {
        query
            .filters
            .insert(0, AuditFilter::Patient(vec![patient.clone()]));
    }
    Ok(())
}

/// Whether `access` may read the log with `perm` at all (see [`confine`]), asked before
/// anything is looked up: the Patient a patient-bound token is confined to, if any.
pub fn bound_patient(access: &Access, perm: Perm) -> Result<Option<&str>, StoreError> {
    Ok(granted(access, perm)?.patient.as_deref())
}

/// Whether the entry is about the Patient a token is bound to (any entry when `None`); one
/// about another patient reads as unknown.
pub fn is_about(entry: &AuditEntry, patient: Option<&str>) -> bool {
    match patient {
        None => true,
        Some(p) => {
            entry.patient.as_deref() == Some(p)
                || entry.entity.as_deref() == Some(&format!("Patient/{p}"))
        }
    }
}

fn granted(access: &Access, perm: Perm) -> Result<&Grant, StoreError> {
    let Access::Granted(grant) = access else {
        return Err(StoreError::Forbidden(
            "The audit trail needs an access token".into(),
        ));
    };
    match grant.allowed(ADMIN_ONLY, perm) {
        Allowed::All => Ok(grant),
        Allowed::No => Err(StoreError::Forbidden(format!(
            "The access token of {} does not allow '{}' on {ADMIN_ONLY} (scope {}/{ADMIN_ONLY}.{})",
            grant.agent.name(),
            perm.letter(),
            if grant.patient.is_some() {
                "patient"
            } else {
                "system"
            },
            perm.letter()
        ))),
        Allowed::Filtered(_) => Err(StoreError::Forbidden(format!(
            "Granular scopes (with a filter) on {ADMIN_ONLY} are not supported: the audit log \
             is searched with its own parameters; ask for a scope without a filter"
        ))),
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
pub fn outcome(status: i64) -> &'static str {
    match status {
        ..=399 => "0",
        400..=499 => "4",
        _ => "8",
    }
}

/// The status range `[lo, hi)` of an outcome code.
pub fn outcome_statuses(code: &str) -> Option<(i64, i64)> {
    match code {
        "0" => Some((0, 400)),
        "4" => Some((400, 500)),
        "8" => Some((500, 1000)),
        // Serious and major failures: the server answers none of its own failures that way.
        "12" => Some((0, 0)),
        _ => None,
    }
}

/// The agent of an entry (`AuditEvent.agent.who`).
fn who(entry: &AuditEntry) -> Value {
    match (entry.actor, &entry.client) {
        (Actor::Client, Some(client)) => {
            let agent = match client.rsplit_once('|') {
                Some((system, id)) => Agent::Client {
                    id: id.to_owned(),
                    system: system.to_owned(),
                    uri: format!("{system}#{id}"),
                },
                None => Agent::Client {
                    id: client.clone(),
                    system: super::CLIENT_SYSTEM.to_owned(),
                    uri: super::token::client_uri(client),
                },
            };
            agent.who()
        }
        (Actor::Anonymous, _) => Agent::Anonymous.who(),
        _ if entry.event == EventKind::Login => {
            json!({"display": "unknown client (no client id in the request)"})
        }
        _ => json!({"display": "anonymous (no valid access token)"}),
    }
}

const SOURCE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";

/// The AuditEvent resource of a log entry (IHE BALP's shape: type, subtype, action, recorded,
/// outcome, the requesting agent, the server as source, the patient and the resource or query
/// as entities, the request id).
pub fn audit_event(entry: &AuditEntry) -> Value {
    let source = json!({
        "observer": {"display": "Signaal"},
        "type": [{"system": SOURCE, "code": "4"}],
    });
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": entry.id(),
        "meta": {"versionId": "1", "lastUpdated": format_instant(entry.recorded)},
    });
    if entry.event == EventKind::Login {
        event["type"] = json!({
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110114",
            "display": "User Authentication",
        });
        event["subtype"] = json!([{
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110122",
            "display": "Login",
        }]);
        event["action"] = json!(entry.action);
        event["recorded"] = json!(format_instant(entry.recorded));
        event["outcome"] = json!(outcome(entry.status));
        event["outcomeDesc"] = json!(match &entry.detail {
            Some(why) => format!("HTTP {}: {why}", entry.status),
            None => format!("HTTP {}", entry.status),
        });
        event["agent"] = json!([{"who": who(entry), "requestor": true}]);
        event["source"] = source;
        event["entity"] = json!([{
            "type": {"system": ENTITY_TYPE, "code": "2"},
            "name": entry.path.as_deref().unwrap_or("POST /auth/token"),
        }]);
        return event;
    }
    let mut entities = Vec::new();
    if let Some(patient) = &entry.patient {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": ENTITY_TYPE, "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }));
    }
    if let Some(entity) = &entry.entity {
        entities.push(json!({"what": {"reference": entity}}));
    }
    let path = entry
        .path
        .clone()
        .or_else(|| entry.entity.clone())
        .or_else(|| entry.patient.as_ref().map(|p| format!("Patient/{p}")))
        .unwrap_or_default();
    let mut request = format!("{} /{path}", entry.method);
    if let Some(query) = &entry.query {
        request.push('?');
        request.push_str(query);
    }
    let mut query_entity = json!({"type": {"system": ENTITY_TYPE, "code": "2"}, "name": request});
    if let Some(id) = &entry.request_id {
        query_entity["detail"] = json!([{"type": "X-Request-Id", "valueString": id}]);
    }
    entities.push(query_entity);
    event["type"] = json!({
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "RESTful Operation",
    });
    if let Some(code) = &entry.interaction {
        event["subtype"] =
            json!([{"system": "http://hl7.org/fhir/restful-interaction", "code": code}]);
    }
    event["action"] = json!(entry.action);
    event["recorded"] = json!(format_instant(entry.recorded));
    event["outcome"] = json!(outcome(entry.status));
    event["outcomeDesc"] = json!(format!("HTTP {}", entry.status));
    // A RESTful entry's detail is the person a client acted for (their fhirUser): the person
    // is the requestor, the client the software they used.
    event["agent"] = match &entry.detail {
        Some(user) => json!([
            {"who": {"reference": user}, "requestor": true},
            {"who": who(entry), "requestor": false},
        ]),
        None => json!([{"who": who(entry), "requestor": true}]),
    };
    event["source"] = source;
    event["entity"] = json!(entities);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_by_open_server(segments: &[&str]) -> AuditEntry {
        AuditEntry::from(Event {
            recorded: 1_700_000_000_000,
            access: Access::Granted(Grant::open()),
            method: "GET".into(),
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: None,
            status: 200,
            request_id: Some("r-1".into()),
        })
    }

    #[test]
    fn a_read_of_a_patient_keeps_the_patient_once() {
        let entry = read_by_open_server(&["Patient", "p1"]);
        assert_eq!(entry.patient.as_deref(), Some("p1"));
        assert_eq!(entry.entity, None);
        assert_eq!(entry.path, None);
        let event = audit_event(&entry);
        assert_eq!(event["entity"][1]["name"], "GET /Patient/p1");
        assert_eq!(event["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(event["subtype"][0]["code"], "read");
    }

    #[test]
    fn a_search_keeps_its_path_and_query() {
        let mut entry = read_by_open_server(&["Observation"]);
        entry.query = Some("code=x".into());
        assert_eq!(entry.path.as_deref(), Some("Observation"));
        assert_eq!(
            audit_event(&entry)["entity"][0]["name"],
            "GET /Observation?code=x"
        );
    }
}
