//! `GET|POST [base]/Measure/[id]/$evaluate-measure` (R4 operation
//! http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure, as Signaal implements it:
//! `conformance/operation-evaluate-measure.json`) for the end-of-life care indicators
//! (`measure`).
//!
//! The parameters come from the query (GET) or a `Parameters` body (POST; query parameters
//! may add to it). The decedents of the period are found by `Patient?death-date` (a day wider
//! on each side, then decided by the date of death as written), or are the one `subject`;
//! each decedent's compartment (the indicators' input types) and the Locations its Encounters
//! reference are read through the caller's guarded store, so a client counts only the
//! patients it may read.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate};
use serde_json::Value;

use crate::app::App;
use crate::error::{FhirError, Issue};
use crate::fhir::datetime::{format_instant, now_ms, parse_range};
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::check_id;
use crate::measure::indicators::{self, Decedent, INPUT_TYPES};
use crate::measure::report::{measure_report, Evaluated, ReportType, Request};
use crate::measure::{date_of_death, Indicator};
use crate::scoring::Record;
use crate::search::params::{parse, Unknown};
use crate::search::query::Cursor;
use crate::search::result::MAX_COUNT;

/// The canonical URL of `conformance/operation-evaluate-measure.json`.
pub const DEFINITION: &str = "https://signaal.dev/fhir/OperationDefinition/evaluate-measure";

/// The parameters Signaal reads; R4's `measure` (type level only), `practitioner` and
/// `lastReceivedOn` are refused.
const KNOWN: &[&str] = &["periodStart", "periodEnd", "reportType", "subject"];

fn parse_json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// The operation's parameters by name, from the query and (POST) the Parameters body; each
/// at most once.
fn parameters(request: &FhirRequest) -> Result<HashMap<String, String>, FhirError> {
    let mut found: Vec<(String, String)> = request.params.clone();
    if request.method == axum::http::Method::POST && !request.body.is_empty() {
        let body = request.json_body()?;
        if body["resourceType"] != "Parameters" {
            return Err(FhirError::invalid(
                "The body of POST $evaluate-measure must be a Parameters resource",
            ));
        }
        for p in body["parameter"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let value = ["valueDate", "valueDateTime", "valueString", "valueCode"]
                .iter()
                .find_map(|k| p[*k].as_str())
                .or_else(|| p["valueReference"]["reference"].as_str())
                .ok_or_else(|| {
                    FhirError::invalid(format!(
                        "Parameter {name}: a value (valueDate, valueString, valueCode or \
                         valueReference) is required"
                    ))
                })?;
            found.push((name, value.to_owned()));
        }
    }
    let mut out = HashMap::new();
    for (name, value) in found {
        if !KNOWN.contains(&name.as_str()) {
            return Err(FhirError::invalid(format!(
                "$evaluate-measure: the parameter '{name}' is not supported (supported: {})",
                KNOWN.join(", ")
            )));
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(FhirError::invalid(format!(
                "The parameter {name} may appear only once"
            )));
        }
    }
    Ok(out)
}

fn utc_date(ms: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(ms).map(|t| t.date_naive())
}

/// The first and last day of the period (`periodStart`, `periodEnd` as FHIR dates, partial
/// ones whole: `2024` .. `2024` is the year).
fn period(params: &HashMap<String, String>) -> Result<(NaiveDate, NaiveDate), FhirError> {
    let get = |name: &str| {
        params.get(name).ok_or_else(|| {
            FhirError::invalid(format!("$evaluate-measure requires the parameter {name}"))
        })
    };
    let range = |name: &str, value: &str| {
        parse_range(value).map_err(|e| FhirError::invalid(format!("{name}: {e}")))
    };
    let (lo, _) = range("periodStart", get("periodStart")?)?;
    let (_, hi) = range("periodEnd", get("periodEnd")?)?;
    let (Some(start), Some(end)) = (utc_date(lo), utc_date(hi - 1)) else {
        return Err(FhirError::invalid("The period is out of range"));
    };
    if start > end {
        return Err(FhirError::invalid(format!(
            "periodStart {start} is after periodEnd {end}"
        )));
    }
    Ok((start, end))
}

fn resource(version: &crate::store::Version) -> Option<Value> {
    version.content.as_deref().and_then(parse_json)
}

