//! The RESTful interactions of the FHIR http page, one file each, plus what they share.

pub mod async_job;
pub mod audit_event;
pub mod batch;
pub mod bulk_status;
pub mod bundle;
pub mod bundle_entry;
pub mod canonical;
pub mod capabilities;
pub mod create;
pub mod delete;
pub mod evaluate_measure;
pub mod everything;
pub mod export;
pub mod history;
pub mod import;
pub mod include;
pub mod lastn;
pub mod paging;
pub mod patch;
pub mod read;
pub mod reindex;
pub mod scoring_coverage;
pub mod search;
pub mod search_parameters;
pub mod stored_definitions;
pub mod target_profile;
pub mod transaction;
pub mod update;
pub mod validate;
pub mod version;
pub mod vread;
pub mod worklist;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::{id, resource_types};
use crate::http::request::FhirRequest;
use crate::search::query::SearchQuery;

/// 404 for a type the server does not know (http page: unknown resource type).
pub fn check_type(rtype: &str) -> Result<(), FhirError> {
    if resource_types::is_resource_type(rtype) {
        Ok(())
    } else {
        Err(FhirError::UnknownType(rtype.to_owned()))
    }
}

/// 400 for an id that is not a FHIR id.
pub fn check_id(rid: &str) -> Result<(), FhirError> {
    if id::is_valid(rid) {
        Ok(())
    } else {
        Err(FhirError::invalid(format!(
            "'{rid}' is not a valid id: ids are 1 to 64 of A-Z a-z 0-9 - ."
        )))
    }
}

/// The search criteria `params` of a conditional interaction on `rtype`
/// ([`crate::search::conditional::criteria`]), parsed with the request's search parameters,
/// search budget and base.
pub fn conditional_criteria(
    app: &App,
    rtype: &str,
    params: &[(String, String)],
) -> Result<SearchQuery, FhirError> {
    crate::search::conditional::criteria(
        app.registry(),
        &app.search_budget,
        rtype,
        params,
        &app.base_url,
    )
}

/// The version in an entity tag: `W/"3"` or `"3"`.
pub fn parse_etag(value: &str) -> Option<i64> {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    id::parse_version(value.strip_prefix('"')?.strip_suffix('"')?)
}

/// The version `If-Match` requires, if the header is present; 400 if it names no version.
pub fn if_match(request: &FhirRequest) -> Result<Option<i64>, FhirError> {
    match request.header("if-match") {
        None => Ok(None),
        Some(value) => parse_etag(value).map(Some).ok_or_else(|| {
            FhirError::invalid(format!(
                "If-Match '{value}' is not a version ETag such as W/\"1\""
            ))
        }),
    }
}
