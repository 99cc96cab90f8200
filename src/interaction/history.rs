//! history: `GET [base]/[type]/[id]/_history`, `[base]/[type]/_history` and `[base]/_history`.
//!
//! A `history` Bundle, newest first, paged with keyset cursors on the global write order, so
//! links stay correct while others write and no result set is kept on the server.

use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, parse_range};
use crate::fhir::meta;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::bundle::bundle;
use crate::interaction::paging::{self, Page};
use crate::interaction::{check_id, check_type};
use crate::search::result::{self, DEFAULT_COUNT};
use crate::search::sort::{CURSOR_AFTER, CURSOR_BEFORE};
use crate::store::{HistoryQuery, Method};

/// Which history: the whole system, one type, or one resource.
pub enum Scope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

pub async fn history(
    app: &App,
    request: &FhirRequest,
    scope: Scope<'_>,
) -> Result<FhirResponse, FhirError> {
    let mut query = HistoryQuery {
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let path = match scope {
        Scope::System => "_history".to_owned(),
        Scope::Type(rtype) => {
            check_type(rtype)?;
            query.rtype = Some(rtype.to_owned());
            format!("{rtype}/_history")
        }
        Scope::Instance(rtype, id) => {
            check_type(rtype)?;
            check_id(id)?;
            query.rtype = Some(rtype.to_owned());
            query.id = Some(id.to_owned());
            format!("{rtype}/{id}/_history")
        }
    };
    let mut kept = Vec::new();
    for (name, value) in &request.params {
        match name.as_str() {
            "_count" => query.count = result::count(value)?.size,
            "_since" => query.since = Some(instant(name, value)?.0),
            "_at" => query.at = Some(instant(name, value)?),
            CURSOR_AFTER => query.after_seq = Some(cursor(value)?),
            CURSOR_BEFORE => query.before_seq = Some(cursor(value)?),
            other => {
                return Err(FhirError::invalid(format!(
                    "History does not support the parameter '{other}'"
                )))
            }
        }
        if name != CURSOR_AFTER && name != CURSOR_BEFORE {
            kept.push((name.clone(), value.clone()));
        }
    }
    if let Scope::Instance(rtype, id) = scope {
        if app.store.read(rtype, id).await?.is_none() {
            return Err(FhirError::NotFound(format!("{rtype}/{id} is not known")));
        }
    }
    let mut rows = app.store.history(&query).await?;
    let more = rows.len() > query.count;
    rows.truncate(query.count);
    let paging_back = query.after_seq.is_some();
    if paging_back {
        rows.reverse();
    }
    let page = Page {
        first: rows.first().map(|r| r.seq.to_string()),
        last: rows.last().map(|r| r.seq.to_string()),
        more,
        backwards: paging_back,
        forwards: query.before_seq.is_some(),
    };
    // Newest first: the next page holds older versions (smaller sequence numbers).
    // The links say the page size used, which a capped `_count` is not.
    let kept = result::with_count_used(&kept, query.count);
    let links = paging::links(&app.url(&path), &kept, &page, CURSOR_BEFORE, CURSOR_AFTER);
    let entries: Vec<Value> = rows.iter().map(|row| entry(app, &row.version)).collect();
    Ok(FhirResponse::ok(bundle("history", None, links, entries)))
}

fn instant(name: &str, value: &str) -> Result<(i64, i64), FhirError> {
    parse_range(value).map_err(|e| FhirError::invalid(format!("{name}: {e}")))
}

fn cursor(value: &str) -> Result<i64, FhirError> {
    value
        .parse()
        .map_err(|_| FhirError::invalid("The paging cursor is not valid"))
}

/// A history entry: the version (absent for a deletion), and the request and response that
/// made it (Bundle rules bdl-… for history).
fn entry(app: &App, version: &crate::store::Version) -> Value {
    let (rtype, id, v) = (&version.rtype, &version.id, version.version);
    let (url, status) = match version.method {
        Method::Post => (rtype.to_string(), "201 Created"),
        Method::Put if v == 1 => (format!("{rtype}/{id}"), "201 Created"),
        Method::Put | Method::Patch => (format!("{rtype}/{id}"), "200 OK"),
        Method::Delete => (format!("{rtype}/{id}"), "204 No Content"),
    };
    let mut entry = json!({
        "fullUrl": app.url(&format!("{rtype}/{id}")),
        "request": {"method": version.method.as_str(), "url": url},
        "response": {
            "status": status,
            "etag": format!("W/\"{v}\""),
            "lastModified": format_instant(version.last_updated),
        },
    });
    if let Some(resource) = meta::stamp(version) {
        entry["resource"] = resource;
    }
    entry
}
