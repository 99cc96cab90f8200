//! Validation of every resource the server is asked to store.
//!
//! Structure comes from a JSON Schema generated from the official R4 4.0.1 StructureDefinitions
//! (`profiles/fhir-r4.schema.json`, made by `scripts/generate_definitions.py`): element names,
//! types, cardinality, choice types, primitive regexes, `_element` siblings and required bindings
//! to small code lists. Schemas are compiled once per resource type, on first use.
//!
//! A resource nested in another (`contained`, `Bundle.entry.resource`, `Parameters`) is only
//! checked for a known `resourceType` by the outer schema and validated here against its own
//! type's schema, which keeps each compiled schema small. On top of the schema come the rules a
//! schema cannot say: contained resources (dom-2, dom-4 and local references) and the shape of
//! literal references. A resource that claims one of Signaal's profiles in `meta.profile` is then
//! checked against it (`profile`).

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, OnceLock};

use serde_json::Value;

use crate::error::{FhirError, Issue};
use crate::fhir::{datetime, id, resource_types};

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../profiles/fhir-r4.schema.json"))
        .expect("profiles/fhir-r4.schema.json is valid JSON")
});

/// The generated R4 JSON Schema (`profiles/fhir-r4.schema.json`), for code that needs to know
/// an element's type or whether it repeats (FHIRPath Patch).
pub fn schema() -> &'static Value {
    &SCHEMA
}

static VALIDATORS: LazyLock<HashMap<&'static str, OnceLock<jsonschema::Validator>>> =
    LazyLock::new(|| {
        resource_types::all()
            .iter()
            .map(|t| (t.as_str(), OnceLock::new()))
            .collect()
    });

/// At most this many issues are reported for one request body (the JSON format rules, then the
/// schema and the rules below): enough to fix it, bounded for adversarial input. When there are
/// more, the OperationOutcome ends with [`stopped_issue`].
pub const MAX_ISSUES: usize = 50;

/// An invalid resource with more JSON values than this (objects, arrays and primitives; a typical
/// resource has a few hundred) is reported with its first schema error only: collecting every
/// error of a document with a million bad codings would hold a million errors in memory (the
/// schema crate gathers them all before it hands out the first).
pub const MAX_NODES_FULLY_REPORTED: usize = 10_000;

/// The name of the schema format that checks a date/dateTime/instant names a calendar day.
const CALENDAR_FORMAT: &str = "fhir-calendar-date";

/// Longest diagnostics text taken from a schema error (whose message may quote the value).
const MAX_DIAGNOSTICS: usize = 500;

/// The last issue of an OperationOutcome that does not list every problem.
pub fn stopped_issue() -> Issue {
    Issue {
        severity: "information",
        code: "too-costly",
        diagnostics: format!(
            "Validation stopped after {MAX_ISSUES} issues; the resource may have more"
        ),
        expression: None,
    }
}

fn validator(rtype: &str) -> Option<&'static jsonschema::Validator> {
    let cell = VALIDATORS.get(rtype)?;
    Some(cell.get_or_init(|| {
        let schema = schema_for(rtype);
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .with_format(CALENDAR_FORMAT, datetime::is_calendar_date)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("the generated schema of {rtype} does not compile: {e}"))
    }))
}

/// The schema of one resource type: its definition and those it reaches through `$ref`, so
/// each compiled validator holds only what it needs.
fn schema_for(rtype: &str) -> Value {
    let all = &SCHEMA["definitions"];
    let mut reached = serde_json::Map::new();
    let mut pending = vec![rtype.to_owned()];
    while let Some(name) = pending.pop() {
        if reached.contains_key(&name) {
            continue;
        }
        let Some(definition) = all.get(&name) else {
            continue;
        };
        collect_refs(definition, &mut pending);
        let mut definition = definition.clone();
        // The regexes of date, dateTime and instant allow day 31 of every month; the format
        // checks the day exists.
        if matches!(name.as_str(), "date" | "dateTime" | "instant") {
            if let Some(object) = definition.as_object_mut() {
                object.insert("format".into(), CALENDAR_FORMAT.into());
            }
        }
        reached.insert(name, definition);
    }
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$ref": format!("#/definitions/{rtype}"),
        "definitions": reached,
    })
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(r)) = object.get("$ref") {
                if let Some(name) = r.strip_prefix("#/definitions/") {
                    out.push(name.to_owned());
                }
            }
            object.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Compiles the schemas of all resource types now rather than on first use, stopping early
