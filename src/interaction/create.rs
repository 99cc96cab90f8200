//! create: `POST [base]/[type]`, and conditional create with `If-None-Exist`.

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::id::new_id;
use crate::http::request::{parse_query, FhirRequest};
use crate::http::response::FhirResponse;
use crate::interaction::version::Outcome;
use crate::interaction::{check_type, conditional_criteria, target_profile};
use crate::search::conditional::criteria_key;
use crate::store::{Method, Tx, Version};
use crate::write::{self, in_transaction};

pub async fn create(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    let resource = request.json_body()?;
    target_profile::check_write(app, &resource, rtype).await?;
    // The server assigns the id; one in the body is ignored (http page, create).
    let id = new_id();
    let condition = request
        .header("if-none-exist")
        .map(|value| if_none_exist(rtype, value));
    let (id, resource, condition) = (&id, &resource, condition.as_deref());
    let outcome = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(create_in(tx, app, rtype, id, resource, condition))
    })
    .await?;
    outcome.into_response()
}

/// The criteria of an `If-None-Exist` value (`identifier=…`, also accepted as `Type?identifier=…`).
pub fn if_none_exist(rtype: &str, value: &str) -> Vec<(String, String)> {
    parse_query(
        value
            .trim_start_matches(&format!("{rtype}?"))
            .trim_start_matches('?'),
    )
}

/// Creates `resource` (validated already) as `rtype/id` inside `tx`; with `condition`
/// (If-None-Exist), a single match is answered instead (200, nothing written).
pub async fn create_in(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    id: &str,
    resource: &Value,
    condition: Option<&[(String, String)]>,
) -> Result<Outcome, FhirError> {
    if let Some(params) = condition {
        if let Some(existing) = find_existing(tx, app, rtype, params).await? {
            return Ok(existing_outcome(existing));
        }
    }
    new_in(tx, app, rtype, id, resource.clone()).await
}

/// Writes version 1 of `rtype/id` (taking the resource: a transaction's entry is a copy
/// already): 201 with its `Location`.
pub async fn new_in(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    id: &str,
    resource: Value,
) -> Result<Outcome, FhirError> {
    let written = write::write(
        tx,
        &app.indexing,
        rtype,
        id,
        None,
        Method::Post,
        Some(resource),
    )
    .await?;
    Ok(Outcome::of(
        written,
        StatusCode::CREATED,
        true,
        format!("Created {rtype}/{id} (version 1)"),
    )
    .with_location(app))
}

/// The resource that matches conditional-create criteria, if exactly one does; 412 when more do.
/// Takes the criteria's lock, so racing conditional creates make exactly one resource.
pub async fn find_existing(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    params: &[(String, String)],
) -> Result<Option<Version>, FhirError> {
    let query = conditional_criteria(app, rtype, params)?;
    tx.lock_key(&criteria_key(rtype, params)).await?;
    let hits = tx.search(&query).await?;
    match hits.len() {
        0 => Ok(None),
        1 => Ok(hits.into_iter().next().map(|h| h.version)),
        _ => Err(FhirError::PreconditionFailed(format!(
            "If-None-Exist matched more than one {rtype}: the criteria are not selective enough"
        ))),
    }
}

/// Conditional create found the resource: nothing is written (http page: 200 OK).
pub fn existing_outcome(existing: Version) -> Outcome {
    let message = format!(
        "{}/{} already matches If-None-Exist; nothing created",
        existing.rtype, existing.id
    );
    Outcome::of(existing, StatusCode::OK, false, message)
}
