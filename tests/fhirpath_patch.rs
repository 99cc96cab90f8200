//! HL7's FHIRPath Patch test cases (fhir-test-cases `r4/patch/fhir-patch-tests.xml`, converted
//! to JSON by `scripts/convert_fhirpath_patch_tests.py` into `tests/fixtures/fhirpath-patch/`),
//! run against `signaal::fhir::fhirpath_patch`.

use serde_json::Value;
use signaal::fhir::fhirpath_patch::apply;
use signaal::fhir::json_patch::json_equal;

/// Cases not run, with the reason.
const SKIPPED: &[(&str, &str)] = &[];

#[test]
fn official_fhirpath_patch_cases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fhirpath-patch/cases.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 33, "the official file has 33 cases");
    let (mut passed, mut skipped, mut failures) = (0, 0, Vec::new());
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if let Some((_, why)) = SKIPPED.iter().find(|(n, _)| *n == name) {
            eprintln!("skipped '{name}': {why}");
            skipped += 1;
            continue;
        }
        let mut resource = case["input"].clone();
        let result = apply(&mut resource, &case["patch"]);
        match (&case.get("output"), &case.get("error"), result) {
            (Some(expected), _, Ok(())) if json_equal(&resource, expected) => passed += 1,
            (Some(expected), _, Ok(())) => {
                failures.push(format!("{name}: got {resource}\n   expected {expected}"))
            }
            (Some(_), _, Err(e)) => failures.push(format!("{name}: unexpected error {e}")),
            (None, Some(_), Err(_)) => passed += 1,
            (None, _, Ok(())) => {
                failures.push(format!("{name}: expected an error, got {resource}"))
            }
            (None, None, Err(e)) => failures.push(format!("{name}: no expectation; error {e}")),
        }
    }
    eprintln!(
        "FHIRPath Patch: {passed} passed, {skipped} skipped, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