/// when `keep_going` says so (the server is shutting down).
pub fn warm_up(keep_going: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    for rtype in resource_types::all() {
        if !keep_going() {
            tracing::info!("validation warm-up stopped: the server is shutting down");
            return;
        }
        validator(rtype);
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "validation schemas compiled"
    );
}

/// Validates a resource the client sent for `expected_type`.
pub fn validate(resource: &Value, expected_type: &str) -> Result<(), FhirError> {
    let Some(object) = resource.as_object() else {
        return Err(FhirError::invalid_at(
            "structure",
            "The body must be a JSON object (a FHIR resource)",
            expected_type,
        ));
    };
    match object.get("resourceType") {
        Some(Value::String(t)) if t == expected_type => {}
        Some(Value::String(t)) => {
            return Err(FhirError::invalid_at(
                "invalid",
                format!("The resource is a {t}, but the request is for {expected_type}"),
                "resourceType",
            ))
        }
        _ => {
            return Err(FhirError::invalid_at(
                "structure",
                "The resource has no resourceType string",
                "resourceType",
            ))
        }
    }
    let mut issues = Vec::new();
    check_resource(resource, expected_type, expected_type, false, &mut issues);
    if issues.is_empty() {
        // Signaal's profiles narrow a structurally valid resource that claims them: breaking
        // only them is a 422, as any profile's (decision 0054).
        crate::fhir::profile::check(resource, &mut issues);
        if !issues.is_empty() {
            if issues.len() > MAX_ISSUES {
                issues.truncate(MAX_ISSUES);
                issues.push(stopped_issue());
            }
            return Err(FhirError::Unprocessable(issues));
        }
        return Ok(());
    }
    // Collectors stop once they hold one issue more than the limit: then there are more.
    if issues.len() > MAX_ISSUES {
        issues.truncate(MAX_ISSUES);
        issues.push(stopped_issue());
    }
    Err(FhirError::Invalid(issues))
}

/// Whether the issues collected so far are enough (one over the limit says "there are more").
fn full(issues: &[Issue]) -> bool {
    issues.len() > MAX_ISSUES
}

/// Schema, nested resources, contained rules and references of one resource at `path`.
/// A contained resource's local references point into its container, which checks them.
fn check_resource(
    resource: &Value,
    rtype: &str,
    path: &str,
    contained: bool,
    issues: &mut Vec<Issue>,
) {
    let Some(schema) = validator(rtype) else {
        issues.push(Issue::error("invalid", format!("Unknown resource type '{rtype}'")).at(path));
        return;
    };
    if full(issues) {
        return;
    }
    // Most resources are valid: `is_valid` stops at the first error and builds none.
    if !schema.is_valid(resource) {
        if count_nodes(resource, MAX_NODES_FULLY_REPORTED) <= MAX_NODES_FULLY_REPORTED {
            for error in schema.iter_errors(resource) {
                if full(issues) {
                    break;
                }
                schema_issues(&error, path, issues);
            }
        } else {
            if let Err(error) = schema.validate(resource) {
                schema_issues(&error, path, issues);
            }
            issues.push(Issue {
                severity: "information",
                code: "too-costly",
                diagnostics: format!(
                    "The resource has more than {MAX_NODES_FULLY_REPORTED} JSON values: only its \
                     first schema error is reported"
                ),
                expression: Some(path.to_owned()),
            });
        }
    }
    if full(issues) {
        return;
    }
    if !contained {
        check_contained(resource, path, issues);
    }
    let mut nested = Vec::new();
    find_nested(resource, path, None, &mut nested, issues);
    for (child, child_path) in nested {
        if full(issues) {
            return;
        }
        if let Some(Value::String(child_type)) = child.get("resourceType") {
            let is_contained = child_path
                .rsplit_once('.')
                .is_some_and(|(_, last)| last.starts_with("contained["));
            check_resource(child, child_type, &child_path, is_contained, issues);
        }
    }
}

