//! What batch and transaction Bundles share (http page, "batch/transaction"): reading an
//! entry's `request` into an action, rewriting references, and writing an entry's `response`.

use crate::validation::target_profile::TargetCheck;
use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::error::{information, FhirError, Issue};
use crate::fhir::datetime::format_instant;
use crate::fhir::meta;
use crate::http::negotiate::Return;
use crate::http::request::{parse_query, FhirRequest};
use crate::http::response::FhirResponse;
use crate::interaction::patch::Patch;
use crate::interaction::version::Outcome;
use crate::interaction::{check_id, check_type, conditional_criteria, create, parse_etag, update};
use crate::store::Tx;

/// What an entry asks for.
#[derive(Debug, Clone)]
pub enum Action {
    /// `POST Type`, with `ifNoneExist` criteria for a conditional create.
    Create {
        condition: Option<Vec<(String, String)>>,
    },
    /// `PUT Type/id`.
    Update { id: String },
    /// `PUT Type?criteria`, with the id the body may carry.
    ConditionalUpdate { body_id: Option<String> },
    /// `DELETE Type/id`.
    Delete { id: String },
    /// `DELETE Type?criteria`.
    ConditionalDelete,
    /// `GET`/`HEAD` (and `POST Type/_search`): read, vread, search, history, …
    Read,
    /// `PATCH Type/id`, or `PATCH Type?criteria` (`id` is `None`), with the patch the entry's
    /// resource carries.
    Patch { id: Option<String>, patch: Patch },
}

/// One `Bundle.entry`, read and checked.
#[derive(Debug, Clone)]
pub struct Entry {
    pub index: usize,
    pub full_url: Option<String>,
    pub method: String,
    /// The resource type the request URL names (empty for system-level reads).
    pub rtype: String,
    pub segments: Vec<String>,
    pub params: Vec<(String, String)>,
    pub action: Action,
    pub resource: Option<Value>,
    pub if_match: Option<i64>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    /// The resource's references to check against their elements' profiles once the
    /// targets are found (set by `transaction::checked_entry`; `target_profile`).
    pub targets: Vec<TargetCheck>,
}

impl Entry {
    /// `Bundle.entry[3] (fullUrl urn:uuid:…)`: how errors name the entry.
    pub fn label(&self) -> String {
        label(self.index, self.full_url.as_deref())
    }

    pub fn is_write(&self) -> bool {
        !matches!(self.action, Action::Read)
    }

    /// The entry as an HTTP request to the ordinary read/search code (GET entries).
    pub fn read_request(&self) -> FhirRequest {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("if-none-match", &self.if_none_match),
            ("if-modified-since", &self.if_modified_since),
        ] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        FhirRequest {
            method: HttpMethod::GET,
            segments: self.segments.clone(),
            params: self.params.clone(),
            headers,
            body: Default::default(),
        }
    }
}

pub fn label(index: usize, full_url: Option<&str>) -> String {
    match full_url {
        Some(url) => format!("Bundle.entry[{index}] (fullUrl {url})"),
        None => format!("Bundle.entry[{index}]"),
    }
}

