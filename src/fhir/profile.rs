//! Enforcement of Signaal's own profiles (`profiles/StructureDefinition-signaal-*.json`) on
//! resources that claim them in `meta.profile`.
//!
//! The base R4 structure is the JSON Schema's job (`validate`); a profile only narrows it, and
//! Signaal's profiles use four kinds of constraint, all read from the StructureDefinition's
//! differential, so the file and the check cannot drift apart:
//! - `min` ≥ 1 on an element: it must be present;
//! - a required `binding`: each code (or one coding of each CodeableConcept) must be in the
//!   ValueSet, read from `profiles/valueset-*.json` (enumerated `compose.include` only);
//! - `type` of a choice element (`occurrence[x]` as dateTime) or a Reference's `targetProfile`
//!   (the resource type it may point at);
//! - extension slices: the extension with the slice's profile URL must occur `min`..`max` times.
//!
//! A resource that claims a profile the server does not know is not checked against it
//! (FHIR lets servers ignore unknown profiles).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde_json::Value;

use crate::error::Issue;

/// The profiles and ValueSets in `profiles/`, by canonical URL.
struct Definitions {
    profiles: HashMap<String, Value>,
    value_sets: HashMap<String, HashSet<(String, String)>>,
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| {
    let profile_files = [
        include_str!("../../profiles/StructureDefinition-signaal-flag.json"),
        include_str!("../../profiles/StructureDefinition-signaal-risk-assessment.json"),
        include_str!("../../profiles/StructureDefinition-signaal-domain-goal.json"),
        include_str!("../../profiles/StructureDefinition-signaal-action-plan.json"),
    ];
    let value_set_files = [
        include_str!("../../profiles/valueset-risk-model.json"),
        include_str!("../../profiles/valueset-flag-category.json"),
        include_str!("../../profiles/valueset-flag-reason.json"),
        include_str!("../../profiles/valueset-flag-status.json"),
        include_str!("../../profiles/valueset-qualitative-risk.json"),
        include_str!("../../profiles/valueset-charlson-category.json"),
        include_str!("../../profiles/valueset-goal-domain.json"),
    ];
    let parse = |text: &str| -> Value {
        serde_json::from_str(text).expect("the files in profiles/ are valid JSON")
    };
    let profiles = profile_files
        .iter()
        .map(|t| parse(t))
        .map(|p| (p["url"].as_str().unwrap_or_default().to_owned(), p))
        .collect();
    let value_sets = value_set_files
        .iter()
        .map(|t| parse(t))
        .map(|vs| {
            let mut codes = HashSet::new();
            for include in vs["compose"]["include"].as_array().into_iter().flatten() {
                let system = include["system"].as_str().unwrap_or_default();
                for c in include["concept"].as_array().into_iter().flatten() {
                    if let Some(code) = c["code"].as_str() {
                        codes.insert((system.to_owned(), code.to_owned()));
                    }
                }
            }
            (vs["url"].as_str().unwrap_or_default().to_owned(), codes)
        })
        .collect();
    Definitions {
        profiles,
        value_sets,
    }
});

/// The canonical URLs of the profiles enforced here.
pub fn known() -> impl Iterator<Item = &'static str> {
    DEFINITIONS.profiles.keys().map(String::as_str)
}

/// The resource type a known profile constrains.
pub fn profile_type(url: &str) -> Option<&'static str> {
    DEFINITIONS.profiles.get(url)?["type"].as_str()
}

/// The issues of `resource` against every known profile it claims in `meta.profile`.
pub fn check(resource: &Value, issues: &mut Vec<Issue>) {
    for claimed in resource["meta"]["profile"].as_array().into_iter().flatten() {
        let Some(profile) = claimed.as_str().and_then(|u| DEFINITIONS.profiles.get(u)) else {
            continue;
        };
        if profile["type"] != resource["resourceType"] {
            issues.push(
                Issue::error(
                    "invalid",
                    format!(
                        "The profile {} is for {}, not {}",
                        profile["url"].as_str().unwrap_or_default(),
                        profile["type"].as_str().unwrap_or_default(),
                        resource["resourceType"].as_str().unwrap_or_default()
                    ),
                )
                .at("meta.profile"),
            );
            continue;
        }
        for element in profile["differential"]["element"]
            .as_array()
            .into_iter()
            .flatten()
        {
            check_element(
                resource,
                element,
                profile["name"].as_str().unwrap_or(""),
                issues,
            );
        }
    }
}

