//! patch: `PATCH [base]/[type]/[id]` and conditional patch `PATCH [base]/[type]?[criteria]`
//! (http page, "patch").
//!
//! The body is a JSON Patch (`application/json-patch+json`, RFC 6902), an XML Patch
//! (`application/xml-patch+xml`, RFC 5261: applied to the resource written as FHIR XML and read
//! back, `fhir::xml::patch`) or a FHIRPath Patch (a `Parameters` resource in FHIR JSON or FHIR
//! XML). The patch is
//! applied to the current version under the writer's lock, the result is validated like any
//! update, and written as the next version. In a batch or transaction the patch is the entry's
//! resource: a `Binary` holding a JSON Patch, or a FHIRPath Patch `Parameters` (XML Patch is
//! taken by `PATCH` requests only: references in a diff are not rewritten in a transaction).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use base64::Engine;
use serde_json::Value;

use crate::app::App;
use crate::error::{FhirError, Issue};
use crate::fhir::fhirpath_patch::{self, FhirPatchError};
use crate::fhir::json_format;
use crate::fhir::json_patch::{self, JsonPatchError};
use crate::fhir::xml::patch::{Diff, XmlPatchError};
use crate::http::negotiate::media_type;
use crate::http::negotiate::{body_format, BodyFormat};
use crate::http::request::{parse_json, parse_resource, parse_xml_resource, FhirRequest};
use crate::http::response::FhirResponse;
use crate::interaction::version::Outcome;
use crate::interaction::{check_id, check_type, conditional_criteria, if_match, target_profile};
use crate::search::conditional::criteria_key;
use crate::store::{Method, Tx, Version};
use crate::write::{self, in_transaction};

/// A parsed patch body.
#[derive(Debug, Clone)]
pub enum Patch {
    Json(Value),
    FhirPath(Value),
    /// An XML Patch: the parsed diff, and its text as a JSON string (the patch document, which
    /// holds no JSON reference to rewrite).
    Xml(Arc<Diff>, Value),
}

