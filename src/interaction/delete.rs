//! delete: `DELETE [base]/[type]/[id]`, and conditional delete `DELETE [base]/[type]?[criteria]`.
//!
//! Deletion is logical: a deletion version is written and reads answer 410 Gone; history keeps
//! every version, and a later update re-creates the resource with the next version number.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::version::Outcome;
use crate::interaction::{check_id, check_type, conditional_criteria, if_match};
use crate::search::conditional::criteria_key;
use crate::store::{Method, Tx};
use crate::write::{self, in_transaction};

pub async fn delete(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let expected = if_match(request)?;
    let outcome = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(delete_in(tx, app, rtype, id, expected))
    })
    .await?;
    outcome.into_response()
}

/// Writes a deletion version of `rtype/id` inside `tx` if it exists and is not deleted yet,
/// checking `If-Match` (`expected`). 204 either way (http page: deleting what does not exist,
/// or is deleted already, changes nothing).
pub async fn delete_in(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
) -> Result<Outcome, FhirError> {
    tx.may_write(rtype, Method::Delete).await?;
    let current = tx.lock_current(rtype, id).await?;
    if let Some(expected) = expected {
        if current.is_none_or(|c| c.version != expected || c.deleted) {
            return Err(FhirError::PreconditionFailed(format!(
                "If-Match expects version {expected} of {rtype}/{id}, which is not the current version"
            )));
        }
    }
    match current {
        Some(c) if !c.deleted => {
            let written =
                write::write(tx, &app.indexing, rtype, id, current, Method::Delete, None).await?;
            let message = format!("Deleted {rtype}/{id} (version {})", written.version);
            Ok(Outcome::of(written, StatusCode::NO_CONTENT, true, message))
        }
        _ => Ok(Outcome::nothing(
            StatusCode::NO_CONTENT,
            rtype,
            Some(id),
            format!("{rtype}/{id} did not exist or was deleted already; nothing changed"),
        )),
    }
}

/// Conditional delete: no match changes nothing, one match is deleted, more than one is 412
/// (the server supports deleting single matches only).
pub async fn conditional_delete(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    // Refuse bad criteria before touching the store.
    conditional_criteria(app, rtype, &request.params)?;
    let expected = if_match(request)?;
    let outcome = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(conditional_delete_in(
            tx,
            app,
            rtype,
            &request.params,
            expected,
        ))
    })
    .await?;
    outcome.into_response()
}

/// The conditional delete inside `tx`, under the criteria's lock.
pub async fn conditional_delete_in(
    tx: &mut dyn Tx,
    app: &App,
    rtype: &str,
    params: &[(String, String)],
    expected: Option<i64>,
) -> Result<Outcome, FhirError> {
    let query = conditional_criteria(app, rtype, params)?;
    tx.may_write(rtype, Method::Delete).await?;
    tx.lock_key(&criteria_key(rtype, params)).await?;
    let hits = tx.search(&query).await?;
    match hits.as_slice() {
        [] => Ok(Outcome::nothing(
            StatusCode::NO_CONTENT,
            rtype,
            None,
            format!("No {rtype} matched the criteria; nothing deleted"),
        )),
        [hit] => {
            let id = hit.version.id.clone();
            delete_in(tx, app, rtype, &id, expected).await
        }
        _ => Err(FhirError::PreconditionFailed(format!(
            "The criteria match more than one {rtype}: this server deletes one resource at a time"
        ))),
    }
}
