//! AuditEvent read and search, served from the audit log (`store::audit`), not from the
//! resource tables: `GET [base]/AuditEvent/[id]` and
//! `GET [base]/AuditEvent?date=…&agent=…&patient=…&entity=…&outcome=…&type=…&subtype=…&action=…`
//! (also `POST [base]/AuditEvent/_search`), newest first, paged with `_count` and a `next` link.
//!
//! The parameters are R4's AuditEvent search parameters, on what the log records: `date`
//! (`recorded`, with the prefixes `eq`, `lt`, `le`, `gt`, `ge`, `sa`, `eb`), `agent` (and
//! `agent:identifier`, `altid`: the client, `[system|]id`), `patient` (`[Patient/]id`),
//! `entity` (`Type/id`), `outcome`, `type`, `subtype` and `action` (tokens, `[system|]code`).
//! Values of one parameter are OR-ed (`,`), parameters AND-ed. Nobody writes the log through
//! the API: the server records every request itself.

use serde_json::{json, Value};

use crate::app::App;
use crate::auth::audit::{self, audit_event};
use crate::auth::scope::Perm;
use crate::auth::CLIENT_SYSTEM;
use crate::error::FhirError;
use crate::fhir::datetime::parse_range;
use crate::http::request::{parse_query, FhirRequest};
use crate::http::response::FhirResponse;
use crate::store::audit::{AuditEntry, AuditFilter, AuditQuery, Cmp, EventKind};

/// The page size without `_count`, and the largest one.
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1_000;
/// The cursor parameter of the next page (opaque to clients).
const CURSOR: &str = "_before";

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const OUTCOME: &str = "http://hl7.org/fhir/audit-event-outcome";
const ACTION: &str = "http://hl7.org/fhir/audit-event-action";

/// The AuditEvents are the server's record: nobody writes, changes or deletes them.
pub fn refuse_write() -> FhirError {
    FhirError::Forbidden(
        "AuditEvent resources are the audit trail: the server records every request itself, \
         and nobody writes, changes or deletes them"
            .into(),
    )
}

/// `GET [base]/AuditEvent/[id]`.
pub async fn read(app: &App, id: &str) -> Result<FhirResponse, FhirError> {
    let unknown = || FhirError::NotFound(format!("AuditEvent/{id} is not known"));
    // The grant is checked before anything is looked up: the same answer for every id.
    let bound = audit::bound_patient(&app.access, Perm::Read)?;
    let Some((recorded, seq)) = AuditEntry::parse_id(id) else {
        return Err(unknown());
    };
    let log = app.auth.audit.log();
    let Some(entry) = log.get(recorded, seq).await? else {
        return Err(unknown());
    };
    if !audit::is_about(&entry, bound) {
        return Err(unknown());
    }
    let event = audit_event(&entry);
    Ok(FhirResponse::ok(event).with_version(1, entry.recorded))
}

/// `GET [base]/AuditEvent?…` and `POST [base]/AuditEvent/_search`.
pub async fn search(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let mut params = request.params.clone();
    if request.method == axum::http::Method::POST {
        let content_type = request.header("content-type").unwrap_or("");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(FhirError::UnsupportedMediaType(
                "POST _search takes an application/x-www-form-urlencoded body".into(),
            ));
        }
        let body = std::str::from_utf8(&request.body)
            .map_err(|_| FhirError::invalid("The form body is not UTF-8"))?;
        params.extend(parse_query(body));
    }
    let mut query = parse(&params)?;
    audit::confine(&app.access, &mut query, Perm::Search)?;
    let mut entries = app.auth.audit.log().search(&query).await?;
    let more = entries.len() > query.count;
    entries.truncate(query.count);
    let url = app.url("AuditEvent");
    let kept: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != CURSOR).collect();
    let link = |cursor: Option<String>| {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        serializer.extend_pairs(&kept);
        if let Some(cursor) = cursor {
            serializer.append_pair(CURSOR, &cursor);
        }
        let query = serializer.finish();
        if query.is_empty() {
            url.clone()
        } else {
            format!("{url}?{query}")
        }
    };
    let mut links = vec![json!({"relation": "self", "url": link(None)})];
    if let Some(last) = entries.last().filter(|_| more) {
        links.push(json!({"relation": "next", "url": link(Some(last.id()))}));
    }
    let entry: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "fullUrl": app.url(&format!("AuditEvent/{}", e.id())),
                "resource": audit_event(e),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let total = (!more && query.before.is_none()).then_some(entries.len() as u64);
    let bundle = super::bundle::bundle("searchset", total, links, entry);
    Ok(FhirResponse::ok(bundle))
}

