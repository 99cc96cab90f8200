//! Every official R4 SearchParameter expression must parse and evaluate on
//! every official example resource of its base type(s) — this is exactly what
//! the server does at write time to build search indexes — plus spot checks
//! that the extracted values are the right ones.
//!
//! Data: the HL7 package `hl7.fhir.r4.examples@4.0.1` (.tgz), from env
//! `FHIR_R4_PACKAGE` or `../shared/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz`
//! relative to the crate. Missing data skips the test unless
//! `SIGNAAL_REQUIRE_FIXTURES=1`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use signaal::fhirpath::{parse, Item};

struct Package {
    search_params: Vec<Value>,
    /// Example resources by resourceType (top-level files and Bundle entries).
    examples: BTreeMap<String, Vec<(String, Value)>>,
    /// Top-level files by file name (`Patient-example.json`).
    files: BTreeMap<String, Value>,
}

fn package_path() -> PathBuf {
    match std::env::var_os("FHIR_R4_PACKAGE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz"),
    }
}

fn load() -> Option<&'static Package> {
    static PKG: OnceLock<Option<Package>> = OnceLock::new();
    PKG.get_or_init(|| {
        let path = package_path();
        let Ok(file) = std::fs::File::open(&path) else {
            eprintln!(
                "FHIR R4 examples package not found at {}.\n\
                 Get it with `npm pack hl7.fhir.r4.examples@4.0.1` and point FHIR_R4_PACKAGE at the .tgz.",
                path.display()
            );
            if std::env::var("SIGNAAL_REQUIRE_FIXTURES").as_deref() == Ok("1") {
                panic!("SIGNAAL_REQUIRE_FIXTURES=1 but the FHIR R4 package is missing");
            }
            return None;
        };
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut pkg = Package {
            search_params: vec![],
            examples: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        for entry in archive.entries().expect("read tgz") {
            let mut entry = entry.expect("tar entry");
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            let Some(base) = name.strip_prefix("package/") else { continue };
            if !base.ends_with(".json") || base.contains('/') {
                continue;
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("utf-8 json");
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            let Some(rt) = v.get("resourceType").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            if rt == "SearchParameter" && v.get("expression").is_some() {
                pkg.search_params.push(v.clone());
            }
            if rt == "Bundle" {
                for e in v.get("entry").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(r) = e.get("resource") {
                        if let Some(t) = r.get("resourceType").and_then(Value::as_str) {
                            let label = format!("{base}#entry");
                            pkg.examples.entry(t.to_string()).or_default().push((label, r.clone()));
                        }
                    }
                }
            }
            pkg.examples.entry(rt).or_default().push((base.to_string(), v.clone()));
            pkg.files.insert(base.to_string(), v);
        }
        Some(pkg)
    })
    .as_ref()
}

fn eval<'a>(expr: &str, res: &'a Value) -> Vec<Item<'a>> {
    parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .evaluate(res)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn json_of(items: &[Item<'_>]) -> Vec<Value> {
    items
        .iter()
        .map(|i| i.as_json().expect("node").clone())
        .collect()
}

#[test]
fn every_official_search_expression_evaluates_on_every_example_of_its_base() {
    let Some(pkg) = load() else { return };
    assert!(
        pkg.search_params.len() > 1300,
        "expected ~1384 SearchParameters with an expression"
    );
    let mut failures = vec![];
    let (mut runs, mut non_empty) = (0usize, 0usize);
    for sp in &pkg.search_params {
        let id = sp["id"].as_str().unwrap_or("?");
        let src = sp["expression"].as_str().unwrap();
        let expr = match parse(src) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{id}: parse error {e}: {src}"));
                continue;
            }
        };
        for base in sp["base"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            for (file, res) in pkg.examples.get(base).into_iter().flatten() {
                runs += 1;
                match expr.evaluate(res) {
                    Ok(items) => non_empty += usize::from(!items.is_empty()),
                    Err(e) => failures.push(format!("{id} on {file}: {e}")),
                }
            }
        }
    }
    eprintln!(
        "{} expressions, {runs} evaluations, {non_empty} non-empty",
        pkg.search_params.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Guard against an evaluator that "passes" by returning nothing.
    assert!(
        non_empty * 3 > runs,
        "only {non_empty} of {runs} evaluations found values"
    );
}

