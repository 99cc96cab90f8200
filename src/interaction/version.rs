//! A written version as the interactions answer it: the response of a single request, the
//! `Location`, and the [`Outcome`] a Bundle entry reports. The writing itself is the write
//! pipeline's (`crate::write`).

use axum::http::StatusCode;

use crate::app::App;
use crate::http::response::FhirResponse;

use crate::error::FhirError;
use crate::fhir::meta;
use crate::store::Version;

/// A stored version as a response: the resource with its `meta`, `ETag` and `Last-Modified`.
/// The stored text is answered without being parsed where it can be (`meta::stamp_text`).
pub fn respond(version: &Version, status: StatusCode) -> Result<FhirResponse, FhirError> {
    match meta::stamp_text(version) {
        Some(text) => Ok(FhirResponse::with_text(status, text)
            .with_version(version.version, version.last_updated)),
        None => respond_subset(version, status, &crate::fhir::subset::Subset::Full),
    }
}

/// A version's subset (`_summary` on read), with the version's ETag and Last-Modified.
pub fn respond_subset(
    version: &Version,
    status: StatusCode,
    subset: &crate::fhir::subset::Subset,
) -> Result<FhirResponse, FhirError> {
    let body = meta::stamp(version).ok_or_else(|| {
        FhirError::Internal(format!(
            "stored {}/{} is not valid JSON",
            version.rtype, version.id
        ))
    })?;
    Ok(FhirResponse::new(status, Some(subset.apply(body, false)))
        .with_version(version.version, version.last_updated))
}

/// The `Location` of a version: `[base]/[type]/[id]/_history/[vid]`.
pub fn location(app: &App, version: &Version) -> String {
    app.url(&format!(
        "{}/{}/_history/{}",
        version.rtype, version.id, version.version
    ))
}

/// What a write did inside a store transaction: what a single request answers, and what a
/// Bundle entry's `response` reports (status, location, ETag, the resource).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: StatusCode,
    pub rtype: String,
    /// The resource concerned; `None` when conditional criteria matched nothing to delete.
    pub id: Option<String>,
    /// The version written, or found by a conditional create (then `written` is false); a
    /// deletion version has no content; `None` when nothing was written or found.
    pub version: Option<Version>,
    pub written: bool,
    /// The `Location` a single request answers with (on 201).
    pub location: Option<String>,
    /// What happened, for `Prefer: return=OperationOutcome`.
    pub message: String,
}

impl Outcome {
    /// A version written or found, answered with its resource (if any) and `ETag`.
    pub fn of(version: Version, status: StatusCode, written: bool, message: String) -> Self {
        Outcome {
            status,
            rtype: version.rtype.clone(),
            id: Some(version.id.clone()),
            version: Some(version),
            written,
            location: None,
            message,
        }
    }

    /// Nothing written: e.g. a deletion of what did not exist.
    pub fn nothing(status: StatusCode, rtype: &str, id: Option<&str>, message: String) -> Self {
        Outcome {
            status,
            rtype: rtype.to_owned(),
            id: id.map(str::to_owned),
            version: None,
            written: false,
            location: None,
            message,
        }
    }

    pub fn with_location(mut self, app: &App) -> Self {
        self.location = self.version.as_ref().map(|v| location(app, v));
        self
    }

    /// The single-request answer: the resource (a deletion has none), `ETag`, `Last-Modified`,
    /// `Location`, and the message for `Prefer: return=OperationOutcome`.
    pub fn into_response(self) -> Result<FhirResponse, FhirError> {
        let mut response = match &self.version {
            Some(v) if !v.deleted() => respond(v, self.status)?,
            Some(v) => FhirResponse::new(self.status, None).with_version(v.version, v.last_updated),
            None => FhirResponse::new(self.status, None),
        };
        if let Some(location) = self.location {
            response = response.with_location(location);
        }
        Ok(response.written(self.message))
    }
}