/// The log query of the search parameters.
fn parse(params: &[(String, String)]) -> Result<AuditQuery, FhirError> {
    let mut query = AuditQuery {
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    for (name, value) in params {
        let values = || -> Vec<&str> { value.split(',').filter(|v| !v.is_empty()).collect() };
        match name.as_str() {
            "_count" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| FhirError::invalid(format!("_count '{value}' is not a number")))?;
                query.count = n.min(MAX_COUNT);
            }
            CURSOR => {
                query.before = Some(AuditEntry::parse_id(value).ok_or_else(|| {
                    FhirError::invalid(format!("'{value}' is not a cursor of this server"))
                })?);
            }
            "_sort" if value == "-date" => {}
            "date" => date(&mut query, value)?,
            "agent" | "agent:identifier" | "altid" => {
                query.filters.push(AuditFilter::Client(
                    values().into_iter().map(client).collect::<Result<_, _>>()?,
                ));
            }
            "patient" => query.filters.push(AuditFilter::Patient(
                values()
                    .into_iter()
                    .map(|v| v.strip_prefix("Patient/").unwrap_or(v).to_owned())
                    .collect(),
            )),
            "entity" => query.filters.push(AuditFilter::Entity(
                values().into_iter().map(str::to_owned).collect(),
            )),
            "outcome" => {
                let mut ranges = Vec::new();
                for v in values() {
                    let code = code_of(v, OUTCOME)?;
                    ranges.extend(code.and_then(audit::outcome_statuses));
                }
                query.filters.push(if ranges.is_empty() {
                    AuditFilter::Nothing
                } else {
                    AuditFilter::Status(ranges)
                });
            }
            "type" => {
                let mut kinds = Vec::new();
                for v in values() {
                    let (system, code) = split_token(v);
                    kinds.extend(match (system, code) {
                        (None | Some(AUDIT_EVENT_TYPE), "rest") => Some(EventKind::Rest),
                        (None | Some(DCM), "110114") => Some(EventKind::Login),
                        _ => None,
                    });
                }
                query.filters.push(if kinds.is_empty() {
                    AuditFilter::Nothing
                } else {
                    AuditFilter::Event(kinds)
                });
            }
            "subtype" => {
                let mut codes = Vec::new();
                let mut login = false;
                for v in values() {
                    let (system, code) = split_token(v);
                    match (system, code) {
                        (None | Some(DCM), "110122") => login = true,
                        (None | Some(RESTFUL_INTERACTION), code) => codes.push(code.to_owned()),
                        _ => {}
                    }
                }
                query.filters.push(match (login, codes.is_empty()) {
                    (true, true) => AuditFilter::Event(vec![EventKind::Login]),
                    (false, false) => AuditFilter::Interaction(codes),
                    (false, true) => AuditFilter::Nothing,
                    (true, false) => {
                        return Err(FhirError::invalid(
                            "subtype: a login (110122) and RESTful interactions cannot be OR-ed \
                             in one parameter",
                        ))
                    }
                });
            }
            "action" => {
                let mut codes = Vec::new();
                for v in values() {
                    codes.extend(code_of(v, ACTION)?.map(str::to_owned));
                }
                query.filters.push(if codes.is_empty() {
                    AuditFilter::Nothing
                } else {
                    AuditFilter::Action(codes)
                });
            }
            other => {
                return Err(FhirError::invalid(format!(
                    "The audit log is searched by date, agent, patient, entity, outcome, type, \
                     subtype and action (with _count); '{other}' is not supported"
                )))
            }
        }
    }
    Ok(query)
}

/// `[system|]code`.
fn split_token(value: &str) -> (Option<&str>, &str) {
    match value.split_once('|') {
        Some(("", code)) => (None, code),
        Some((system, code)) => (Some(system), code),
        None => (None, value),
    }
}

/// The code of a token value in `system` (`None`: another system, which nothing matches).
fn code_of<'a>(value: &'a str, system: &str) -> Result<Option<&'a str>, FhirError> {
    Ok(match split_token(value) {
        (Some(s), _) if s != system => None,
        (_, code) => Some(code),
    })
}

/// The client an `agent` value names: `id`, `urn:signaal:client|id`, or `issuer|id`.
fn client(value: &str) -> Result<String, FhirError> {
    Ok(match split_token(value) {
        (None, id) | (Some(CLIENT_SYSTEM), id) => id.to_owned(),
        (Some(system), id) => format!("{system}|{id}"),
    })
}

/// A `date` value: a prefix and a date, dateTime or instant, as the range it covers.
fn date(query: &mut AuditQuery, value: &str) -> Result<(), FhirError> {
    let (prefix, rest) = match value.get(..2) {
        Some(p) if p.chars().all(|c| c.is_ascii_lowercase()) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (lo, hi) = parse_range(rest).map_err(FhirError::invalid)?;
    let mut push = |cmp, at| query.filters.push(AuditFilter::Recorded(cmp, at));
    match prefix {
        "eq" => {
            push(Cmp::Ge, lo);
            push(Cmp::Lt, hi);
        }
        "ge" => push(Cmp::Ge, lo),
        "gt" | "sa" => push(Cmp::Ge, hi),
        "lt" | "eb" => push(Cmp::Lt, lo),
        "le" => push(Cmp::Lt, hi),
        other => {
            return Err(FhirError::invalid(format!(
                "date: the prefix '{other}' is not supported on the audit log (eq, lt, le, gt, \
                 ge, sa, eb)"
            )))
        }
    }
    Ok(())
}
