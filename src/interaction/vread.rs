//! vread: `GET [base]/[type]/[id]/_history/[vid]`.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::id::parse_version;
use crate::http::response::FhirResponse;
use crate::interaction::{check_id, check_type, version};

pub async fn vread(app: &App, rtype: &str, id: &str, vid: &str) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let Some(number) = parse_version(vid) else {
        return Err(FhirError::NotFound(format!(
            "{rtype}/{id} has no version '{vid}'"
        )));
    };
    match app.store.vread(rtype, id, number).await? {
        None => Err(FhirError::NotFound(format!(
            "{rtype}/{id} has no version {vid}"
        ))),
        Some(v) if v.deleted() => Err(FhirError::Gone(format!(
            "Version {vid} of {rtype}/{id} is its deletion"
        ))),
        Some(v) => version::respond(&v, StatusCode::OK),
    }
}
