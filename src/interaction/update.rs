//! update: `PUT [base]/[type]/[id]` (also update-as-create with a client-chosen id), and
//! conditional update `PUT [base]/[type]?[criteria]`.

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::id::new_id;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::version::Outcome;
use crate::interaction::{check_id, check_type, conditional_criteria, if_match, target_profile};
use crate::search::conditional::criteria_key;
use crate::store::{Method, Tx};
use crate::write::{self, in_transaction};

pub async fn update(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let resource = request.json_body()?;
    target_profile::check_write(app, &resource, rtype).await?;
    check_body_id(&resource, rtype, id)?;
    let expected = if_match(request)?;
    let resource = &resource;
    let outcome = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(update_in(tx, app, rtype, id, resource, expected))
    })
    .await?;
    outcome.into_response()
}

/// The body SHALL carry the same id as the URL (http page, update).
pub fn check_body_id(resource: &Value, rtype: &str, id: &str) -> Result<(), FhirError> {
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => Ok(()),
        Some(body_id) => Err(FhirError::invalid_at(
            "invalid",
            format!("The resource id '{body_id}' does not match the URL id '{id}'"),
            format!("{rtype}.id"),
        )),
        None => Err(FhirError::invalid_at(
            "required",
            "An update needs the resource id in the body, matching the URL",
            format!("{rtype}.id"),
        )),
    }
}

/// Writes `resource` (validated, with the right id) as the next version of `rtype/id` inside
/// `tx`, checking `If-Match` (`expected`): 200, or 201 when it creates (new, or re-created
/// after deletion).
pub async fn update_in(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    id: &str,
    resource: &Value,
    expected: Option<i64>,
) -> Result<Outcome, FhirError> {
    tx.may_write(rtype, Method::Put).await?;
    // Made ready before the current version is read, so outside the database writer's turn.
    let prepared = write::prepare(
        &app.indexing,
        rtype,
        id,
        Some(resource.clone()),
        tx.source(),
    )?;
    let current = tx.lock_current(rtype, id).await?;
    if let Some(expected) = expected {
        match current {
            Some(c) if c.version == expected && !c.deleted => {}
            Some(c) => {
                return Err(FhirError::PreconditionFailed(format!(
                    "If-Match expects version {expected} of {rtype}/{id}, but the current version is {}{}",
                    c.version,
                    if c.deleted { " (deleted)" } else { "" }
                )))
            }
            None => return Err(FhirError::PreconditionFailed(format!("If-Match given, but {rtype}/{id} does not exist"))),
        }
    }
    let created = current.is_none_or(|c| c.deleted);
    let written = write::write_prepared(tx, prepared, current, Method::Put).await?;
    let v = written.version;
    Ok(if created {
        Outcome::of(
            written,
            StatusCode::CREATED,
            true,
            format!("Created {rtype}/{id} (version {v})"),
        )
        .with_location(app)
    } else {
        Outcome::of(
            written,
            StatusCode::OK,
            true,
            format!("Updated {rtype}/{id} to version {v}"),
        )
    })
}

/// Conditional update: no match creates (with the body's id if it has one), one match is
/// updated, more than one is 412 (http page, conditional update).
pub async fn conditional_update(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    // Refuse bad criteria before reading the body.
    conditional_criteria(app, rtype, &request.params)?;
    let resource = request.json_body()?;
    target_profile::check_write(app, &resource, rtype).await?;
    let body_id = body_id(&resource)?;
    let expected = if_match(request)?;
    let new_id = new_id();
    let (resource, body_id, new_id) = (&resource, body_id.as_deref(), &new_id);
    let outcome = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(async move {
            let id = conditional_target(tx, app, rtype, &request.params, body_id, new_id).await?;
            let mut resource = resource.clone();
            resource["id"] = Value::String(id.clone());
            update_in(tx, app, rtype, &id, &resource, expected).await
        })
    })
    .await?;
    outcome.into_response()
}

/// The id a conditional update may carry in its body (checked).
pub fn body_id(resource: &Value) -> Result<Option<String>, FhirError> {
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(body_id) = &body_id {
        check_id(body_id)?;
    }
    Ok(body_id)
}

/// The id a conditional update writes, decided under the criteria's lock inside `tx`: the
/// single match, or for no match the body's id or else `new_id`; 412 for several matches.
pub async fn conditional_target(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    params: &[(String, String)],
    body_id: Option<&str>,
    new_id: &str,
) -> Result<String, FhirError> {
    let query = conditional_criteria(app, rtype, params)?;
    tx.may_write(rtype, Method::Put).await?;
    tx.lock_key(&criteria_key(rtype, params)).await?;
    let hits = tx.search(&query).await?;
    match hits.as_slice() {
        [] => Ok(body_id.unwrap_or(new_id).to_owned()),
        [hit] => match body_id {
            Some(body_id) if body_id != hit.version.id => Err(FhirError::invalid(format!(
                "The criteria match {rtype}/{}, but the body has id '{body_id}'",
                hit.version.id
            ))),
            _ => Ok(hit.version.id.clone()),
        },
        _ => Err(FhirError::PreconditionFailed(format!(
            "The criteria match more than one {rtype}: they are not selective enough"
        ))),
    }
}
