//! A resource becomes a stored version inside a store transaction: the step every write ends
//! with (create, update, patch, delete and their conditional forms, Bundle entries, the
//! Provenance of a write, AuditEvents, the scorer's RiskAssessments and Flags).

use serde_json::Value;

use super::{outbox, scoring_queue, Indexing};
use crate::error::FhirError;
use crate::fhir::datetime::now_ms;
use crate::fhir::meta;
use crate::search::extract::stored_entries;
use crate::search::index::IndexEntries;
use crate::store::{Current, Method, NewVersion, Tx, Version};

/// Writes `resource` (already validated; `None` to delete) as the version after `current`.
/// Sets `id`, strips server-owned `meta`, indexes it with `indexing`'s search parameters, and
/// returns the stored version. The canonical resources the server ships are read-only
/// (`fhir::canonical`). A SearchParameter is checked against them first (a bad active one
/// is a 422 and nothing is stored); one that changes the active ones is noted in `indexing`.
pub async fn write(
    tx: &mut dyn Tx,
    indexing: &Indexing,
    rtype: &str,
    id: &str,
    current: Option<Current>,
    method: Method,
    resource: Option<Value>,
) -> Result<Version, FhirError> {
    crate::fhir::canonical::check_writable(rtype, id, resource.as_ref())?;
    write_unchecked(tx, indexing, rtype, id, current, method, resource).await
}

/// [`write`] without the read-only check of the canonical resources the server ships
/// (`fhir::canonical`): for seeding them at start.
pub async fn write_unchecked(
    tx: &mut dyn Tx,
    indexing: &Indexing,
    rtype: &str,
    id: &str,
    current: Option<Current>,
    method: Method,
    resource: Option<Value>,
) -> Result<Version, FhirError> {
    let prepared = prepare_unchecked(indexing, rtype, id, resource, tx.source())?;
    write_prepared(tx, prepared, current, method).await
}

/// A resource made ready to be stored as `rtype/id`, before the transaction reads anything
/// (its current version is not needed for this): server-owned `meta` stripped, the source of
/// the transaction's agent set, its index entries, its patient compartment and its JSON.
/// Preparing before the first statement of a transaction keeps this work out of the
/// database writer's turn (`store::group_commit`).
pub struct Prepared {
    rtype: String,
    id: String,
    content: Option<String>,
    index: IndexEntries,
    compartment: Option<String>,
}

/// Prepares `resource` (already validated; `None` to delete) to be written as `rtype/id` by a
/// transaction whose agent's source is `source` ([`Tx::source`]), with the checks of [`write`].
pub fn prepare(
    indexing: &Indexing,
    rtype: &str,
    id: &str,
    resource: Option<Value>,
    source: Option<&str>,
) -> Result<Prepared, FhirError> {
    crate::fhir::canonical::check_writable(rtype, id, resource.as_ref())?;
    prepare_unchecked(indexing, rtype, id, resource, source)
}

fn prepare_unchecked(
    indexing: &Indexing,
    rtype: &str,
    id: &str,
    resource: Option<Value>,
    source: Option<&str>,
) -> Result<Prepared, FhirError> {
    let shipped = crate::fhir::canonical::is_shipped(rtype, id);
    if crate::fhir::canonical::DEFINITION_TYPES.contains(&rtype) && !shipped {
        indexing.note_definition_written(rtype, id);
    }
    let (content, index, compartment) = match resource {
        Some(mut resource) => {
            if let Some(source) = source {
                meta::set_source(&mut resource, source);
            }
            meta::strip(&mut resource, id);
            // A shipped SearchParameter is in the registry already.
            if rtype == "SearchParameter" && !shipped {
                check_search_parameter(indexing, id, &resource)?;
            }
            let index = stored_entries(indexing.registry(), &resource, rtype);
            let compartment = index.patient_compartment(rtype, id);
            let text =
                serde_json::to_string(&resource).map_err(|e| FhirError::Internal(e.to_string()))?;
            (Some(text), index, compartment)
        }
        None => {
            if rtype == "SearchParameter" && indexing.registry().has_resource(id) {
                indexing.note_search_params_changed();
            }
            (None, IndexEntries::default(), None)
        }
    };
    Ok(Prepared {
        rtype: rtype.to_owned(),
        id: id.to_owned(),
        content,
        index,
        compartment,
    })
}

/// Writes a [`Prepared`] resource as the version after `current` (read in `tx`), and returns
/// the stored version.
pub async fn write_prepared(
    tx: &mut dyn Tx,
    prepared: Prepared,
    current: Option<Current>,
    method: Method,
) -> Result<Version, FhirError> {
    let Prepared {
        rtype,
        id,
        content,
        index,
        compartment,
    } = prepared;
    let (rtype, id) = (rtype.as_str(), id.as_str());
    let version = current.map_or(1, |c| c.version + 1);
    // Never let lastUpdated go backwards within a resource, whatever the clock does.
    let last_updated = now_ms().max(current.map_or(i64::MIN, |c| c.last_updated));
    // A write that changes a patient's scoring inputs queues the patient in the same
    // transaction: the one whose compartment held the resource before (an update may move it,
    // a deletion leaves no compartment) and the one that holds it now.
    let queue = scoring_queue::is_input(rtype);
    if queue && current.is_some() {
        tx.queue_compartment(rtype, id, last_updated).await?;
    }
    let source = tx.source().map(str::to_owned);
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
            event: outbox::records(rtype),
            source: source.as_deref(),
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

/// Checks a SearchParameter about to be written (see `Registry::check`) and notes when it
/// changes the active ones: it is active, or it was.
fn check_search_parameter(
    indexing: &Indexing,
    id: &str,
    resource: &Value,
) -> Result<(), FhirError> {
    let registry = indexing.registry();
    let active = registry.check(id, resource)?.is_some();
    if active || registry.has_resource(id) {
        indexing.note_search_params_changed();
    }
    Ok(())
}