impl Patch {
    /// Reads the body by its media type: JSON Patch, FHIRPath Patch, or 415.
    pub fn from_request(request: &FhirRequest) -> Result<Patch, FhirError> {
        let media = request
            .header(header::CONTENT_TYPE.as_str())
            .map(media_type);
        match media.as_deref() {
            Some("application/json-patch+json") => Ok(Patch::Json(parse_json(&request.body)?)),
            Some("application/xml-patch+xml") => {
                if request.body.iter().all(u8::is_ascii_whitespace) {
                    return Err(FhirError::invalid(
                        "The request body is empty; an XML Patch document was expected",
                    ));
                }
                let diff = Diff::parse(&request.body).map_err(patch_error)?;
                let text = String::from_utf8_lossy(&request.body).into_owned();
                Ok(Patch::Xml(Arc::new(diff), Value::String(text)))
            }
            Some(
                "application/fhir+json"
                | "application/json"
                | "application/json+fhir"
                | "application/fhir+xml"
                | "application/xml"
                | "application/xml+fhir"
                | "text/xml",
            ) => {
                let body = match body_format(&request.headers)? {
                    BodyFormat::Json => parse_resource(&request.body)?,
                    BodyFormat::Xml => parse_xml_resource(&request.body)?,
                };
                if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                    return Err(FhirError::invalid(
                        "A FHIRPath Patch body is a Parameters resource; for JSON Patch send \
                         Content-Type application/json-patch+json",
                    ));
                }
                Ok(Patch::FhirPath(body))
            }
            Some(other) => Err(FhirError::UnsupportedMediaType(format!(
                "Content-Type '{other}' is not supported for patch: send \
                 application/json-patch+json (JSON Patch), application/xml-patch+xml (XML \
                 Patch) or application/fhir+json or application/fhir+xml (FHIRPath Patch)"
            ))),
            None => Err(FhirError::UnsupportedMediaType(
                "A patch needs a Content-Type: application/json-patch+json (JSON Patch), \
                 application/xml-patch+xml (XML Patch) or application/fhir+json (FHIRPath Patch)"
                    .into(),
            )),
        }
    }

    /// Reads a Bundle entry's resource: a `Parameters` (FHIRPath Patch) or a `Binary` whose
    /// `contentType` is `application/json-patch+json` and whose `data` is the JSON Patch.
    pub fn from_entry_resource(resource: &Value) -> Result<Patch, FhirError> {
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("Parameters") => Ok(Patch::FhirPath(resource.clone())),
            Some("Binary") => {
                let content_type = resource.get("contentType").and_then(Value::as_str);
                let media = content_type.map(media_type);
                if media.as_deref() != Some("application/json-patch+json") {
                    return Err(FhirError::invalid_at(
                        "invalid",
                        format!(
                            "A PATCH entry's Binary must have contentType \
                             application/json-patch+json, not {}",
                            content_type.map_or("none".to_owned(), |c| format!("'{c}'"))
                        ),
                        "resource.contentType",
                    ));
                }
                let data = resource.get("data").and_then(Value::as_str).unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| {
                        FhirError::invalid_at(
                            "invalid",
                            format!("The Binary's data is not base64: {e}"),
                            "resource.data",
                        )
                    })?;
                Ok(Patch::Json(parse_json(&bytes)?))
            }
            other => Err(FhirError::invalid_at(
                "invalid",
                format!(
                    "A PATCH entry carries its patch as a Binary (JSON Patch) or a Parameters \
                     resource (FHIRPath Patch), not {}",
                    other.map_or("a resource without resourceType".to_owned(), |t| format!(
                        "a {t}"
                    ))
                ),
                "resource",
            )),
        }
    }

    /// The patch document itself: a transaction resolves and rewrites the references in it.
    pub fn document(&self) -> &Value {
        match self {
            Patch::Json(v) | Patch::FhirPath(v) | Patch::Xml(_, v) => v,
        }
    }

    pub fn document_mut(&mut self) -> &mut Value {
        match self {
            Patch::Json(v) | Patch::FhirPath(v) | Patch::Xml(_, v) => v,
        }
    }

    /// Applies the patch to `resource` (unchanged on error).
    pub fn apply(&self, resource: &mut Value) -> Result<(), FhirError> {
        match self {
            Patch::Json(patch) => json_patch::apply(resource, patch).map_err(|e| match e {
                JsonPatchError::Malformed(m) => {
                    FhirError::Invalid(vec![Issue::error("invalid", m)])
                }
                JsonPatchError::Unapplicable(m) => {
                    FhirError::Unprocessable(vec![Issue::error("processing", m)])
                }
                JsonPatchError::TestFailed(m) => {
                    FhirError::Unprocessable(vec![Issue::error("conflict", m)])
                }
            }),
            Patch::FhirPath(params) => {
                fhirpath_patch::apply(resource, params).map_err(|e| match e {
                    FhirPatchError::Malformed(m) => {
                        FhirError::Invalid(vec![Issue::error("invalid", m)])
                    }
                    FhirPatchError::Unapplicable(m) => {
                        FhirError::Unprocessable(vec![Issue::error("processing", m)])
                    }
                })
            }
            Patch::Xml(diff, _) => {
                *resource = diff.apply_to_resource(resource).map_err(patch_error)?;
                Ok(())
            }
        }
    }
}

/// An XML Patch failure as an OperationOutcome: a diff that is none is a 400, one that does not
/// apply to this resource (or makes it no valid resource) a 422.
fn patch_error(error: XmlPatchError) -> FhirError {
    match error {
        XmlPatchError::Malformed(m) => FhirError::Invalid(vec![Issue::error("invalid", m)]),
        XmlPatchError::Unapplicable(m) => {
            FhirError::Unprocessable(vec![Issue::error("processing", m)])
        }
        XmlPatchError::Unwritable(m) => FhirError::Internal(m),
    }
}

pub async fn patch(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let patch = Patch::from_request(request)?;
    let expected = if_match(request)?;
    let patch = &patch;
    let written = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(patch_in(tx, app, rtype, id, expected, patch))
    })
    .await?;
    respond(&written)
}