fn check_element(resource: &Value, element: &Value, profile: &str, issues: &mut Vec<Issue>) {
    let path = element["path"].as_str().unwrap_or_default();
    let min = element["min"].as_u64().unwrap_or(0) as usize;
    if let Some(slice) = element["sliceName"].as_str() {
        let Some(url) = element["type"][0]["profile"][0].as_str() else {
            return;
        };
        let count = values(resource, path)
            .iter()
            .filter(|e| e["url"] == url)
            .count();
        let max = element["max"]
            .as_str()
            .and_then(|m| m.parse::<usize>().ok());
        if count < min || max.is_some_and(|max| count > max) {
            issues.push(
                Issue::error(
                    "required",
                    format!(
                        "{profile}: extension '{slice}' ({url}) must occur {min}..{} time(s), found {count}",
                        element["max"].as_str().unwrap_or("*")
                    ),
                )
                .at(path),
            );
        }
        return;
    }
    let (found, found_path) = match path.strip_suffix("[x]") {
        Some(prefix) => choice(resource, prefix, element, profile, issues),
        None => (values(resource, path), path.to_owned()),
    };
    let too_few = match path.strip_suffix("[x]") {
        Some(_) => found.len() < min,
        None => missing_in_a_parent(resource, path, min),
    };
    if too_few {
        issues.push(Issue::error("required", format!("{profile}: {path} is required")).at(path));
    }
    if let Some(url) = element["binding"]["valueSet"].as_str() {
        if element["binding"]["strength"] == "required" {
            if let Some(codes) = DEFINITIONS.value_sets.get(url) {
                for value in &found {
                    if !in_value_set(value, codes) {
                        issues.push(
                            Issue::error(
                                "code-invalid",
                                format!("{profile}: {found_path} must be a code from {url}"),
                            )
                            .at(found_path.clone()),
                        );
                    }
                }
            }
        }
    }
    let targets: Vec<&str> = element["type"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["targetProfile"].as_array().into_iter().flatten())
        .filter_map(|p| p.as_str()?.rsplit('/').next())
        .collect();
    if !targets.is_empty() {
        for value in &found {
            let reference = value["reference"].as_str().unwrap_or_default();
            // Bundle-local (`urn:`) and contained (`#`) references are resolved elsewhere.
            if reference.starts_with("urn:") || reference.starts_with('#') {
                continue;
            }
            let target = Some(reference)
                .filter(|r| !r.is_empty())
                .and_then(|r| r.rsplit('/').nth(1));
            if !target.is_some_and(|t| targets.contains(&t)) {
                issues.push(
                    Issue::error(
                        "invalid",
                        format!(
                            "{profile}: {path} must reference a {}",
                            targets.join(" or ")
                        ),
                    )
                    .at(path),
                );
            }
        }
    }
}

/// The values of a choice element `prefix[x]`, checking that only the profile's types occur.
fn choice(
    resource: &Value,
    prefix: &str,
    element: &Value,
    profile: &str,
    issues: &mut Vec<Issue>,
) -> (Vec<Value>, String) {
    let (parent, name) = prefix.rsplit_once('.').unwrap_or(("", prefix));
    let allowed: Vec<String> = element["type"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["code"].as_str())
        .map(|code| {
            let mut chars = code.chars();
            let first = chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .unwrap_or_default();
            format!("{name}{first}{}", chars.as_str())
        })
        .collect();
    let mut found = Vec::new();
    let mut found_path = format!("{prefix}[x]");
    for holder in values(resource, parent) {
        for (key, value) in holder.as_object().into_iter().flatten() {
            let is_choice = key
                .strip_prefix(name)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| c.is_ascii_uppercase());
            if !is_choice {
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(key) {
                issues.push(
                    Issue::error(
                        "invalid",
                        format!(
                            "{profile}: {prefix}[x] must be one of {}",
                            allowed.join(", ")
                        ),
                    )
                    .at(format!("{parent}.{key}")),
                );
            }
            found_path = format!("{parent}.{key}");
            found.push(value.clone());
        }
    }
    (found, found_path)
}

/// Whether some occurrence of `path`'s parent holds fewer than `min` of it: a `min` applies
/// within each parent (every `CarePlan.activity.detail` needs its own `description`), and a
/// parent that is absent asks nothing of its children.
fn missing_in_a_parent(resource: &Value, path: &str, min: usize) -> bool {
    if min == 0 {
        return false;
    }
    let Some((parent, name)) = path.rsplit_once('.') else {
        return false;
    };
    values(resource, parent).iter().any(|holder| {
        let count = match &holder[name] {
            Value::Null => 0,
            Value::Array(items) => items.len(),
            _ => 1,
        };
        count < min
    })
}

/// The values at a dotted element path (`Flag.period.start`), arrays flattened; the first
/// segment is the resource type.
fn values(resource: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![resource.clone()];
    for segment in path.split('.').skip(1) {
        current = current
            .iter()
            .flat_map(|v| match &v[segment] {
                Value::Null => Vec::new(),
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            })
            .collect();
    }
    current
}

