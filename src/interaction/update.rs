//! update: `PUT [base]/[type]/[id]` (also update-as-create with a client-chosen id), and
//! conditional update `PUT [base]/[type]?[criteria]`.

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::{id::new_id, validate::validate};
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::{check_id, check_type, if_match, retry, version};
use crate::search::params::{criteria, criteria_key};
use crate::store::{Method, Tx, Version};

pub async fn update(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let resource = request.json_body()?;
    validate(&resource, rtype)?;
    // The body SHALL carry the same id as the URL (http page, update).
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(FhirError::invalid_at(
                "invalid",
                format!("The resource id '{body_id}' does not match the URL id '{id}'"),
                format!("{rtype}.id"),
            ))
        }
        None => {
            return Err(FhirError::invalid_at(
                "required",
                "An update needs the resource id in the body, matching the URL",
                format!("{rtype}.id"),
            ))
        }
    }
    let expected = if_match(request)?;
    let (written, created) = retry(|| async {
        let mut tx = app.store.begin().await?;
        let result = put(&mut *tx, rtype, id, expected, &resource).await?;
        tx.commit().await?;
        Ok(result)
    })
    .await?;
    respond(app, &written, created)
}

/// Writes `resource` as the next version of `rtype/id`, checking `If-Match`. Returns the
/// version and whether the resource was created (new, or re-created after deletion).
async fn put(
    tx: &mut dyn Tx,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
    resource: &Value,
) -> Result<(Version, bool), FhirError> {
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
    let written =
        version::write(tx, rtype, id, current, Method::Put, Some(resource.clone())).await?;
    Ok((written, created))
}

fn respond(app: &App, written: &Version, created: bool) -> Result<FhirResponse, FhirError> {
    let (rtype, id, v) = (&written.rtype, &written.id, written.version);
    if created {
        Ok(version::respond(written, StatusCode::CREATED)?
            .with_location(version::location(app, written))
            .written(format!("Created {rtype}/{id} (version {v})")))
    } else {
        Ok(version::respond(written, StatusCode::OK)?
            .written(format!("Updated {rtype}/{id} to version {v}")))
    }
}

/// Conditional update: no match creates (with the body's id if it has one), one match is
/// updated, more than one is 412 (http page, conditional update).
pub async fn conditional_update(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    let query = criteria(rtype, &request.params, &app.base_url)?;
    let resource = request.json_body()?;
    validate(&resource, rtype)?;
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(body_id) = &body_id {
        check_id(body_id)?;
    }
    let expected = if_match(request)?;
    let new_id = new_id();
    let (written, created) = retry(|| async {
        let mut tx = app.store.begin().await?;
        tx.lock_key(&criteria_key(rtype, &request.params)).await?;
        let hits = tx.search(&query).await?;
        let id = match hits.as_slice() {
            [] => body_id.clone().unwrap_or_else(|| new_id.clone()),
            [hit] => match &body_id {
                Some(body_id) if body_id != &hit.version.id => {
                    return Err(FhirError::invalid(format!(
                        "The criteria match {rtype}/{}, but the body has id '{body_id}'",
                        hit.version.id
                    )))
                }
                _ => hit.version.id.clone(),
            },
            _ => {
                return Err(FhirError::PreconditionFailed(format!(
                    "The criteria match more than one {rtype}: they are not selective enough"
                )))
            }
        };
        let mut resource = resource.clone();
        resource["id"] = Value::String(id.clone());
        let result = put(&mut *tx, rtype, &id, expected, &resource).await?;
        tx.commit().await?;
        Ok(result)
    })
    .await?;
    respond(app, &written, created)
}
