//! `GET [base]/Practitioner/[id]/$worklist`: a coach's caseload ranked by risk
//! (OperationDefinition `conformance/operation-worklist.json`).
//!
//! The practitioner's patients are the subjects of the CareTeams they are a participant of
//! (not inactive or entered in error). They are ranked by their most urgent active Signaal Flag
//! (`flag-priority`), then by how many active Flags they have, then by id, and cut at the
//! caseload (`--caseload`, default 120). The answer is a searchset: each Patient as a match
//! (`search.score` its top priority / 100), followed by its active Flags and the
//! RiskAssessments those Flags point at, as includes. Each patient's entry names, in
//! `search.extension` (`worklist-goal-domain-missing`), the life domains (health, daily
//! activities, own way of coping, environment) in which the patient has no active or
//! accepted Goal.

use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::meta;
use crate::http::response::FhirResponse;
use crate::interaction::bundle::bundle;
use crate::interaction::check_id;
use crate::scoring::engagement::{goal_domain, goal_domains, GOAL_DOMAIN_SYSTEM};
use crate::scoring::output::{flag_priority, is_signaal};
use crate::search::params::{parse, Unknown};
use crate::search::query::Cursor;
use crate::search::result::MAX_COUNT;
use crate::store::Version;

/// The extension on a patient's entry naming a life domain without an active goal
/// (`profiles/StructureDefinition-worklist-goal-domain-missing.json`).
pub const MISSING_DOMAIN: &str =
    "https://signaal.dev/fhir/StructureDefinition/worklist-goal-domain-missing";

/// One patient of the caseload with what ranks it.
struct Entry {
    patient: String,
    top: i64,
    flags: Vec<Version>,
    assessments: Vec<String>,
    /// The life domains without an active goal.
    missing_domains: Vec<(&'static str, &'static str)>,
}

pub async fn worklist(app: &App, practitioner: &str) -> Result<FhirResponse, FhirError> {
    check_id(practitioner)?;
    match app.store.read("Practitioner", practitioner).await? {
        Some(v) if !v.deleted() => {}
        _ => {
            return Err(FhirError::NotFound(format!(
                "Practitioner/{practitioner} is not known"
            )))
        }
    }
    let patients = caseload(app, practitioner).await?;
    let mut entries = Vec::with_capacity(patients.len());
    for patient in patients {
        let mut flags = Vec::new();
        let mut covered = Vec::new();
        for version in app.store.compartment(&patient, &["Flag", "Goal"]).await? {
            let Some(resource) = version
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
            else {
                continue;
            };
            if version.rtype == "Goal" {
                if matches!(
                    resource["lifecycleStatus"].as_str(),
                    Some("active" | "accepted")
                ) {
                    covered.extend(goal_domain(&resource).map(|(code, _)| code));
                }
                continue;
            }
            let flag = resource;
            if flag["status"] == "active" && is_signaal(&flag) {
                flags.push((flag_priority(&flag), flag, version));
            }
        }
        flags.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        let top = flags.first().map_or(0, |f| f.0);
        let mut assessments: Vec<String> = Vec::new();
        for (_, flag, _) in &flags {
            for e in flag["extension"].as_array().into_iter().flatten() {
                if let Some(r) = e["valueReference"]["reference"].as_str() {
                    if let Some(id) = r.strip_prefix("RiskAssessment/") {
                        if !assessments.iter().any(|a| a == id) {
                            assessments.push(id.to_owned());
                        }
                    }
                }
            }
        }
        let missing_domains = goal_domains()
            .iter()
            .filter(|(code, _)| !covered.contains(&code.as_str()))
            .map(|(code, display)| (code.as_str(), display.as_str()))
            .collect();
        entries.push(Entry {
            patient,
            top,
            flags: flags.into_iter().map(|f| f.2).collect(),
            assessments,
            missing_domains,
        });
    }
    entries.sort_by(|a, b| {
        b.top
            .cmp(&a.top)
            .then_with(|| b.flags.len().cmp(&a.flags.len()))
            .then_with(|| a.patient.cmp(&b.patient))
    });
    entries.truncate(app.scoring.config.caseload);

    let keys: Vec<(String, String)> = entries
        .iter()
        .map(|e| ("Patient".to_owned(), e.patient.clone()))
        .collect();
    let found = app.store.read_current(&keys).await?;
    let entry = |version: &Version, mode: &str| -> Option<Value> {
        Some(json!({
            "fullUrl": app.url(&format!("{}/{}", version.rtype, version.id)),
            "resource": meta::stamp(version)?,
            "search": {"mode": mode},
        }))
    };
    let mut bundle_entries = Vec::new();
    let mut matches = 0;
    for e in &entries {
        let Some(patient) = found.iter().find(|h| h.version.id == e.patient) else {
            continue;
        };
        if let Some(mut p) = entry(&patient.version, "match") {
            p["search"]["score"] = json!(e.top as f64 / 100.0);
            let missing: Vec<Value> = e
                .missing_domains
                .iter()
                .map(|(code, display)| {
                    json!({"url": MISSING_DOMAIN, "valueCoding": {
                        "system": GOAL_DOMAIN_SYSTEM, "code": code, "display": display}})
                })
                .collect();
            if !missing.is_empty() {
                p["search"]["extension"] = json!(missing);
            }
            bundle_entries.push(p);
            matches += 1;
        }
        bundle_entries.extend(e.flags.iter().filter_map(|f| entry(f, "include")));
        let wanted: Vec<(String, String)> = e
            .assessments
            .iter()
            .map(|id| ("RiskAssessment".to_owned(), id.clone()))
            .collect();
        for hit in app.store.read_current(&wanted).await? {
            bundle_entries.extend(entry(&hit.version, "include"));
        }
    }
    Ok(FhirResponse::ok(bundle(
        "searchset",
        Some(matches as u64),
        vec![
            json!({"relation": "self", "url": app.url(&format!("Practitioner/{practitioner}/$worklist"))}),
        ],
        bundle_entries,
    )))
}

/// The ids of the patients of the CareTeams `practitioner` takes part in, in id order.
pub(crate) async fn caseload(app: &App, practitioner: &str) -> Result<Vec<String>, FhirError> {
    let params = vec![
        (
            "participant".to_owned(),
            format!("Practitioner/{practitioner}"),
        ),
        ("_count".to_owned(), MAX_COUNT.to_string()),
    ];
    let mut query = parse(
        app.registry(),
        &app.search_budget,
        "CareTeam",
        &params,
        Unknown::Refuse,
        &app.base_url,
    )?
    .query;
    let mut patients: Vec<String> = Vec::new();
    loop {
        let mut hits = app.store.search(&query).await?;
        let more = hits.len() > query.count;
        hits.truncate(query.count);
        for hit in &hits {
            let Some(team) = hit
                .version
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
            else {
                continue;
            };
            if matches!(
                team["status"].as_str(),
                Some("inactive" | "entered-in-error")
            ) {
                continue;
            }
            if let Some(id) = crate::scoring::reference_id(&team["subject"], "Patient") {
                if !patients.iter().any(|p| p == id) {
                    patients.push(id.to_owned());
                }
            }
        }
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
    patients.sort();
    Ok(patients)
}
