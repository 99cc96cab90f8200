//! The `$export` kick-off's parameters (Bulk Data Access IG 2.0.0, "Query Parameters"): from
//! the query of a GET or the Parameters body of a POST, checked and resolved, `_typeFilter`
//! queries through the ordinary search code.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::compartment::{is_the_patient, patient_params};
use crate::fhir::datetime::parse_range;
use crate::fhir::resource_types;
use crate::http::request::{parse_query, FhirRequest};
use crate::interaction::check_id;
use crate::search::params::{parse, Unknown};
use crate::search::query::SearchQuery;
use crate::store::Store;
use crate::terminology::resolver::StoreResolver;

/// The output formats the IG names for NDJSON.
const FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Search parameters a `_typeFilter` query may not use (IG: search response parameters).
const RESULT_PARAMS: [&str; 9] = [
    "_include",
    "_revinclude",
    "_sort",
    "_count",
    "_summary",
    "_elements",
    "_total",
    "_contained",
    "_containedType",
];

/// What the export is asked for.
pub(super) struct Request {
    pub(super) types: Vec<String>,
    /// `_type` was given: its types must be readable.
    pub(super) explicit: bool,
    pub(super) since: Option<i64>,
    /// `_typeFilter`: per type, queries one of which a resource must match.
    pub(super) filters: BTreeMap<String, Vec<SearchQuery>>,
}

/// The kick-off's parameters as name/value pairs, and the `patient` references of a POST.
/// A GET has them in the query; a POST in a Parameters body (and any in the query).
pub(super) fn parameters(
    request: &FhirRequest,
) -> Result<(Vec<(String, String)>, Option<Vec<String>>), FhirError> {
    let mut params = request.params.clone();
    if request.method != Method::POST {
        if params.iter().any(|(name, _)| name == "patient") {
            return Err(FhirError::invalid(
                "patient is taken in a POST kick-off's Parameters body only",
            ));
        }
        return Ok((params, None));
    }
    if request.body.is_empty() {
        return Ok((params, None));
    }
    let body = request.json_body()?;
    if body["resourceType"] != "Parameters" {
        return Err(FhirError::invalid(
            "A POST $export takes a Parameters resource",
        ));
    }
    let mut patients: Option<Vec<String>> = None;
    for parameter in body["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"]
            .as_str()
            .ok_or_else(|| FhirError::invalid("Parameters.parameter without a name"))?;
        if name == "patient" {
            let reference = parameter["valueReference"]["reference"]
                .as_str()
                .ok_or_else(|| FhirError::invalid("patient takes a valueReference"))?;
            let id = reference
                .strip_prefix("Patient/")
                .filter(|id| crate::fhir::id::is_valid(id))
                .ok_or_else(|| {
                    FhirError::invalid(format!(
                        "patient: '{reference}' is not a reference Patient/[id]"
                    ))
                })?;
            patients.get_or_insert_with(Vec::new).push(id.to_owned());
            continue;
        }
        let value = [
            "valueString",
            "valueCode",
            "valueInstant",
            "valueDateTime",
            "valueUri",
        ]
        .iter()
        .find_map(|key| parameter[*key].as_str())
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "{name}: the value must be a string, code, instant or uri"
            ))
        })?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if let Some(patients) = &mut patients {
        patients.sort();
        patients.dedup();
    }
    Ok((params, patients))
}

/// The kick-off's parameters; Patient and Group exports hold only compartment types.
pub(super) async fn read_params(
    app: &App,
    params: &[(String, String)],
    compartment_only: bool,
) -> Result<Request, FhirError> {
    let mut types: Option<Vec<String>> = None;
    let mut since = None;
    let mut filters: Vec<String> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "_outputFormat" => {
                if !FORMATS.contains(&value.as_str()) {
                    return Err(FhirError::invalid(format!(
                        "_outputFormat '{value}' is not supported: use application/fhir+ndjson \
                         (or application/ndjson, ndjson)"
                    )));
                }
            }
            "_since" => {
                since = Some(
                    parse_range(value)
                        .map_err(|e| FhirError::invalid(format!("_since: {e}")))?
                        .0,
                )
            }
            "_type" => {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !resource_types::is_resource_type(t) {
                        return Err(FhirError::invalid(format!(
                            "_type: '{t}' is not a resource type"
                        )));
                    }
                    types.get_or_insert_with(Vec::new).push(t.to_owned());
                }
            }
            "_typeFilter" => filters.extend(split_type_filters(value).map(str::to_owned)),
            "includeAssociatedData" => {
                return Err(FhirError::invalid(format!(
                    "includeAssociatedData ({value}) is not supported: Signaal exports no \
                     associated data sets (such as LatestProvenanceResources); send the \
                     request without it"
                )))
            }
            "_elements" => {
                return Err(FhirError::invalid(
                    "_elements is not supported by $export: send the request without it",
                ))
            }
            other => unknown.push(other),
        }
    }
    if !unknown.is_empty() {
        unknown.dedup();
        return Err(FhirError::invalid(format!(
            "$export does not support the parameter{} '{}' (it takes _outputFormat, _since, \
             _type, _typeFilter and, in a POST, patient)",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join("', '")
        )));
    }
    let in_compartment = |t: &str| is_the_patient(t) || !patient_params(t).is_empty();
    let explicit = types.is_some();
    let mut types = match types {
        Some(types) => {
            if compartment_only {
                if let Some(t) = types.iter().find(|t| !in_compartment(t)) {
                    return Err(FhirError::invalid(format!(
                        "_type: {t} is in no Patient compartment, so not in a Patient or Group export"
                    )));
                }
            }
            types
        }
        None => resource_types::all()
            .iter()
            .filter(|t| !compartment_only || in_compartment(t))
            .cloned()
            .collect(),
    };
    types.sort();
    types.dedup();
    let mut by_type: BTreeMap<String, Vec<SearchQuery>> = BTreeMap::new();
    for filter in filters {
        let (rtype, query) = type_filter(app, &filter).await?;
        if !types.contains(&rtype) {
            return Err(FhirError::invalid(format!(
                "_typeFilter '{filter}': {rtype} is not among the types exported"
            )));
        }
        by_type.entry(rtype).or_default().push(query);
    }
    Ok(Request {
        types,
        explicit,
        since,
        filters: by_type,
    })
}