/// The issues of one schema error, located at the element at fault. Two kinds of error are
/// reported by the schema on the object that holds the element, so they are rephrased here to
/// name the element itself: an unknown element (`additionalProperties`) and more than one
/// choice of a `value[x]` (`oneOf` with several branches valid), whose default message would
/// also echo the whole object back to the client.
fn schema_issues(error: &jsonschema::ValidationError<'_>, path: &str, issues: &mut Vec<Issue>) {
    let at = expression(path, error.instance_path().as_str());
    match error.kind() {
        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
            for name in unexpected {
                issues.push(
                    Issue::error("structure", format!("Unknown element '{name}'"))
                        .at(format!("{at}.{name}")),
                );
            }
        }
        jsonschema::error::ValidationErrorKind::OneOfMultipleValid { .. } => {
            let present = choices_present(error.schema_path().as_str(), error.instance());
            let message = if present.is_empty() {
                "More than one choice of a choice element is present".to_owned()
            } else {
                format!(
                    "Only one of these may be present, they are choices of one element: {}",
                    present.join(", ")
                )
            };
            let mut issue = Issue::error("structure", message);
            issue.expression = Some(match present.first() {
                Some(first) => format!("{at}.{first}"),
                None => at,
            });
            issues.push(issue);
        }
        jsonschema::error::ValidationErrorKind::Format { format } if format == CALENDAR_FORMAT => {
            let value = error.instance().as_str().unwrap_or_default();
            issues.push(
                Issue::error(
                    "value",
                    format!("'{value}' is not a day of the calendar (the month has no such day)"),
                )
                .at(at),
            );
        }
        _ => issues.push(Issue::error("structure", bounded_message(error)).at(at)),
    }
}

/// A schema error's message, cut at [`MAX_DIAGNOSTICS`] bytes: it may quote the value at fault,
/// which can be most of the document. Formatting stops there rather than writing it all first.
fn bounded_message(error: &jsonschema::ValidationError<'_>) -> String {
    struct Bounded(String);
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = MAX_DIAGNOSTICS.saturating_sub(self.0.len());
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            Err(std::fmt::Error)
        }
    }
    let mut out = Bounded(String::new());
    if std::fmt::write(&mut out, format_args!("{error}")).is_err() {
        out.0.push('…');
    }
    out.0
}

/// The number of JSON values in `value`, counting no further than just past `limit`.
fn count_nodes(value: &Value, limit: usize) -> usize {
    fn count(value: &Value, limit: usize, seen: &mut usize) {
        *seen += 1;
        if *seen > limit {
            return;
        }
        match value {
            Value::Object(object) => object.values().for_each(|v| count(v, limit, seen)),
            Value::Array(items) => items.iter().for_each(|v| count(v, limit, seen)),
            _ => {}
        }
    }
    let mut seen = 0;
    count(value, limit, &mut seen);
    seen
}

/// The element names of a choice (`oneOf` of `required` branches, at `schema_path` in the
/// generated schema) that `instance` has, without the `_` of primitive extensions.
fn choices_present(schema_path: &str, instance: &Value) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(branches) = SCHEMA.pointer(schema_path) {
        collect_required(branches, &mut names);
    }
    let mut present: Vec<String> = names
        .into_iter()
        .filter(|n| instance.get(n).is_some())
        .map(|n| n.trim_start_matches('_').to_owned())
        .collect();
    present.dedup();
    present
}

fn collect_required(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(required)) = object.get("required") {
                out.extend(required.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            // The last branch ("none of them") repeats every name under `not`.
            object
                .iter()
                .filter(|(k, _)| k.as_str() != "not")
                .for_each(|(_, v)| collect_required(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_required(v, out)),
        _ => {}
    }
}

/// Turns a JSON pointer (`/name/0/given`) into a FHIRPath-like location (`Patient.name[0].given`).
fn expression(base: &str, pointer: &str) -> String {
    let mut out = base.to_owned();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
        } else {
            out.push('.');
            out.push_str(&segment);
        }
    }
    out
}

