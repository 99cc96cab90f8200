//! HL7's validator test cases (fhir-test-cases, `validator/manifest.json`): the R4 cases that
//! need no IG package, validated by Signaal's engine and compared with the Java reference
//! validator's expected outcome — whether there is an error, and how many errors. Wording
//! differs between validators and is not compared.
//!
//! Run: the JSON and XML cases (each read as the server reads a body in that format; a parse
//! error counts as the errors it reports, a document without `resourceType` as one error), with
//! their `supporting`/`profiles` resources loaded first; a case with a
//! `profile` is run a second time against that profile, with its own expected outcome. Cases
//! marked `use-test: false`, and those whose expected outcome is missing, are skipped.
//!
//! The test prints the agreement and fails when error presence agrees on fewer than
//! [`MIN_PRESENCE_AGREEMENT`] of the cases run.
//!
//! Data: env `FHIR_VALIDATOR_TESTS` or `../shared/fhir-test-cases/validator`; the public source
//! is the `validator/` folder of <https://github.com/FHIR/fhir-test-cases> (Apache-2.0; clone
//! it and point `FHIR_VALIDATOR_TESTS` at `fhir-test-cases/validator`). Missing data skips the
//! test unless `SIGNAAL_REQUIRE_FIXTURES=1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use signaal::validation::{Definitions, Settings, Validator};

/// The share of cases whose error presence must agree with the reference validator's: the
/// agreement measured, so a regression fails. 64.5% of 473 runs before the rules of decision
/// 0043 (QuestionnaireResponse against its Questionnaire, Bundle fullUrls, reference target
/// types, Attachment sizes, extension urls, slicing of nested resources, que-7/que-12 as R4B
/// corrected them); 77.6% after; 81.4% after decision 0047's (references resolved in Bundles
/// and documents, absolute-URI elements, value limits, nested resources' profiles,
/// differentials without ids, URNs, CapabilityStatement search parameter types); 85.3% of 483
/// after decision 0048's (extension contexts, modifier placement, canonical targets,
/// Coding.system, CodeSystem and SearchParameter.derivedFrom rules, renamed choice elements
/// and content references in snapshots); 85.9% after decision 0052's (reference targets
/// checked against their profiles, the case files served as the server's resources). Issue 18
/// aims at 90%. The disagreements left are
/// listed by class in docs/validation.md: display names (not checked, decision 0048), checks
/// that need what the server does not have, unknown extensions (by design), R5 features, and
/// the Java validator's policies, each with R4's words.
const MIN_PRESENCE_AGREEMENT: f64 = 0.85;

fn data_dir() -> PathBuf {
    match std::env::var_os("FHIR_VALIDATOR_TESTS") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-test-cases/validator")
        }
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A supporting resource or profile, in JSON or (read as the server reads an XML body) XML.
fn read_resource(path: &Path) -> Option<Value> {
    if path.extension().is_some_and(|e| e == "xml") {
        let bytes = std::fs::read(path).ok()?;
        return signaal::fhir::xml::read::parse(&bytes).ok();
    }
    read_json(path)
}

/// The expected outcome: a file under `outcomes/`, or the outcome inline.
fn expected(dir: &Path, java: &Value) -> Option<Value> {
    match java {
        Value::String(file) => read_json(&dir.join("outcomes").join(file)),
        Value::Object(o) => o.get("outcome").cloned(),
        _ => None,
    }
}

fn error_count(outcome: &Value) -> usize {
    java_errors(outcome).len()
}

