//! delete: `DELETE [base]/[type]/[id]`, and conditional delete `DELETE [base]/[type]?[criteria]`.
//!
//! Deletion is logical: a deletion version is written and reads answer 410 Gone; history keeps
//! every version, and a later update re-creates the resource with the next version number.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::{check_id, check_type, if_match, retry, version};
use crate::search::params::{criteria, criteria_key};
use crate::store::{Method, Tx};

pub async fn delete(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let expected = if_match(request)?;
    let deleted = retry(|| async move {
        let mut tx = app.store.begin().await?;
        let deleted = remove(&mut *tx, rtype, id, expected).await?;
        tx.commit().await?;
        Ok(deleted)
    })
    .await?;
    Ok(respond(rtype, id, deleted))
}

/// Writes a deletion version if the resource exists and is not deleted yet; returns
/// `(version, lastUpdated)` of the deletion, or `None` when there was nothing to delete.
async fn remove(
    tx: &mut dyn Tx,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
) -> Result<Option<(i64, i64)>, FhirError> {
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
            let written = version::write(tx, rtype, id, current, Method::Delete, None).await?;
            Ok(Some((written.version, written.last_updated)))
        }
        // Deleting what does not exist, or is deleted already, changes nothing (http page:
        // 200 or 204 either way).
        _ => Ok(None),
    }
}

/// 204 No Content; with `Prefer: return=OperationOutcome`, 200 and an outcome saying what
/// happened.
fn respond(rtype: &str, id: &str, deleted: Option<(i64, i64)>) -> FhirResponse {
    let message = match deleted {
        Some((v, _)) => format!("Deleted {rtype}/{id} (version {v})"),
        None => format!("{rtype}/{id} did not exist or was deleted already; nothing changed"),
    };
    let mut response = FhirResponse::new(StatusCode::NO_CONTENT, None).written(message);
    if let Some((v, last_updated)) = deleted {
        response = response.with_version(v, last_updated);
    }
    response
}

/// Conditional delete: no match changes nothing, one match is deleted, more than one is 412
/// (the server supports deleting single matches only).
pub async fn conditional_delete(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    let query = &criteria(rtype, &request.params, &app.base_url)?;
    let key = &criteria_key(rtype, &request.params);
    let expected = if_match(request)?;
    let (id, deleted) = retry(|| async move {
        let mut tx = app.store.begin().await?;
        tx.lock_key(key).await?;
        let hits = tx.search(query).await?;
        let result = match hits.as_slice() {
            [] => (None, None),
            [hit] => {
                let id = hit.version.id.clone();
                let deleted = remove(&mut *tx, rtype, &id, expected).await?;
                (Some(id), deleted)
            }
            _ => {
                return Err(FhirError::PreconditionFailed(format!(
                    "The criteria match more than one {rtype}: this server deletes one resource at a time"
                )))
            }
        };
        tx.commit().await?;
        Ok(result)
    })
    .await?;
    Ok(match id {
        Some(id) => respond(rtype, &id, deleted),
        None => FhirResponse::new(StatusCode::NO_CONTENT, None)
            .written(format!("No {rtype} matched the criteria; nothing deleted")),
    })
}