/// Reads `Bundle.entry[index]`: `request.method` and `request.url` are required; the URL is
/// relative to the base (or absolute on this server's base).
pub fn parse(app: &App, index: usize, entry: &Value) -> Result<Entry, FhirError> {
    let at = |element: &str| format!("Bundle.entry[{index}].{element}");
    let text = |value: &Value, name: &str| -> Option<String> {
        value.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    let full_url = text(entry, "fullUrl");
    let request = entry.get("request").ok_or_else(|| {
        FhirError::invalid_at(
            "required",
            "A batch or transaction entry needs a request (method and url)",
            at("request"),
        )
    })?;
    let method = text(request, "method").ok_or_else(|| {
        FhirError::invalid_at(
            "required",
            "The entry's request has no method",
            at("request.method"),
        )
    })?;
    let url = text(request, "url").ok_or_else(|| {
        FhirError::invalid_at(
            "required",
            "The entry's request has no url",
            at("request.url"),
        )
    })?;
    let (segments, params) =
        split_url(app, &url).map_err(|m| FhirError::invalid_at("invalid", m, at("request.url")))?;
    let resource = entry.get("resource").cloned();
    let if_match = match text(request, "ifMatch") {
        None => None,
        Some(v) => Some(parse_etag(&v).ok_or_else(|| {
            FhirError::invalid_at(
                "invalid",
                format!("ifMatch '{v}' is not a version ETag such as W/\"1\""),
                at("request.ifMatch"),
            )
        })?),
    };
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let unsupported = || {
        FhirError::invalid_at(
            "not-supported",
            format!("{method} {url} is not an interaction this server supports in a Bundle"),
            at("request.url"),
        )
    };
    let (rtype, action) = match (method.as_str(), seg.as_slice()) {
        ("GET" | "HEAD", _) => (seg.first().map_or("", |s| s).to_owned(), Action::Read),
        ("POST", [rtype, "_search"]) => (rtype.to_string(), Action::Read),
        ("POST", [rtype]) => {
            let condition = text(request, "ifNoneExist").map(|v| create::if_none_exist(rtype, &v));
            (rtype.to_string(), Action::Create { condition })
        }
        ("PUT", [rtype]) if !params.is_empty() => {
            let body_id = match &resource {
                Some(r) => update::body_id(r)?,
                None => None,
            };
            (rtype.to_string(), Action::ConditionalUpdate { body_id })
        }
        ("PUT", [rtype, id]) => (rtype.to_string(), Action::Update { id: id.to_string() }),
        ("DELETE", [rtype]) if !params.is_empty() => (rtype.to_string(), Action::ConditionalDelete),
        ("DELETE", [rtype, id]) => (rtype.to_string(), Action::Delete { id: id.to_string() }),
        ("PATCH", [rtype]) if !params.is_empty() => {
            let patch = entry_patch(&resource, &at)?;
            (rtype.to_string(), Action::Patch { id: None, patch })
        }
        ("PATCH", [rtype, id]) => {
            let patch = entry_patch(&resource, &at)?;
            let id = Some(id.to_string());
            (rtype.to_string(), Action::Patch { id, patch })
        }
        ("POST" | "PUT" | "DELETE" | "PATCH", _) => return Err(unsupported()),
        _ => {
            return Err(FhirError::invalid_at(
                "code-invalid",
                format!(
                    "'{method}' is not a request method: GET, HEAD, POST, PUT, DELETE or PATCH"
                ),
                at("request.method"),
            ))
        }
    };
    if !matches!(action, Action::Read) {
        check_type(&rtype)?;
    }
    if let Action::Update { id } | Action::Delete { id } | Action::Patch { id: Some(id), .. } =
        &action
    {
        check_id(id)?;
    }
    if matches!(
        action,
        Action::Create { .. } | Action::Update { .. } | Action::ConditionalUpdate { .. }
    ) {
        let Some(resource) = &resource else {
            return Err(FhirError::invalid_at(
                "required",
                format!("{method} needs a resource in the entry"),
                at("resource"),
            ));
        };
        let found = resource.get("resourceType").and_then(Value::as_str);
        if found != Some(rtype.as_str()) {
            return Err(FhirError::invalid_at(
                "invalid",
                format!(
                    "The entry's resource is a {}, but its request url names {rtype}",
                    found.unwrap_or("resource without resourceType")
                ),
                at("resource.resourceType"),
            ));
        }
        if let Action::Update { id } = &action {
            update::check_body_id(resource, &rtype, id)?;
        }
    }
    Ok(Entry {
        index,
        full_url,
        method,
        rtype,
        segments,
        params,
        action,
        resource,
        if_match,
        if_none_match: text(request, "ifNoneMatch"),
        if_modified_since: text(request, "ifModifiedSince"),
        targets: Vec::new(),
    })
}

/// The patch a PATCH entry carries as its resource.
fn entry_patch(resource: &Option<Value>, at: &dyn Fn(&str) -> String) -> Result<Patch, FhirError> {
    let resource = resource.as_ref().ok_or_else(|| {
        FhirError::invalid_at(
            "required",
            "PATCH needs the patch in the entry's resource: a Binary (JSON Patch) or a \
             Parameters resource (FHIRPath Patch)",
            at("resource"),
        )
    })?;
    Patch::from_entry_resource(resource).map_err(|e| match e {
        FhirError::Invalid(issues) => FhirError::Invalid(
            issues
                .into_iter()
                .map(|mut i| {
                    let element = i.expression.take();
                    i.expression = Some(at(element.as_deref().unwrap_or("resource")));
                    i
                })
                .collect(),
        ),
        other => other,
    })
}

/// The decoded path segments and query parameters of an entry's `request.url`.
fn split_url(app: &App, url: &str) -> Result<(Vec<String>, Vec<(String, String)>), String> {
    let path_part = url.split('?').next().unwrap_or(url);
    let relative = if path_part.contains("://") {
        url.strip_prefix(&app.base_url)
            .filter(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            .ok_or_else(|| format!("'{url}' is not on this server's base {}", app.base_url))?
    } else {
        url
    };
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|d| d.into_owned())
                .map_err(|_| format!("'{url}' is not valid UTF-8 once decoded"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((segments, parse_query(query)))
}

/// Puts the entry into an error: same status, the messages say which entry failed.
pub fn at_entry(error: FhirError, entry_label: &str) -> FhirError {
    let prefix = |m: String| format!("{entry_label}: {m}");
    match error {
        FhirError::Invalid(issues) => FhirError::Invalid(prefix_issues(issues, entry_label)),
        FhirError::Unprocessable(issues) => {
            FhirError::Unprocessable(prefix_issues(issues, entry_label))
        }
        FhirError::UnknownType(t) => {
            FhirError::NotFound(prefix(format!("Unknown resource type '{t}'")))
        }
        FhirError::NotFound(m) => FhirError::NotFound(prefix(m)),
        FhirError::Gone(m) => FhirError::Gone(prefix(m)),
        FhirError::Conflict(m) => FhirError::Conflict(prefix(m)),
        FhirError::PreconditionFailed(m) => FhirError::PreconditionFailed(prefix(m)),
        FhirError::NotSupported(m) => FhirError::NotSupported(prefix(m)),
        FhirError::Unavailable(m) => FhirError::Unavailable(prefix(m)),
        FhirError::Internal(m) => FhirError::Internal(prefix(m)),
        // Refused by the access token: the Bundle is refused for the same reason (403).
        FhirError::Forbidden(m) => FhirError::Forbidden(prefix(m)),
        other => {
            let status = other.status();
            FhirError::Invalid(vec![Issue::error(
                "invalid",
                prefix(format!("{other} ({status})")),
            )])
        }
    }
}

fn prefix_issues(issues: Vec<Issue>, entry_label: &str) -> Vec<Issue> {
    issues
        .into_iter()
        .map(|mut issue| {
            issue.diagnostics = format!("{entry_label}: {}", issue.diagnostics);
            issue
        })
        .collect()
}

/// `201 Created`: the form of `Bundle.entry.response.status`.
pub fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

/// The response entry of a write, with the resource as `Prefer: return=` asks.
pub fn write_response(app: &App, outcome: &Outcome, prefer: Return) -> Value {
    let mut response = json!({"status": status_line(outcome.status)});
    let mut entry = Map::new();
    if let Some(version) = &outcome.version {
        response["location"] = json!(app.url(&format!(
            "{}/{}/_history/{}",
            version.rtype, version.id, version.version
        )));
        response["etag"] = json!(format!("W/\"{}\"", version.version));
        response["lastModified"] = json!(format_instant(version.last_updated));
        if !version.deleted() {
            entry.insert(
                "fullUrl".into(),
                json!(app.url(&format!("{}/{}", version.rtype, version.id))),
            );
            if prefer == Return::Representation {
                if let Some(resource) = meta::stamp(version) {
                    entry.insert("resource".into(), resource);
                }
            }
        }
    }
    if prefer == Return::OperationOutcome {
        response["outcome"] = information(outcome.message.clone());
    }
    entry.insert("response".into(), response);
    Value::Object(entry)
}

/// The response entry of a read (GET entry): whatever the ordinary interaction answered.
pub fn read_response(mut response: FhirResponse) -> Value {
    let mut entry = Map::new();
    let mut r = json!({"status": status_line(response.status)});
    if let Some((version, last_updated)) = response.version {
        r["etag"] = json!(format!("W/\"{version}\""));
        r["lastModified"] = json!(format_instant(last_updated));
    }
    if let Some(location) = response.location.take() {
        r["location"] = json!(location);
    }
    if let Some(body) = response.take_body() {
        entry.insert("resource".into(), body);
    }
    entry.insert("response".into(), r);
    Value::Object(entry)
}

/// The response entry of a failed entry (batch): its status and an OperationOutcome.
pub fn error_response(error: &FhirError) -> Value {
    json!({"response": {
        "status": status_line(error.status()),
        "outcome": error.into_outcome(),
    }})
}

/// A conditional reference (`Patient?identifier=sys|value`): no scheme, no `/` before the `?`.
pub fn is_conditional(reference: &str) -> bool {
    match reference.split_once('?') {
        Some((rtype, _)) => !rtype.is_empty() && !rtype.contains(['/', ':', '#']),
        None => false,
    }
}

/// Every distinct conditional reference in `value`.
pub fn conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match child {
                    Value::String(r) if key == "reference" && is_conditional(r) => {
                        if !out.contains(r) {
                            out.push(r.clone());
                        }
                    }
                    _ => conditional_references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| conditional_references(i, out)),
        _ => {}
    }
}

/// Resolves a conditional reference inside `tx` to `Type/id`: exactly one match, else 412.
pub async fn resolve_conditional(
    tx: &mut dyn Tx,
    app: &App,
    reference: &str,
) -> Result<String, FhirError> {
    let (rtype, query) = reference.split_once('?').unwrap_or((reference, ""));
    check_type(rtype)?;
    let query = conditional_criteria(app, rtype, &parse_query(query))?;
    let hits = tx.search(&query).await?;
    match hits.as_slice() {
        [hit] => Ok(format!("{rtype}/{}", hit.version.id)),
        [] => Err(FhirError::PreconditionFailed(format!(
            "The conditional reference '{reference}' matches no {rtype}; it must match exactly one"
        ))),
        _ => Err(FhirError::PreconditionFailed(format!(
            "The conditional reference '{reference}' matches more than one {rtype}; it must match exactly one"
        ))),
    }
}

/// How the references of one entry's resource are rewritten.
pub struct Rewrite<'a> {
    /// `fullUrl` → `Type/id` of the entries of the transaction.
    pub ids: &'a HashMap<String, String>,
    /// Conditional reference → `Type/id`.
    pub conditional: &'a HashMap<String, String>,
    /// Bases a relative reference resolves against: the entry's own `fullUrl` base (when
    /// absolute) and this server's base.
    pub bases: Vec<String>,
    /// Whether a `urn:uuid:`/`urn:oid:` reference that matches no `fullUrl` is an error (in a
    /// transaction; a batch has no references between entries).
    pub strict: bool,
}