/// The reference validator's error messages (`details.text`).
fn java_errors(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")))
        .map(|i| {
            i["details"]["text"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect()
        })
        .collect()
}

struct Run {
    name: String,
    xml: bool,
    expected: usize,
    found: usize,
    messages: Vec<String>,
    /// The reference validator's first error, to read the cause of a disagreement.
    java_first: Option<String>,
}

/// Validates the file of a case (against `profile`, if any) and counts the errors.
fn run(
    dir: &Path,
    validator: &Validator,
    file: &str,
    profile: Option<String>,
) -> Option<(usize, Vec<String>)> {
    let bytes = std::fs::read(dir.join(file)).ok()?;
    // As the server reads a body: FHIR XML or FHIR JSON.
    let parsed = if file.ends_with(".xml") {
        signaal::fhir::xml::read::parse(&bytes)
    } else {
        signaal::fhir::json_format::parse(&bytes)
    };
    let resource = match parsed {
        Ok(r) => r,
        Err(e) => {
            let issues = e.issues();
            let n = issues
                .iter()
                .filter(|i| i.severity == "error")
                .count()
                .max(1);
            return Some((n, issues.into_iter().map(|i| i.diagnostics).collect()));
        }
    };
    // A document without a resource type is no FHIR resource: the server refuses it.
    let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
        return Some((
            1,
            vec!["The content has no resourceType: it is not a FHIR resource".into()],
        ));
    };
    let rtype = rtype.to_owned();
    let profiles: Vec<String> = profile.into_iter().collect();
    let mut out = validator.validate(&resource, &rtype, &profiles);
    check_targets(dir, validator, &mut out);
    // VALIDATOR_SUITE_SHOW=name: every issue of the cases whose file contains `name`.
    if std::env::var("VALIDATOR_SUITE_SHOW").is_ok_and(|s| !s.is_empty() && file.contains(&s)) {
        for i in &out.issues {
            eprintln!(
                "SHOW {file}: {} {} @ {}",
                i.severity,
                i.diagnostics,
                i.expression.clone().unwrap_or_default()
            );
        }
    }
    let errors: Vec<String> = out
        .issues
        .iter()
        .filter(|i| matches!(i.severity, "error" | "fatal"))
        .map(|i| {
            format!(
                "{} @ {}",
                i.diagnostics,
                i.expression.clone().unwrap_or_default()
            )
        })
        .collect();
    Some((errors.len(), errors))
}

/// The targets of references whose elements name profiles, as the reference validator's test
/// runner fetches them: `Type/id` is the case file `id.xml` or `id.json` next to the case when
/// it holds a `Type` (as a server holding those resources would find them; decision 0052).
/// Anything else is not checked.
fn check_targets(dir: &Path, validator: &Validator, out: &mut signaal::validation::Outcome) {
    use signaal::validation::target_profile::Target;
    let checks = std::mem::take(&mut out.targets);
    let mut found = std::collections::HashMap::new();
    for c in &checks {
        let Some((t, id)) = c
            .reference
            .split_once('/')
            .filter(|(_, id)| !id.contains('/'))
        else {
            continue;
        };
        let file = ["xml", "json"]
            .iter()
            .filter_map(|ext| read_resource(&dir.join(format!("{id}.{ext}"))))
            .find(|r| r["resourceType"] == t);
        if let Some(resource) = file {
            found.insert(c.reference.clone(), resource);
        }
    }
    validator.check_targets(
        &checks,
        &|c| match found.get(&c.reference) {
            Some(resource) => Target::Found(resource),
            None => Target::NotChecked("not among the case's files".into()),
        },
        out,
    );
}