/// The elements whose type is `Resource` in R4: `DomainResource.contained`,
/// `Bundle.entry.resource`, `Bundle.entry.response.outcome` and `Parameters.parameter.resource`.
/// Only there is an object with a `resourceType` a nested resource: elsewhere `resourceType`
/// can be an ordinary element (`ExampleScenario.instance.resourceType` is a code), and such an
/// object must not be validated as a resource of that type.
const RESOURCE_ELEMENTS: [&str; 3] = ["contained", "resource", "outcome"];

/// Whether `value`, the value (or an item of the value) of element `element`, is a resource.
fn is_nested_resource(element: &str, value: &Value) -> bool {
    RESOURCE_ELEMENTS.contains(&element) && value.get("resourceType").is_some()
}

/// Collects resources nested in `value` (not descending into them: each checks its own), and
/// checks literal references on the way. `element` is the name of the element `value` is (an
/// item of), `None` for the resource being checked.
fn find_nested<'a>(
    value: &'a Value,
    path: &str,
    element: Option<&str>,
    nested: &mut Vec<(&'a Value, String)>,
    issues: &mut Vec<Issue>,
) {
    match value {
        Value::Object(object) => {
            if element.is_some_and(|element| is_nested_resource(element, value)) {
                nested.push((value, path.to_owned()));
                return;
            }
            if let Some(Value::String(reference)) = object.get("reference") {
                if let Err(message) = check_reference(reference) {
                    if full(issues) {
                        return;
                    }
                    issues.push(Issue::error("value", message).at(format!("{path}.reference")));
                }
            }
            // A primitive holds no resource and no reference: its path is not made.
            for (key, child) in object.iter().filter(|(_, child)| is_structured(child)) {
                find_nested(child, &format!("{path}.{key}"), Some(key), nested, issues);
            }
        }
        Value::Array(items) => {
            for (i, item) in items
                .iter()
                .enumerate()
                .filter(|(_, item)| is_structured(item))
            {
                find_nested(item, &format!("{path}[{i}]"), element, nested, issues);
            }
        }
        _ => {}
    }
}

