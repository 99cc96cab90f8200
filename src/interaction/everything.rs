//! `GET [base]/Patient/[id]/$everything` (R4 operation `Patient-everything`,
//! http://hl7.org/fhir/R4/patient-operation-everything.html): the patient, every current
//! resource of its compartment (official Patient CompartmentDefinition), and the resources
//! those refer to that are in no patient's compartment (Practitioner, Organization, Location,
//! Medication…), as a `searchset` Bundle.
//!
//! Everything is read through the request's store, so a token sees here exactly what it would
//! see by searching: a patient-bound token only its own patient (another one is unknown to it),
//! other tokens what their scopes allow, type by type.
//!
//! Parameters:
//! - `start`, `end`: care dates, not record dates. A resource whose type has a `date` search
//!   parameter (the clinical date of the R4 types: Observation effective, Encounter period,
//!   Procedure performed…) is left out when that date lies wholly before `start` or after
//!   `end`; resources without a clinical date (the Patient, a CarePlan without one…) stay in.
//! - `_since`: only resources whose `meta.lastUpdated` is at or after this instant.
//! - `_type`: a comma-separated list of the resource types wanted.
//! - `_count`: the page size (default and maximum as for search; a larger one is capped, with
//!   an informational OperationOutcome entry). The answer is in a fixed
//!   order (type, then id) and a `next` link carries the last `Type/id` shown, so paging stays
//!   correct while others write: a resource written meanwhile is shown at most once.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::compartment::{is_the_patient, patient_params};
use crate::fhir::datetime::parse_range;
use crate::fhir::{meta, resource_types};
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::bundle::{bundle, information, outcome_entry};
use crate::interaction::paging::{self, Page};
use crate::interaction::{check_id, check_type};
use crate::search::extract::index_entries;
use crate::search::query::{Cursor, SearchQuery};
use crate::search::result::{self, DEFAULT_COUNT};
use crate::store::Version;

/// The parameter of the `next` link: the `Type/id` of the last resource shown.
const CURSOR: &str = "_cursor_after";

/// The request's parameters, read and checked.
struct Params {
    /// Care dates: `[lo, hi)` in ms.
    start: Option<i64>,
    end: Option<i64>,
    since: Option<i64>,
    types: Option<Vec<String>>,
    count: result::Count,
    after: Option<(String, String)>,
    /// Type level: the row of the patient whose resources the page continues with.
    patient_after: Option<i64>,
    /// What the paging links repeat.
    kept: Vec<(String, String)>,
}

fn params(request: &FhirRequest) -> Result<Params, FhirError> {
    let mut p = Params {
        start: None,
        end: None,
        since: None,
        types: None,
        count: result::Count {
            size: DEFAULT_COUNT,
            capped_from: None,
        },
        after: None,
        patient_after: None,
        kept: Vec::new(),
    };
    let instant = |name: &str, value: &str| {
        parse_range(value).map_err(|e| FhirError::invalid(format!("{name}: {e}")))
    };
    for (name, value) in &request.params {
        match name.as_str() {
            "start" => p.start = Some(instant(name, value)?.0),
            "end" => p.end = Some(instant(name, value)?.1),
            "_since" => p.since = Some(instant(name, value)?.0),
            "_count" => p.count = result::count(value)?,
            "_type" => {
                let types: Vec<String> = value
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect();
                for t in &types {
                    check_type(t).map_err(|_| {
                        FhirError::invalid(format!("_type: '{t}' is not a resource type"))
                    })?;
                }
                p.types.get_or_insert_with(Vec::new).extend(types);
            }
            CURSOR => {
                // Type level: `[patient row]:[Type]/[id]`.
                let value = match value.split_once(':') {
                    Some((rid, key)) => {
                        p.patient_after =
                            Some(rid.parse().map_err(|_| {
                                FhirError::invalid("The paging cursor is not valid")
                            })?);
                        key
                    }
                    None => value.as_str(),
                };
                let key = value
                    .split_once('/')
                    .filter(|(t, i)| resource_types::is_resource_type(t) && !i.is_empty())
                    .ok_or_else(|| FhirError::invalid("The paging cursor is not valid"))?;
                p.after = Some((key.0.to_owned(), key.1.to_owned()));
            }
            other => {
                return Err(FhirError::invalid(format!(
                    "Patient/$everything does not support the parameter '{other}' \
                     (it takes start, end, _since, _type and _count)"
                )))
            }
        }
        if name != CURSOR {
            p.kept.push((name.clone(), value.clone()));
        }
    }
    Ok(p)
}