#[test]
fn validator_test_cases_agree_with_the_reference_validator() {
    let dir = data_dir();
    let Some(manifest) = read_json(&dir.join("manifest.json")) else {
        assert_ne!(
            std::env::var("SIGNAAL_REQUIRE_FIXTURES").as_deref(),
            Ok("1"),
            "SIGNAAL_REQUIRE_FIXTURES=1 but the validator test cases are missing"
        );
        eprintln!(
            "validator test cases not found at {}: skipped",
            dir.display()
        );
        return;
    };
    let core = Definitions::built_in();
    let mut runs: Vec<Run> = Vec::new();
    let mut skipped = std::collections::BTreeMap::<&str, usize>::new();
    for case in manifest["test-cases"].as_array().into_iter().flatten() {
        if case["version"] != "4.0" || case.get("packages").is_some() {
            continue;
        }
        let name = case["name"].as_str().unwrap_or("?").to_owned();
        let file = case["file"].as_str().unwrap_or("");
        if case["use-test"] == false {
            *skipped.entry("use-test false").or_default() += 1;
            continue;
        }
        // Supporting resources and profiles.
        let mut support = Vec::new();
        let mut unreadable = false;
        // As the reference validator's test runner: the base run knows `supporting` and
        // `profiles`; the profile run also `profile.supporting` and the profile itself.
        for list in [&case["supporting"], &case["profiles"]] {
            for f in list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                match read_resource(&dir.join(f)) {
                    Some(r) => support.push(r),
                    None => unreadable = true,
                }
            }
        }
        let mut profile_support = support.clone();
        for f in case["profile"]["supporting"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match read_resource(&dir.join(f)) {
                Some(r) => profile_support.push(r),
                None => unreadable = true,
            }
        }
        let profile_source = case["profile"]["source"].as_str();
        if let Some(source) = profile_source {
            match read_resource(&dir.join(source)) {
                Some(r) => profile_support.push(r),
                None => unreadable = true,
            }
        }
        if unreadable {
            *skipped.entry("supporting file unreadable").or_default() += 1;
            continue;
        }
        let with = |support: &Vec<Value>| {
            if support.is_empty() {
                Ok(core.clone())
            } else {
                core.extend(support.clone()).map(Arc::new)
            }
        };
        let (defs, profile_defs) = match (with(&support), with(&profile_support)) {
            (Ok(d), Ok(p)) => (d, p),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{name}: supporting definitions refused: {e}");
                *skipped
                    .entry("supporting definition not usable")
                    .or_default() += 1;
                continue;
            }
        };
        let validator = Validator::with_definitions(defs, Settings::default());
        let Some(expected_base) = expected(&dir, &case["java"]) else {
            *skipped.entry("no expected outcome").or_default() += 1;
            continue;
        };
        if let Some((found, messages)) = run(&dir, &validator, file, None) {
            runs.push(Run {
                name: name.clone(),
                xml: file.ends_with(".xml"),
                expected: error_count(&expected_base),
                found,
                messages,
                java_first: java_errors(&expected_base).into_iter().next(),
            });
        }
        if let (Some(source), Some(expected_profile)) =
            (profile_source, expected(&dir, &case["profile"]["java"]))
        {
            let url = profile_support
                .iter()
                .find(|r| {
                    r["resourceType"] == "StructureDefinition"
                        && read_resource(&dir.join(source)).as_ref() == Some(*r)
                })
                .and_then(|r| r["url"].as_str())
                .map(str::to_owned);
            let validator = Validator::with_definitions(profile_defs, Settings::default());
            if let Some((found, messages)) = run(&dir, &validator, file, url) {
                runs.push(Run {
                    name: format!("{name} (profile)"),
                    xml: file.ends_with(".xml"),
                    expected: error_count(&expected_profile),
                    found,
                    messages,
                    java_first: java_errors(&expected_profile).into_iter().next(),
                });
            }
        }
    }
    let total = runs.len();
    let presence = runs
        .iter()
        .filter(|r| (r.expected > 0) == (r.found > 0))
        .count();
    let count = runs.iter().filter(|r| r.expected == r.found).count();
    // The disagreements, grouped by direction, each with the first error of the side that
    // reports one (docs/validation.md sorts them into classes).
    for (title, missed) in [
        (
            "errors the reference validator reports and Signaal does not",
            true,
        ),
        (
            "errors Signaal reports and the reference validator does not",
            false,
        ),
    ] {
        let of: Vec<&Run> = runs
            .iter()
            .filter(|r| (r.expected > 0) != (r.found > 0) && (r.expected > 0) == missed)
            .collect();
        eprintln!("DISAGREE — {title}: {}", of.len());
        for r in of {
            let why = if missed {
                r.java_first.clone().unwrap_or_default()
            } else {
                r.messages.first().cloned().unwrap_or_default()
            };
            eprintln!(
                "DISAGREE {}: expected {} errors, found {}: {why}",
                r.name, r.expected, r.found
            );
        }
    }
    let share = presence as f64 / total.max(1) as f64;
    for (format, xml) in [("JSON", false), ("XML", true)] {
        let of: Vec<&Run> = runs.iter().filter(|r| r.xml == xml).collect();
        let agree = of
            .iter()
            .filter(|r| (r.expected > 0) == (r.found > 0))
            .count();
        eprintln!(
            "  {format} cases: {} runs, error presence agrees on {agree} ({:.1}%)",
            of.len(),
            agree as f64 * 100.0 / of.len().max(1) as f64
        );
    }
    eprintln!(
        "validator suite: {total} runs; error presence agrees on {presence} ({:.1}%), error count on {count} ({:.1}%); skipped {skipped:?}",
        share * 100.0,
        count as f64 * 100.0 / total.max(1) as f64
    );
    assert!(total > 100, "only {total} cases ran");
    assert!(
        share >= MIN_PRESENCE_AGREEMENT,
        "error presence agrees on {:.1}% of the cases, below {:.0}%",
        share * 100.0,
        MIN_PRESENCE_AGREEMENT * 100.0
    );
}