/// The queries of a `_typeFilter` value: comma-separated `Type?query`, so a comma splits only
/// where a resource type and `?` follow (a comma inside a query ORs its values).
pub(super) fn split_type_filters(value: &str) -> impl Iterator<Item = &str> {
    let mut starts = vec![0];
    for (i, _) in value.match_indices(',') {
        let rest = &value[i + 1..];
        let starts_query = rest
            .split_once('?')
            .is_some_and(|(t, _)| resource_types::is_resource_type(t.trim()));
        if starts_query {
            starts.push(i + 1);
        }
    }
    let mut ends: Vec<usize> = starts[1..].iter().map(|s| s - 1).collect();
    ends.push(value.len());
    starts
        .into_iter()
        .zip(ends)
        .map(move |(s, e)| value[s..e].trim())
        .filter(|q| !q.is_empty())
}

/// One `_typeFilter` query, parsed and resolved by the search code as a search of its type.
pub(super) async fn type_filter(
    app: &App,
    filter: &str,
) -> Result<(String, SearchQuery), FhirError> {
    let bad = |why: String| FhirError::invalid(format!("_typeFilter '{filter}': {why}"));
    let (rtype, query) = filter
        .split_once('?')
        .ok_or_else(|| bad("not a search query [type]?[parameters]".into()))?;
    if !resource_types::is_resource_type(rtype) {
        return Err(bad(format!("'{rtype}' is not a resource type")));
    }
    let params = parse_query(query);
    if params.is_empty() {
        return Err(bad("the query has no parameters".into()));
    }
    if let Some((name, _)) = params
        .iter()
        .find(|(name, _)| RESULT_PARAMS.contains(&name.split(':').next().unwrap_or(name)))
    {
        return Err(bad(format!(
            "search result parameters such as {name} are not allowed in a _typeFilter"
        )));
    }
    let mut parsed = parse(
        app.registry(),
        &app.search_budget,
        rtype,
        &params,
        Unknown::Refuse,
        &app.base_url,
    )
    .map_err(|e| bad(e.to_string()))?;
    crate::search::resolve(&StoreResolver::new(app.store.as_ref()), &mut parsed.query).await?;
    Ok((rtype.to_owned(), parsed.query))
}

/// The ids of the Patients a Group names in `member.entity`.
pub(super) async fn group_members(store: &dyn Store, id: &str) -> Result<Vec<String>, FhirError> {
    check_id(id)?;
    let group = match store.read("Group", id).await? {
        Some(v) if !v.deleted() => v,
        _ => return Err(FhirError::NotFound(format!("Group/{id} is not known"))),
    };
    let group: Value = serde_json::from_str(group.content.as_deref().unwrap_or("{}"))
        .map_err(|e| FhirError::Internal(format!("stored Group/{id}: {e}")))?;
    let mut members: Vec<String> = group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["inactive"] != true)
        .filter_map(|m| m["entity"]["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_owned)
        .collect();
    members.sort();
    members.dedup();
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_split_between_queries_not_inside_them() {
        let value =
            "MedicationRequest?status=active,completed,Condition?code=x&clinical-status=a,b";
        let queries: Vec<&str> = split_type_filters(value).collect();
        assert_eq!(
            queries,
            [
                "MedicationRequest?status=active,completed",
                "Condition?code=x&clinical-status=a,b"
            ]
        );
    }
}