impl Rewrite<'_> {
    /// The base of an absolute RESTful `fullUrl` (`http://x/fhir/Patient/1` → `http://x/fhir`).
    pub fn base_of(full_url: &str) -> Option<String> {
        if !(full_url.starts_with("http://") || full_url.starts_with("https://")) {
            return None;
        }
        let mut parts: Vec<&str> = full_url.rsplitn(3, '/').collect();
        if parts.len() < 3 {
            return None;
        }
        Some(parts.pop()?.to_owned())
    }

    fn reference(&self, reference: &str) -> Result<Option<String>, String> {
        if let Some(target) = self.ids.get(reference) {
            return Ok(Some(target.clone()));
        }
        if self.strict && (reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:"))
        {
            return Err(format!(
                "The reference '{reference}' matches no fullUrl in the Bundle"
            ));
        }
        if is_conditional(reference) {
            return Ok(self.conditional.get(reference).cloned());
        }
        if !reference.contains(':') && !reference.starts_with('#') {
            for base in &self.bases {
                if let Some(target) = self.ids.get(&format!("{base}/{reference}")) {
                    return Ok(Some(target.clone()));
                }
            }
        }
        Ok(None)
    }

    /// Rewrites every `reference` anywhere in `value` (extensions, contained resources, nested
    /// elements), every other string that is exactly a `urn:` fullUrl of the Bundle (uri
    /// elements such as `Attachment.url`), and `urn:` links in narrative. Errors name the element.
    pub fn apply(&self, value: &mut Value, path: &str) -> Result<(), FhirError> {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    let here = format!("{path}.{key}");
                    match child {
                        Value::String(s) if key == "reference" => match self.reference(s) {
                            Ok(Some(target)) => *s = target,
                            Ok(None) => {}
                            Err(m) => return Err(FhirError::invalid_at("not-found", m, here)),
                        },
                        Value::String(s) if key == "div" => {
                            if s.contains("urn:uuid:") || s.contains("urn:oid:") {
                                *s = self.narrative(s);
                            }
                        }
                        Value::String(s) => {
                            if s.starts_with("urn:") {
                                if let Some(target) = self.ids.get(s.as_str()) {
                                    *s = target.clone();
                                }
                            }
                        }
                        _ => self.apply(child, &here)?,
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.apply(item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `urn:uuid:`/`urn:oid:` links in XHTML (`href="urn:uuid:…"`), in one pass.
    fn narrative(&self, div: &str) -> String {
        let mut out = String::with_capacity(div.len());
        let mut rest = div;
        while let Some(start) = rest.find("urn:") {
            out.push_str(&rest[..start]);
            let token_len = rest[start..]
                .find(|c: char| c == '"' || c == '\'' || c == '<' || c.is_whitespace())
                .unwrap_or(rest.len() - start);
            let token = &rest[start..start + token_len];
            match self.ids.get(token) {
                Some(target) => out.push_str(target),
                None => out.push_str(token),
            }
            rest = &rest[start + token_len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_references_have_a_type_and_a_query() {
        assert!(is_conditional("Patient?identifier=a|b"));
        assert!(!is_conditional("Patient/1"));
        assert!(!is_conditional("http://x/fhir/Patient?x=1"));
        assert!(!is_conditional("?x=1"));
    }

    #[test]
    fn bases_of_full_urls() {
        assert_eq!(
            Rewrite::base_of("http://x/fhir/Patient/1").as_deref(),
            Some("http://x/fhir")
        );
        assert_eq!(Rewrite::base_of("urn:uuid:1"), None);
    }

    #[test]
    fn narrative_links_are_rewritten() {
        let ids: HashMap<String, String> =
            [("urn:uuid:a".to_owned(), "Patient/1".to_owned())].into();
        let none = HashMap::new();
        let rewrite = Rewrite {
            ids: &ids,
            conditional: &none,
            bases: vec![],
            strict: true,
        };
        assert_eq!(
            rewrite.narrative(r#"<div><a href="urn:uuid:a">x</a> urn:uuid:b</div>"#),
            r#"<div><a href="Patient/1">x</a> urn:uuid:b</div>"#
        );
    }
}
