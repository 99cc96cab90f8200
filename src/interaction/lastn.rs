//! `Observation/$lastn` (http://hl7.org/fhir/OperationDefinition/Observation-lastn): the most
//! recent `max` Observations per code — "the latest blood pressure, weight and glucose" — with
//! the ordinary Observation search parameters (`patient`, `subject`, `category`, `code`, `date`,
//! …) choosing which Observations count.

use axum::http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::meta;
use crate::http::negotiate::prefer_strict;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::bundle::{bundle, outcome_entry, warning};
use crate::interaction::paging::{self, Page};
use crate::search::params::{parse, Unknown};
use crate::search::query::Contained;
use crate::search::result::MAX_COUNT;
use crate::terminology::resolver::StoreResolver;

/// The most Observations one `$lastn` answer holds.
pub const MAX_RESULTS: usize = MAX_COUNT;

pub async fn lastn(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let mut max = 1usize;
    let mut params = Vec::new();
    for (name, value) in &request.params {
        match name.as_str() {
            "max" => {
                max = value
                    .parse()
                    .ok()
                    .filter(|m| (1..=MAX_COUNT).contains(m))
                    .ok_or_else(|| {
                        FhirError::invalid(format!(
                            "max must be a whole number from 1 to {MAX_COUNT}, not '{value}'"
                        ))
                    })?
            }
            "_count" | "_sort" | "_include" | "_revinclude" => {
                return Err(FhirError::invalid(format!("$lastn does not take {name}")))
            }
            _ => params.push((name.clone(), value.clone())),
        }
    }
    let unknown = if prefer_strict(&request.headers) {
        Unknown::Refuse
    } else {
        Unknown::Ignore
    };
    let mut parsed = parse(
        app.registry(),
        &app.search_budget,
        "Observation",
        &params,
        unknown,
        &app.base_url,
    )?;
    if parsed.query.contained != Contained::False {
        return Err(FhirError::invalid(
            "$lastn finds Observations, not resources contained in them: _contained must be false",
        ));
    }
    crate::search::resolve(&StoreResolver::new(app.store.as_ref()), &mut parsed.query).await?;
    let mut hits = app.store.lastn(&parsed.query, max, MAX_RESULTS).await?;
    let truncated = hits.len() > MAX_RESULTS;
    hits.truncate(MAX_RESULTS);
    let mut entries: Vec<_> = hits
        .iter()
        .filter_map(|hit| {
            Some(json!({
                "fullUrl": app.url(&format!("Observation/{}", hit.version.id)),
                "resource": meta::stamp(&hit.version)?,
                "search": {"mode": "match"},
            }))
        })
        .collect();
    let mut warnings: Vec<String> = parsed
        .ignored
        .iter()
        .map(|r| format!("Ignored {r}"))
        .collect();
    if truncated {
        warnings.push(format!(
            "Only the first {MAX_RESULTS} Observations are returned"
        ));
    }
    entries.extend(outcome_entry(
        warnings
            .into_iter()
            .map(|w| warning("informational", w))
            .collect(),
    ));
    let page = Page {
        first: None,
        last: None,
        more: false,
        backwards: false,
        forwards: false,
    };
    let links = paging::links(
        &app.url("Observation/$lastn"),
        &request.params,
        &page,
        "",
        "",
    );
    let bundle = bundle("searchset", Some(hits.len() as u64), links, entries);
    Ok(FhirResponse::new(StatusCode::OK, Some(bundle)))
}