/// `GET [base]/Patient/[id]/$everything`.
pub async fn everything(
    app: &App,
    request: &FhirRequest,
    patient: &str,
) -> Result<FhirResponse, FhirError> {
    check_id(patient)?;
    let params = params(request)?;
    match app.store.read("Patient", patient).await? {
        Some(v) if !v.deleted() => {}
        _ => {
            return Err(FhirError::NotFound(format!(
                "Patient/{patient} is not known"
            )))
        }
    }
    let found = record(app, patient, &params).await?;
    let total = found.len();
    let page: Vec<&Version> = match &params.after {
        Some(after) => found
            .range((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(_, v)| v)
            .take(params.count.size + 1)
            .collect(),
        None => found.values().take(params.count.size + 1).collect(),
    };
    let more = page.len() > params.count.size;
    let page = &page[..page.len().min(params.count.size)];
    let key = |v: &&Version| format!("{}/{}", v.rtype, v.id);
    let links = paging::links(
        &app.url(&format!("Patient/{patient}/$everything")),
        // The links say the page size used, which a capped `_count` is not.
        &result::with_count_used(&params.kept, params.count.size),
        &Page {
            first: page.first().map(key),
            last: page.last().map(key),
            more,
            backwards: false,
            // Paging is forward only: no `previous` link.
            forwards: false,
        },
        CURSOR,
        CURSOR,
    );
    let mut entries: Vec<Value> = page
        .iter()
        .filter_map(|v| {
            Some(json!({
                "fullUrl": app.url(&format!("{}/{}", v.rtype, v.id)),
                "resource": meta::stamp(v)?,
                "search": {"mode": "match"},
            }))
        })
        .collect();
    entries.extend(outcome_entry(
        params.count.note().map(information).into_iter().collect(),
    ));
    Ok(FhirResponse::ok(bundle(
        "searchset",
        Some(total as u64),
        links,
        entries,
    )))
}

/// One patient's record as `$everything` answers it, keyed by (type, id): the compartment
/// (within `start`/`end`), what it refers to outside every compartment, limited to `_type` and
/// `_since`.
async fn record(
    app: &App,
    patient: &str,
    params: &Params,
) -> Result<BTreeMap<(String, String), Version>, FhirError> {
    let types: Vec<&str> = resource_types::all()
        .iter()
        .map(String::as_str)
        .filter(|t| is_the_patient(t) || !patient_params(t).is_empty())
        .collect();
    // Keyed by (type, id): the answer's order, and no resource twice.
    let mut found: BTreeMap<(String, String), Version> = BTreeMap::new();
    for version in app.store.compartment(patient, &types).await? {
        if in_care_period(app, &version, params) {
            found.insert((version.rtype.clone(), version.id.clone()), version);
        }
    }
    // What they refer to outside every patient's compartment, once.
    let mut referred: Vec<(String, String)> = Vec::new();
    for version in found.values() {
        let Some(content) = version.content.as_deref() else {
            continue;
        };
        let Ok(resource) = serde_json::from_str::<Value>(content) else {
            continue;
        };
        references(&resource, &mut |rtype, id| {
            let key = (rtype.to_owned(), id.to_owned());
            if patient_params(rtype).is_empty()
                && !is_the_patient(rtype)
                && !found.contains_key(&key)
                && !referred.contains(&key)
            {
                referred.push(key);
            }
        });
    }
    for hit in app.store.read_current(&referred).await? {
        found.insert(
            (hit.version.rtype.clone(), hit.version.id.clone()),
            hit.version,
        );
    }
    found.retain(|(rtype, _), version| {
        params
            .types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == rtype))
            && params
                .since
                .is_none_or(|since| version.last_updated >= since)
    });
    Ok(found)
}