/// Whether `value` is an object or an array (what [`find_nested`] looks into).
fn is_structured(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

/// A literal reference is absolute (`scheme:…`), local (`#id`), or relative `Type/id` with an
/// optional `/_history/vid`, where `Type` is a resource type and `id` a valid id.
fn check_reference(reference: &str) -> Result<(), String> {
    if reference.starts_with('#')
        || (has_scheme(reference) && !reference.contains(char::is_whitespace))
    {
        return Ok(());
    }
    let segments: Vec<&str> = reference.split('/').collect();
    let ok = match segments.as_slice() {
        [t, i] => resource_types::is_resource_type(t) && id::is_valid(i),
        [t, i, "_history", v] => {
            resource_types::is_resource_type(t) && id::is_valid(i) && id::is_valid(v)
        }
        // Conditional references (`Patient?identifier=…`) are resolved by transactions.
        _ => reference.contains('?'),
    };
    if ok || (segments.len() == 1 && reference.contains('?')) {
        Ok(())
    } else {
        Err(format!(
            "'{reference}' is not a valid reference: expected Type/id, Type/id/_history/vid, \
             an absolute URL or #id of a contained resource"
        ))
    }
}

/// Whether `reference` starts with a URI scheme and `:` (RFC 3986: a letter, then letters,
/// digits, `+`, `-`, `.`): an absolute URL, which (unlike `ht sdtps://…`) has no whitespace.
fn has_scheme(reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// dom-2 (no nested `contained`), dom-4 (no `meta.versionId`/`lastUpdated`), contained
/// resources have ids, and every local reference `#id` points at one of them.
fn check_contained(resource: &Value, path: &str, issues: &mut Vec<Issue>) {
    let contained = resource.get("contained").and_then(Value::as_array);
    let mut ids = HashSet::new();
    for (i, child) in contained.into_iter().flatten().enumerate() {
        if full(issues) {
            return;
        }
        let at = format!("{path}.contained[{i}]");
        if child.get("contained").is_some() {
            issues.push(
                Issue::error(
                    "invariant",
                    "dom-2: a contained resource SHALL NOT contain additional contained resources",
                )
                .at(&at),
            );
        }
        let meta = child.get("meta");
        if meta.and_then(|m| m.get("versionId")).is_some()
            || meta.and_then(|m| m.get("lastUpdated")).is_some()
        {
            issues.push(Issue::error("invariant", "dom-4: a contained resource SHALL NOT have a meta.versionId or a meta.lastUpdated").at(&at));
        }
        match child.get("id").and_then(Value::as_str) {
            Some(cid) => {
                ids.insert(cid.to_owned());
            }
            None => issues.push(
                Issue::error(
                    "required",
                    "A contained resource needs an id to be referenced by",
                )
                .at(format!("{at}.id")),
            ),
        }
    }
    let mut locals = Vec::new();
    collect_local_references(resource, &mut locals);
    for local in locals {
        if full(issues) {
            return;
        }
        let target = &local[1..];
        if !target.is_empty() && !ids.contains(target) {
            issues.push(
                Issue::error(
                    "invalid",
                    format!("The local reference '{local}' points at no contained resource"),
                )
                .at(path),
            );
        }
    }
}

/// Local references (`#id`) in a resource and its contained resources, but not in other nested
/// resources (Bundle entries and Parameters resolve their own).
fn collect_local_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(r)) = object.get("reference") {
                if r.starts_with('#') {
                    out.push(r.clone());
                }
            }
            for (key, child) in object {
                if key == "contained" || !is_nested_resource(key, child) {
                    collect_local_references(child, out);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_local_references(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_become_element_paths() {
        assert_eq!(
            expression("Patient", "/name/0/given"),
            "Patient.name[0].given"
        );
        assert_eq!(expression("Patient", ""), "Patient");
    }

    #[test]
    fn only_resource_elements_hold_nested_resources() {
        // ExampleScenario.instance has a `resourceType` code but is not a resource.
        let scenario = serde_json::json!({
            "resourceType": "ExampleScenario",
            "status": "draft",
            "instance": [{"resourceId": "p1", "resourceType": "Patient", "name": "A patient"}],
        });
        assert!(validate(&scenario, "ExampleScenario").is_ok());
        let bundle = serde_json::json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient", "gender": "M"}}],
        });
        assert!(validate(&bundle, "Bundle").is_err());
    }

    fn expressions(resource: Value, rtype: &str) -> Vec<String> {
        match validate(&resource, rtype) {
            Err(FhirError::Invalid(issues)) => {
                issues.into_iter().filter_map(|i| i.expression).collect()
            }
            other => panic!("expected 400 issues, got {other:?}"),
        }
    }

    #[test]
    fn unknown_elements_and_double_choices_name_the_element() {
        assert_eq!(
            expressions(
                serde_json::json!({"resourceType": "Patient", "colour": "blue"}),
                "Patient"
            ),
            ["Patient.colour"]
        );
        assert_eq!(
            expressions(
                serde_json::json!({"resourceType": "Observation", "status": "final",
                    "code": {"text": "x"}, "valueString": "a", "_valueBoolean": {}}),
                "Observation"
            ),
            ["Observation.valueString"]
        );
    }

    #[test]
    fn references_must_be_well_formed() {
        for ok in [
            "Patient/1",
            "Patient/1/_history/2",
            "http://x.org/fhir/Patient/1",
            "#p1",
            "urn:uuid:0d4b8d7c-0e1a-4f4b-9b8e-3f0e2a6c1a11",
            "Patient?identifier=a|b",
        ] {
            assert!(check_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Patient/",
            "Nothing/1",
            "Patient/a b",
            "Patient/1/2",
            "justtext",
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }
}