/// The Patients whose date of death may fall in `[start, end]` (the search is a day wider on
/// each side: the date as written decides).
async fn decedents(app: &App, start: NaiveDate, end: NaiveDate) -> Result<Vec<Value>, FhirError> {
    let params = vec![
        (
            "death-date".to_owned(),
            format!("ge{}", start - Duration::days(1)),
        ),
        (
            "death-date".to_owned(),
            format!("le{}", end + Duration::days(1)),
        ),
        ("_count".to_owned(), MAX_COUNT.to_string()),
    ];
    let mut query = parse(
        app.registry(),
        &app.search_budget,
        "Patient",
        &params,
        Unknown::Refuse,
        &app.base_url,
    )?
    .query;
    let mut out = Vec::new();
    loop {
        let mut hits = app.store.search(&query).await?;
        let more = hits.len() > query.count;
        hits.truncate(query.count);
        out.extend(hits.iter().filter_map(|h| resource(&h.version)));
        match hits.last() {
            Some(last) if more => {
                query.after = Some(Cursor {
                    keys: last.keys.clone(),
                    rid: last.rid,
                })
            }
            _ => break,
        }
    }
    Ok(out)
}

pub async fn evaluate_measure(
    app: &App,
    request: &FhirRequest,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    check_id(id)?;
    let measure = match app.store.read("Measure", id).await? {
        Some(v) => resource(&v),
        None => None,
    }
    .ok_or_else(|| FhirError::NotFound(format!("Measure/{id} is not known")))?;
    let measure_url = measure["url"].as_str().unwrap_or_default().to_owned();
    let indicator = Indicator::from_url(&measure_url).ok_or_else(|| {
        FhirError::Unprocessable(vec![Issue::error(
            "not-supported",
            format!(
                "Measure/{id} ({measure_url}) has logic Signaal does not implement: \
                 $evaluate-measure evaluates Signaal's end-of-life care indicators (the \
                 Measures {}/Measure/eol-*)",
                crate::fhir::canonical::BASE
            ),
        )])
    })?;
    let params = parameters(request)?;
    let (start, end) = period(&params)?;
    let subject = match params.get("subject") {
        Some(s) => {
            let sid = s.strip_prefix("Patient/").unwrap_or(s);
            if sid.contains('/') {
                return Err(FhirError::invalid(format!(
                    "subject '{s}' must be a Patient (Patient/[id])"
                )));
            }
            check_id(sid)?;
            Some(sid.to_owned())
        }
        None => None,
    };
    let kind = match params.get("reportType") {
        Some(code) => ReportType::parse(code).ok_or_else(|| {
            FhirError::invalid(format!(
                "reportType '{code}' is not one of subject, subject-list, population (summary)"
            ))
        })?,
        None if subject.is_some() => ReportType::Individual,
        None => ReportType::Summary,
    };
    if kind == ReportType::Individual && subject.is_none() {
        return Err(FhirError::invalid(
            "reportType subject requires the parameter subject",
        ));
    }

    let patients = match &subject {
        Some(sid) => match app
            .store
            .read("Patient", sid)
            .await?
            .as_ref()
            .and_then(resource)
        {
            Some(p) => vec![p],
            None => return Err(FhirError::NotFound(format!("Patient/{sid} is not known"))),
        },
        None => decedents(app, start, end).await?,
    };
    let terms = app.scoring.terms(&*app.store).await?;
    let mut results = Vec::new();
    for patient in &patients {
        let Some(death) = date_of_death(patient).filter(|d| (start..=end).contains(d)) else {
            continue;
        };
        let pid = patient["id"].as_str().unwrap_or_default().to_owned();
        let inputs: Vec<Value> = app
            .store
            .compartment(&pid, INPUT_TYPES)
            .await?
            .iter()
            .filter_map(resource)
            .collect();
        let record = Record::new(&pid, inputs);
        let wanted: Vec<(String, String)> = indicators::referenced_locations(&record)
            .into_iter()
            .map(|l| ("Location".to_owned(), l))
            .collect();
        let locations: HashMap<String, Value> = app
            .store
            .read_current(&wanted)
            .await?
            .iter()
            .filter_map(|h| Some((h.version.id.clone(), resource(&h.version)?)))
            .collect();
        let decedent = Decedent {
            record: &record,
            locations: &locations,
            death,
        };
        results.push(Evaluated {
            numerator: indicators::evaluate(indicator, &decedent, &terms).met,
            coach: indicators::had_coach(&decedent, &terms),
            patient: pid,
        });
    }
    results.sort_by(|a, b| a.patient.cmp(&b.patient));
    let period_start = start.to_string();
    let period_end = end.to_string();
    let date = format_instant(now_ms());
    let report = measure_report(
        &Request {
            measure_url: &measure_url,
            kind,
            period: (&period_start, &period_end),
            subject: subject.as_deref(),
            date: &date,
        },
        &results,
    );
    Ok(FhirResponse::ok(report))
}