/// `GET [base]/Patient/$everything`: the record of every patient the token may see (all for a
/// system token, its own for a patient-bound one), patient after patient in row order, each as
/// the instance level answers it, as one `searchset` paged by `_count`. The `next` link
/// carries the patient's row and the last `Type/id` shown. A resource several patients refer to
/// (a Practitioner) is shown once a page, and again on a later page for another patient; the
/// total is not counted (it would read every record).
pub async fn type_level(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let params = params(request)?;
    const PATIENTS: usize = 50;
    let mut shown: Vec<(i64, Version)> = Vec::new();
    let mut seen: std::collections::HashSet<(String, String)> = Default::default();
    let mut more = false;
    // The cursor's patient is read again, from the key after the last one shown.
    let mut after_row = params.patient_after.map(|rid| rid - 1);
    'patients: loop {
        let query = SearchQuery {
            rtype: "Patient".to_owned(),
            count: PATIENTS,
            after: after_row.map(|rid| Cursor {
                keys: Vec::new(),
                rid,
            }),
            ..Default::default()
        };
        let mut patients = app.store.search(&query).await?;
        let more_patients = patients.len() > PATIENTS;
        patients.truncate(PATIENTS);
        for hit in &patients {
            let found = record(app, &hit.version.id, &params).await?;
            let from = match &params.after {
                Some(key) if params.patient_after == Some(hit.rid) => {
                    std::ops::Bound::Excluded(key.clone())
                }
                _ => std::ops::Bound::Unbounded,
            };
            for (key, version) in found.range((from, std::ops::Bound::Unbounded)) {
                if shown.len() == params.count.size {
                    more = true;
                    break 'patients;
                }
                if seen.insert(key.clone()) {
                    shown.push((hit.rid, version.clone()));
                }
            }
        }
        match patients.last() {
            Some(last) if more_patients => after_row = Some(last.rid),
            _ => break,
        }
    }
    let key = |(rid, v): &(i64, Version)| format!("{rid}:{}/{}", v.rtype, v.id);
    let links = paging::links(
        &app.url("Patient/$everything"),
        // The links say the page size used, which a capped `_count` is not.
        &result::with_count_used(&params.kept, params.count.size),
        &Page {
            first: shown.first().map(key),
            last: shown.last().map(key),
            more,
            backwards: false,
            forwards: false,
        },
        CURSOR,
        CURSOR,
    );
    let mut entries: Vec<Value> = shown
        .iter()
        .filter_map(|(_, v)| {
            Some(json!({
                "fullUrl": app.url(&format!("{}/{}", v.rtype, v.id)),
                "resource": meta::stamp(v)?,
                "search": {"mode": "match"},
            }))
        })
        .collect();
    entries.extend(outcome_entry(
        params.count.note().map(information).into_iter().collect(),
    ));
    Ok(FhirResponse::ok(bundle("searchset", None, links, entries)))
}

/// Whether a resource's clinical date (its type's `date` search parameter) meets
/// `start`..`end`; a resource without one always does.
fn in_care_period(app: &App, version: &Version, params: &Params) -> bool {
    if params.start.is_none() && params.end.is_none() {
        return true;
    }
    let Some(resource) = version
        .content
        .as_deref()
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
    else {
        return false;
    };
    let entries = index_entries(app.registry(), &resource, &version.rtype);
    let mut dates = entries
        .dates
        .iter()
        .filter(|d| d.param == "date")
        .peekable();
    if dates.peek().is_none() {
        return true;
    }
    dates.any(|d| {
        params.start.is_none_or(|start| d.hi > start) && params.end.is_none_or(|end| d.lo < end)
    })
}

/// Calls `found(type, id)` for every literal relative reference (`Type/id`, possibly with a
/// `_history` suffix) anywhere in `value`, contained resources included.
fn references(value: &Value, found: &mut impl FnMut(&str, &str)) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("reference") {
                let mut parts = reference.split('/');
                if let (Some(rtype), Some(id)) = (parts.next(), parts.next()) {
                    if resource_types::is_resource_type(rtype) && crate::fhir::id::is_valid(id) {
                        found(rtype, id);
                    }
                }
            }
            for item in map.values() {
                references(item, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_at_any_depth() {
        let resource = json!({
            "resourceType": "MedicationRequest",
            "subject": {"reference": "Patient/p"},
            "medicationReference": {"reference": "Medication/m/_history/2"},
            "performer": [{"actor": {"reference": "Practitioner/d"}}],
            "note": [{"text": "see http://x/y"}],
            "basedOn": [{"reference": "#local"}],
        });
        let mut seen = Vec::new();
        references(&resource, &mut |t, i| seen.push(format!("{t}/{i}")));
        seen.sort();
        assert_eq!(seen, ["Medication/m", "Patient/p", "Practitioner/d"]);
    }
}
