//! read: `GET [base]/[type]/[id]`, with conditional read (`If-None-Match`, `If-Modified-Since`)
//! and `_summary`.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::datetime::{format_instant, parse_http_date};
use crate::fhir::subset::Subset;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::{check_id, check_type, parse_etag, version};

pub async fn read(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    check_id(id)?;
    let Some(current) = app.store.read(rtype, id).await? else {
        return Err(FhirError::NotFound(format!("{rtype}/{id} is not known")));
    };
    if current.deleted() {
        return Err(FhirError::Gone(format!(
            "{rtype}/{id} was deleted at {} (version {})",
            format_instant(current.last_updated),
            current.version
        )));
    }
    let not_modified = request.header("if-none-match").and_then(parse_etag)
        == Some(current.version)
        || request
            .header("if-modified-since")
            .and_then(parse_http_date)
            // HTTP dates have whole seconds.
            .is_some_and(|since| current.last_updated / 1000 <= since / 1000);
    if not_modified {
        return Ok(FhirResponse::new(StatusCode::NOT_MODIFIED, None)
            .with_version(current.version, current.last_updated));
    }
    match request.params.iter().find(|(k, _)| k == "_summary") {
        Some((_, value)) => match Subset::summary(value)? {
            Subset::Count => Err(FhirError::invalid(
                "_summary=count applies to searches, not to a read",
            )),
            subset => version::respond_subset(&current, StatusCode::OK, &subset),
        },
        None => version::respond(&current, StatusCode::OK),
    }
}