#[test]
fn patient_identifier_yields_the_identifiers() {
    let Some(pkg) = load() else { return };
    let p = &pkg.files["Patient-example.json"];
    let got = json_of(&eval("Patient.identifier", p));
    assert_eq!(got, p["identifier"].as_array().unwrap().clone());
    assert!(
        eval("Observation.code", p).is_empty(),
        "type filter on another resource type"
    );
}

#[test]
fn subject_where_resolve_is_patient() {
    let Some(pkg) = load() else { return };
    let o = &pkg.files["Observation-example.json"];
    let got = json_of(&eval("Observation.subject.where(resolve() is Patient)", o));
    assert_eq!(got, vec![o["subject"].clone()]);
    assert!(eval("Observation.subject.where(resolve() is Group)", o).is_empty());
    // The compartment-style union over many resource types picks the right branch.
    let g = &pkg.files["Goal-example.json"];
    let union = "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | Goal.subject.where(resolve() is Patient) | Observation.subject.where(resolve() is Patient)";
    assert_eq!(json_of(&eval(union, g)), vec![g["subject"].clone()]);
}

#[test]
fn observation_value_as_quantity() {
    let Some(pkg) = load() else { return };
    let o = &pkg.files["Observation-example.json"];
    let got = eval("(Observation.value as Quantity)", o);
    assert_eq!(json_of(&got), vec![o["valueQuantity"].clone()]);
    assert_eq!(got[0].type_name(), Some("Quantity"));
    // The decimal keeps its original text.
    let v = eval("(Observation.value as Quantity).value", o);
    assert_eq!(
        v[0].as_json().unwrap().to_string(),
        o["valueQuantity"]["value"].to_string()
    );
    assert!(eval("(Observation.value as CodeableConcept)", o).is_empty());

    let bp = &pkg.files["Observation-blood-pressure.json"];
    let comps = eval("(Observation.component.value as Quantity)", bp);
    assert_eq!(comps.len(), 2);
    assert_eq!(
        json_of(&comps),
        bp["component"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["valueQuantity"].clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn choice_types_extensions_and_booleans_from_real_examples() {
    let Some(pkg) = load() else { return };
    // deceased[x]: `Patient.deceased.exists() and Patient.deceased != false`
    let deceased = "Patient.deceased.exists() and Patient.deceased != false";
    let alive = &pkg.files["Patient-example.json"];
    let got = eval(deceased, alive);
    assert!(matches!(got[..], [Item::Boolean(false)]), "{got:?}");
    let dead = pkg.examples["Patient"]
        .iter()
        .find(|(_, p)| {
            p.get("deceasedDateTime").is_some()
                || p.get("deceasedBoolean") == Some(&Value::Bool(true))
        })
        .map(|(_, p)| p)
        .expect("an example with deceased");
    assert!(matches!(eval(deceased, dead)[..], [Item::Boolean(true)]));

    // Condition.onset.as(dateTime)
    for (_, c) in &pkg.examples["Condition"] {
        let got = json_of(&eval(
            "Condition.onset.as(dateTime) | Condition.onset.as(Period)",
            c,
        ));
        let expect: Vec<Value> = ["onsetDateTime", "onsetPeriod"]
            .iter()
            .filter_map(|k| c.get(*k).cloned())
            .collect();
        assert_eq!(got, expect);
    }

    // extension('url') on a resource that has one.
    let with_ext = pkg.examples["Patient"]
        .iter()
        .find_map(|(_, p)| {
            let url = p.get("extension")?.get(0)?.get("url")?.as_str()?;
            Some((p, url))
        })
        .expect("a Patient with an extension");
    let got = eval(&format!("Patient.extension('{}')", with_ext.1), with_ext.0);
    assert_eq!(json_of(&got)[0], with_ext.0["extension"][0]);
    // `.value` after extension() finds value[x].
    if let Some(v) = got[0]
        .as_json()
        .unwrap()
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
    {
        let vals = eval(
            &format!("Patient.extension('{}').value", with_ext.1),
            with_ext.0,
        );
        assert_eq!(vals[0].as_json().unwrap(), v.1);
    }

    // telecom.where(system='email')
    let pr = &pkg.files["Practitioner-f001.json"];
    let emails = json_of(&eval("Practitioner.telecom.where(system='email')", pr));
    assert_eq!(emails.len(), 1);
    assert!(emails.iter().all(|t| t["system"] == "email"));
}