fn in_value_set(value: &Value, codes: &HashSet<(String, String)>) -> bool {
    match value {
        Value::String(code) => codes.iter().any(|(_, c)| c == code),
        Value::Object(_) => value["coding"].as_array().into_iter().flatten().any(|c| {
            match (c["system"].as_str(), c["code"].as_str()) {
                (Some(s), Some(code)) => codes.contains(&(s.to_owned(), code.to_owned())),
                _ => false,
            }
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FLAG: &str = "https://signaal.dev/fhir/StructureDefinition/signaal-flag";
    const CS: &str = "https://signaal.dev/fhir/CodeSystem/signaal";

    fn flag() -> Value {
        json!({"resourceType": "Flag", "meta": {"profile": [FLAG]},
            "extension": [
                {"url": "https://signaal.dev/fhir/StructureDefinition/flag-priority", "valueInteger": 80},
                {"url": "https://signaal.dev/fhir/StructureDefinition/flag-risk-assessment", "valueReference": {"reference": "RiskAssessment/r"}}
            ],
            "status": "active",
            "category": [{"coding": [{"system": CS, "code": "home-measurement"}]}],
            "code": {"coding": [{"system": CS, "code": "weight-gain"}]},
            "subject": {"reference": "Patient/p"},
            "period": {"start": "2024-03-01T10:00:00Z"}})
    }

    fn issues(resource: &Value) -> Vec<String> {
        let mut out = Vec::new();
        check(resource, &mut out);
        out.iter()
            .map(|i| i.to_json()["diagnostics"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_conforming_flag_passes() {
        assert_eq!(issues(&flag()), Vec::<String>::new());
    }

    #[test]
    fn required_elements_bindings_targets_and_extensions_are_enforced() {
        let mut f = flag();
        f["code"]["coding"][0]["code"] = json!("bored");
        f["subject"] = json!({"reference": "Group/g"});
        f.as_object_mut().unwrap().remove("period");
        f["extension"].as_array_mut().unwrap().remove(0);
        let found = issues(&f);
        // The missing period is one issue: its start is asked of a period that is there.
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found.iter().any(|i| i.contains("Flag.code must be a code")));
        assert!(found
            .iter()
            .any(|i| i.contains("Flag.subject must reference a Patient")));
        assert!(found.iter().any(|i| i.contains("Flag.period is required")));
        assert!(found.iter().any(|i| i.contains("extension 'priority'")));
        f["period"] = json!({"end": "2024-03-02"});
        assert!(issues(&f)
            .iter()
            .any(|i| i.contains("Flag.period.start is required")));
    }

    #[test]
    fn a_nested_min_holds_in_every_occurrence_of_its_parent() {
        let plan = |second: Value| {
            json!({"resourceType": "CarePlan",
                "meta": {"profile": ["https://signaal.dev/fhir/StructureDefinition/signaal-action-plan"]},
                "status": "active", "intent": "plan", "subject": {"reference": "Patient/p"},
                "goal": [{"reference": "Goal/g"}],
                "activity": [{"detail": {"status": "scheduled", "description": "Walk daily"}},
                             second]})
        };
        let described = json!({"detail": {"status": "scheduled", "description": "Call my son"}});
        assert_eq!(issues(&plan(described)), Vec::<String>::new());
        let found = issues(&plan(json!({"detail": {"status": "scheduled"}})));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("CarePlan.activity.detail.description is required"));
        // Who does it and when are optional.
        let found = issues(&plan(
            json!({"reference": {"reference": "ServiceRequest/s"}}),
        ));
        assert!(
            found[0].contains("CarePlan.activity.detail is required"),
            "{found:#?}"
        );
    }

    #[test]
    fn resources_that_do_not_claim_the_profile_are_not_checked() {
        let mut f = flag();
        f.as_object_mut().unwrap().remove("meta");
        f.as_object_mut().unwrap().remove("period");
        assert!(issues(&f).is_empty());
    }

    #[test]
    fn choice_types_are_restricted() {
        let ra = json!({"resourceType": "RiskAssessment",
            "meta": {"profile": ["https://signaal.dev/fhir/StructureDefinition/signaal-risk-assessment"]},
            "extension": [{"url": "https://signaal.dev/fhir/StructureDefinition/risk-score", "valueDecimal": 3}],
            "status": "final",
            "method": {"coding": [{"system": CS, "code": "lace"}]},
            "subject": {"reference": "Patient/p"},
            "occurrencePeriod": {"start": "2024-03-01"},
            "prediction": [{"qualitativeRisk": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/risk-probability", "code": "low"}]}}]});
        let found = issues(&ra);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("occurrenceDateTime"));
    }
}
