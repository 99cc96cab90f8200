//! Writing a new version of a resource inside a store transaction: the step every write
//! interaction ends with (create, update, delete, and their conditional forms).

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::http::response::FhirResponse;

use crate::error::FhirError;
use crate::fhir::datetime::now_ms;
use crate::fhir::meta;
use crate::interaction::search_parameters;
use crate::search::extract::stored_entries;
use crate::search::index::IndexEntries;
use crate::store::{Current, Method, NewVersion, Tx, Version};

/// Writes `resource` (already validated; `None` to delete) as the version after `current`.
/// Sets `id`, strips server-owned `meta`, indexes it, and returns the stored version.
/// The canonical resources shipped with the server are read-only (`fhir::canonical`).
pub async fn write(
    tx: &mut dyn Tx,
    rtype: &str,
    id: &str,
    current: Option<Current>,
    method: Method,
    resource: Option<Value>,
) -> Result<Version, FhirError> {
    crate::fhir::canonical::check_writable(rtype, id, resource.as_ref())?;
    write_unchecked(tx, rtype, id, current, method, resource).await
}

/// [`write`] without the read-only check: for seeding the shipped canonical resources.
pub(crate) async fn write_unchecked(
    tx: &mut dyn Tx,
    rtype: &str,
    id: &str,
    current: Option<Current>,
    method: Method,
    resource: Option<Value>,
) -> Result<Version, FhirError> {
    let shipped = crate::fhir::canonical::is_shipped(rtype, id);
    let version = current.map_or(1, |c| c.version + 1);
    // Never let lastUpdated go backwards within a resource, whatever the clock does.
    let last_updated = now_ms().max(current.map_or(i64::MIN, |c| c.last_updated));
    let (content, index, compartment) = match resource {
        Some(mut resource) => {
            if let Some(source) = tx.source() {
                meta::set_source(&mut resource, source);
            }
            meta::strip(&mut resource, id);
            // A shipped SearchParameter is in the registry already.
            if rtype == "SearchParameter" && !shipped {
                search_parameters::check(id, &resource)?;
            }
            let index = stored_entries(&resource, rtype);
            let compartment = index.patient_compartment(rtype, id);
            let text =
                serde_json::to_string(&resource).map_err(|e| FhirError::Internal(e.to_string()))?;
            (Some(text), index, compartment)
        }
        None => {
            if rtype == "SearchParameter" {
                search_parameters::check_deletion(id);
            }
            (None, IndexEntries::default(), None)
        }
    };
    // A write that changes a patient's scoring inputs queues the patient in the same
    // transaction: the one whose compartment held the resource before (an update may move it,
    // a deletion leaves no compartment) and the one that holds it now.
    let queue = crate::scoring::is_input(rtype);
    if queue && current.is_some() {
        tx.queue_compartment(rtype, id, last_updated).await?;
    }
    tx.write(
        NewVersion {
            rtype,
            id,
            version,
            last_updated,
            method,
            content: content.as_deref(),
            compartment: compartment.as_deref(),
            index: &index,
        },
        current.map(|c| c.version),
    )
    .await?;
    if queue && compartment.is_some() {
        tx.queue_compartment(rtype, id, last_updated).await?;
    }
    Ok(Version {
        rtype: rtype.to_owned(),
        id: id.to_owned(),
        version,
        last_updated,
        method,
        content,
    })
}

/// A stored version as a response: the resource with its `meta`, `ETag` and `Last-Modified`.
pub fn respond(version: &Version, status: StatusCode) -> Result<FhirResponse, FhirError> {
    respond_subset(version, status, &crate::fhir::subset::Subset::Full)
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