/// Conditional patch: exactly one match is patched; none is 404, more than one 412.
pub async fn conditional_patch(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    conditional_criteria(app, rtype, &request.params)?;
    let patch = Patch::from_request(request)?;
    let expected = if_match(request)?;
    let patch = &patch;
    let written = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(async move {
            let id = conditional_target(tx, app, rtype, &request.params).await?;
            patch_in(tx, app, rtype, &id, expected, patch).await
        })
    })
    .await?;
    respond(&written)
}

/// The one resource conditional patch criteria select, under the criteria's lock: none is 404,
/// more than one 412.
pub async fn conditional_target(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    params: &[(String, String)],
) -> Result<String, FhirError> {
    let query = conditional_criteria(app, rtype, params)?;
    tx.may_write(rtype, Method::Patch).await?;
    tx.lock_key(&criteria_key(rtype, params)).await?;
    let hits = tx.search(&query).await?;
    match hits.as_slice() {
        [] => Err(FhirError::NotFound(format!(
            "No {rtype} matches the criteria of the conditional patch"
        ))),
        [hit] => Ok(hit.version.id.clone()),
        _ => Err(FhirError::PreconditionFailed(format!(
            "The criteria match more than one {rtype}: they are not selective enough"
        ))),
    }
}

/// Inside a transaction: locks `rtype/id`, checks it exists and `If-Match`, applies the patch
/// to the current version, validates the result and writes it as the next version.
pub async fn patch_in(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
    patch: &Patch,
) -> Result<Version, FhirError> {
    tx.may_write(rtype, Method::Patch).await?;
    let Some(current) = tx.lock_current(rtype, id).await? else {
        return Err(FhirError::NotFound(format!("{rtype}/{id} is not known")));
    };
    if let Some(expected) = expected {
        if current.version != expected || current.deleted {
            return Err(FhirError::PreconditionFailed(format!(
                "If-Match expects version {expected} of {rtype}/{id}, but the current version is {}{}",
                current.version,
                if current.deleted { " (deleted)" } else { "" }
            )));
        }
    }
    if current.deleted {
        return Err(FhirError::Gone(format!(
            "{rtype}/{id} is deleted (version {}); a deleted resource cannot be patched",
            current.version
        )));
    }
    // The current content, read inside the transaction (under the lock).
    let by_id = conditional_criteria(app, rtype, &[("_id".to_owned(), id.to_owned())])?;
    let hits = tx.search(&by_id).await?;
    let mut resource = match hits.as_slice() {
        [hit] if hit.version.version == current.version => crate::fhir::meta::stamp(&hit.version),
        _ => None,
    }
    .ok_or_else(|| FhirError::Conflict(format!("{rtype}/{id} changed while it was patched")))?;
    patch.apply(&mut resource)?;
    // The patched resource must still be this resource.
    if resource.get("resourceType").and_then(Value::as_str) != Some(rtype) {
        return Err(FhirError::Unprocessable(vec![Issue::error(
            "processing",
            format!("The patch changes the resourceType; the result must stay a {rtype}"),
        )
        .at(format!("{rtype}.resourceType"))]));
    }
    match resource.get("id").and_then(Value::as_str) {
        Some(patched) if patched == id => {}
        other => {
            return Err(FhirError::Unprocessable(vec![Issue::error(
                "processing",
                format!(
                    "The patch changes the id to {}; it must stay '{id}'",
                    other.map_or("nothing".to_owned(), |o| format!("'{o}'"))
                ),
            )
            .at(format!("{rtype}.id"))]));
        }
    }
    // A JSON Patch can add what FHIR JSON does not allow (a null, an empty object).
    json_format::check(&resource)?;
    target_profile::check_write(app, &resource, rtype).await?;
    write::write(
        tx,
        &app.indexing,
        rtype,
        id,
        Some(current),
        Method::Patch,
        Some(resource),
    )
    .await
}

/// What a patch wrote, as a single request or a Bundle entry answers it.
pub fn outcome(written: Version) -> Outcome {
    let message = format!(
        "Patched {}/{} to version {}",
        written.rtype, written.id, written.version
    );
    Outcome::of(written, StatusCode::OK, true, message)
}

fn respond(written: &Version) -> Result<FhirResponse, FhirError> {
    outcome(written.clone()).into_response()
}
