//! Computes a resource's index entries by evaluating each search parameter's FHIRPath
//! expression and reading the values by parameter type (search page, "Search Parameter Types").
//!
//! FHIRPath gives back JSON nodes, sometimes without their FHIR type (only choice elements and
//! resources carry one), so complex values are recognised by shape: a `coding` array is a
//! CodeableConcept, `system`/`code` a Coding, `system`/`value` an Identifier, and so on.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::fhir::datetime::parse_range;
use crate::fhirpath::{Item, Node};
use crate::search::definitions::{ParamType, Registry, SearchParam};
use crate::search::index::*;
use crate::ucum;

/// Computes every index entry of a resource of type `rtype`, for the parameters of `registry`.
pub fn index_entries(registry: &Registry, resource: &Value, rtype: &str) -> IndexEntries {
    let mut entries = IndexEntries::default();
    for param in registry.params(rtype) {
        // `_id` and `_lastUpdated` are columns of the resource row.
        if param.code == "_id" || param.code == "_lastUpdated" {
            continue;
        }
        let Some(expression) = &param.expression else {
            continue;
        };
        let items = match expression.evaluate(resource) {
            Ok(items) => items,
            Err(e) => {
                tracing::debug!(param = param.code, error = %e, "search expression not evaluated");
                continue;
            }
        };
        if param.kind == ParamType::Composite {
            composite(&mut entries, param, resource, &items);
            continue;
        }
        for item in &items {
            add(&mut entries, &param.code, param.kind, item);
        }
    }
    entries
}

/// What a write stores: the resource's own entries and, for each resource in its `contained`,
/// that resource's entries as a resource of its own type with itself as the root, renamed with
/// [`contained_param`] and listed by a [`CONTAINED_ID`] entry (search page, "Contained
/// Resources": `_contained=true` finds them, their container holds them).
pub fn stored_entries(registry: &Registry, resource: &Value, rtype: &str) -> IndexEntries {
    let mut entries = index_entries(registry, resource, rtype);
    let contained = resource.get("contained").and_then(Value::as_array);
    for child in contained.into_iter().flatten() {
        // Validation refuses a contained resource without a type; stored ones have one.
        let ctype = child
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut own = index_entries(registry, child, ctype);
        own.tokens.push(TokenEntry {
            param: CONTAINED_ID.to_owned(),
            system: None,
            code: child.get("id").and_then(Value::as_str).map(str::to_owned),
        });
        rename(&mut own, ctype);
        entries.contained.push(own);
    }
    entries
}

/// Puts every entry of a contained resource of type `ctype` under its contained name.
fn rename(entries: &mut IndexEntries, ctype: &str) {
    let name = |param: &mut String| *param = contained_param(ctype, param);
    entries.tokens.iter_mut().for_each(|e| name(&mut e.param));
    entries.strings.iter_mut().for_each(|e| name(&mut e.param));
    entries.dates.iter_mut().for_each(|e| name(&mut e.param));
    entries
        .references
        .iter_mut()
        .for_each(|e| name(&mut e.param));
    entries.uris.iter_mut().for_each(|e| name(&mut e.param));
    entries.numbers.iter_mut().for_each(|e| name(&mut e.param));
    entries
        .quantities
        .iter_mut()
        .for_each(|e| name(&mut e.param));
    for group in &mut entries.groups {
        rename(group, ctype);
    }
}

/// One group per element the composite's expression selects, holding the values its
/// components read from that element (search page, "Composite Search Parameters").
fn composite(
    entries: &mut IndexEntries,
    param: &SearchParam,
    resource: &Value,
    items: &[Item<'_>],
) {
    'elements: for item in items {
        let mut group = IndexEntries::default();
        for (i, component) in param.components.iter().enumerate() {
            let before = group.len();
            let values = match component.expression.evaluate_on(resource, item) {
                Ok(values) => values,
                Err(e) => {
                    tracing::debug!(param = param.code, error = %e, "composite component not evaluated");
                    Vec::new()
                }
            };
            let code = format!("{}${i}", param.code);
            for value in &values {
                add(&mut group, &code, component.kind, value);
            }
            // An element without a value for every component matches no composite search.
            if group.len() == before {
                continue 'elements;
            }
        }
        // Only the components: not the `:text` and `:of-type` entries of token components.
        group.groups.clear();
        group.strings.retain(|s| !s.param.ends_with(":text"));
        if !group.is_empty() {
            entries.groups.push(group);
        }
    }
}

fn add(entries: &mut IndexEntries, code: &str, kind: ParamType, item: &Item<'_>) {
    match kind {
        ParamType::Token => {
            tokens(item, &mut |system, value| {
                entries.tokens.push(TokenEntry {
                    param: code.to_owned(),
                    system: clean(system),
                    code: clean(value),
                });
            });
            let text_param = format!("{code}:text");
            token_texts(item, &mut |s| {
                entries.strings.push(StringEntry {
                    param: text_param.clone(),
                    normalized: normalize(s),
                    exact: index_text(s),
                });
            });
            identifier_of_type(entries, code, item);
        }
        ParamType::String => strings(item, &mut |s| {
            entries.strings.push(StringEntry {
                param: code.to_owned(),
                normalized: normalize(s),
                exact: index_text(s),
            });
        }),
        ParamType::Date => {
            if let Some((lo, hi)) = date_range(item) {
                entries.dates.push(DateEntry {
                    param: code.to_owned(),
                    lo,
                    hi,
                });
            }
        }
        ParamType::Reference => {
            if let Some(entry) = reference(item, code) {
                entries.references.push(entry);
            }
            if let Some(identifier) = item.as_json().and_then(|r| r.get("identifier")) {
                let system = identifier.get("system").and_then(Value::as_str);
                if let Some(value) = identifier.get("value").and_then(Value::as_str) {
                    entries.tokens.push(TokenEntry {
                        param: format!("{code}:identifier"),
                        system: clean(system),
                        code: Some(index_text(value)),
                    });
                }
            }
        }
        ParamType::Uri => {
            if let Some(s) = text(item) {
                entries.uris.push(UriEntry {
                    param: code.to_owned(),
                    value: index_text(s),
                });
            }
        }
        ParamType::Number => {
            if let Some((value, lo, hi)) = number(item) {
                entries.numbers.push(NumberEntry {
                    param: code.to_owned(),
                    value,
                    lo,
                    hi,
                });
            }
        }
        ParamType::Quantity => {
            if let Some(entry) = quantity(item, code) {
                entries.quantities.push(entry);
            }
        }
        // Composite parameters are read by `composite`; special ones by code.
        ParamType::Composite | ParamType::Special => {}
    }
}

/// The texts `:text` matches: `CodeableConcept.text`, `Coding.display`, and an Identifier's
/// type text and displays.
fn token_texts(item: &Item<'_>, add: &mut dyn FnMut(&str)) {
    let Some(Value::Object(o)) = item.as_json() else {
        return;
    };
    let concept = |cc: &serde_json::Map<String, Value>, add: &mut dyn FnMut(&str)| {
        if let Some(text) = cc.get("text").and_then(Value::as_str) {
            add(text);
        }
        if let Some(Value::Array(codings)) = cc.get("coding") {
            codings
                .iter()
                .filter_map(|c| c.get("display").and_then(Value::as_str))
                .for_each(&mut *add);
        }
    };
    if o.contains_key("coding") || (o.contains_key("text") && !o.contains_key("value")) {
        concept(o, add);
    } else if o.contains_key("code") {
        if let Some(display) = o.get("display").and_then(Value::as_str) {
            add(display);
        }
    } else if let Some(Value::Object(kind)) = o.get("type") {
        concept(kind, add);
    }
}

/// `:of-type` entries of an Identifier: one group per coding of its type, with the type
/// (`$0`) and the value (`$1`) together.
fn identifier_of_type(entries: &mut IndexEntries, code: &str, item: &Item<'_>) {
    let Some(Value::Object(o)) = item.as_json() else {
        return;
    };
    let (Some(value), Some(Value::Array(codings))) = (
        o.get("value").and_then(Value::as_str),
        o.get("type").and_then(|t| t.get("coding")),
    ) else {
        return;
    };
    for coding in codings {
        let system = coding.get("system").and_then(Value::as_str);
        let Some(type_code) = coding.get("code").and_then(Value::as_str) else {
            continue;
        };
        let mut group = IndexEntries::default();
        group.tokens.push(TokenEntry {
            param: format!("{code}:of-type$0"),
            system: clean(system),
            code: Some(index_text(type_code)),
        });
        group.tokens.push(TokenEntry {
            param: format!("{code}:of-type$1"),
            system: None,
            code: Some(index_text(value)),
        });
        entries.groups.push(group);
    }
}

/// Text of a primitive node or a computed string-like value.
fn text<'a>(item: &'a Item<'_>) -> Option<&'a str> {
    match item {
        Item::Node(node) => node.value.as_str(),
        Item::String(s) | Item::Date(s) | Item::DateTime(s) => Some(s),
        _ => None,
    }
}

fn tokens(item: &Item<'_>, add: &mut dyn FnMut(Option<&str>, Option<&str>)) {
    let value = match item {
        Item::Node(node) => node.value,
        Item::Boolean(b) => return add(None, Some(if *b { "true" } else { "false" })),
        Item::String(s) => return add(None, Some(s)),
        _ => return,
    };
    match value {
        Value::String(s) => add(None, Some(s)),
        Value::Bool(b) => add(None, Some(if *b { "true" } else { "false" })),
        Value::Object(o) => {
            let str_of = |k: &str| o.get(k).and_then(Value::as_str);
            if let Some(Value::Array(codings)) = o.get("coding") {
                // CodeableConcept
                for coding in codings {
                    let system = coding.get("system").and_then(Value::as_str);
                    let code = coding.get("code").and_then(Value::as_str);
                    if system.is_some() || code.is_some() {
                        add(system, code);
                    }
                }
            } else if o.contains_key("code") {
                // Coding
                add(str_of("system"), str_of("code"));
            } else if let Some(value) = str_of("value") {
                // Identifier, ContactPoint
                add(str_of("system"), Some(value));
            }
        }
        _ => {}
    }
}

/// String values: a primitive, or the text parts of HumanName and Address.
fn strings(item: &Item<'_>, add: &mut dyn FnMut(&str)) {
    let value = match item {
        Item::Node(node) => node.value,
        Item::String(s) => return add(s),
        _ => return,
    };
    match value {
        Value::String(s) => add(s),
        Value::Object(o) => {
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match o.get(key) {
                    Some(Value::String(s)) => add(s),
                    Some(Value::Array(parts)) => {
                        parts.iter().filter_map(Value::as_str).for_each(&mut *add)
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Case- and accent-insensitive form of a string (search page: string matching).
pub fn normalize(s: &str) -> String {
    let folded: String = s
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    index_text(&folded)
}

/// The longest text kept in an index entry, in bytes. PostgreSQL refuses B-tree index entries
/// over ~2,700 bytes; matching on the first kilobyte of a value loses next to nothing.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// Index text: without NUL (PostgreSQL text cannot hold it) and at most `MAX_INDEXED_BYTES`.
pub fn index_text(s: &str) -> String {
    let mut text = s.replace('\0', "");
    if text.len() > MAX_INDEXED_BYTES {
        let mut end = MAX_INDEXED_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn clean(s: Option<&str>) -> Option<String> {
    s.map(index_text)
}

/// The first and last instants a date, Period or Timing covers.
fn date_range(item: &Item<'_>) -> Option<(i64, i64)> {
    let value = match item {
        Item::Node(node) => node.value,
        Item::Date(s) | Item::DateTime(s) | Item::String(s) => return parse_range(s).ok(),
        _ => return None,
    };
    match value {
        Value::String(s) => parse_range(s).ok(),
        Value::Object(o) => {
            if o.contains_key("start") || o.contains_key("end") {
                // Period: an open end is unbounded.
                let lo = o
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(|s| parse_range(s).ok())
                    .map_or(i64::MIN, |r| r.0);
                let hi = o
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(|s| parse_range(s).ok())
                    .map_or(i64::MAX, |r| r.1);
                Some((lo, hi))
            } else if let Some(Value::Array(events)) = o.get("event") {
                // Timing: from the first to the last event.
                let ranges: Vec<(i64, i64)> = events
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|s| parse_range(s).ok())
                    .collect();
                Some((
                    ranges.iter().map(|r| r.0).min()?,
                    ranges.iter().map(|r| r.1).max()?,
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn reference(item: &Item<'_>, code: &str) -> Option<ReferenceEntry> {
    let value = match item {
        Item::Node(node) => node.value,
        Item::Resolved { reference, .. } => return split_reference(reference, code),
        _ => return None,
    };
    match value {
        // canonical / uri used as a reference
        Value::String(s) => split_reference(s, code),
        Value::Object(o) => split_reference(o.get("reference")?.as_str()?, code),
        _ => None,
    }
}

/// Splits a literal reference into type and id where it names one (`Patient/1`,
/// `http://host/fhir/Patient/1/_history/2`); other URLs are kept whole.
fn split_reference(reference: &str, code: &str) -> Option<ReferenceEntry> {
    // A local reference to a contained resource: kept whole, for chains into contained
    // resources (search page, "Contained Resources").
    if reference.starts_with('#') {
        return (reference.len() > 1).then(|| ReferenceEntry {
            param: code.to_owned(),
            target_type: None,
            target_id: None,
            url: Some(index_text(reference)),
        });
    }
    let without_history = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let mut parts = without_history.rsplitn(3, '/');
    let id = parts.next()?;
    let rtype = parts.next();
    let relative = !reference.contains(':');
    let entry = |t: Option<&str>, i: Option<&str>, url: Option<&str>| ReferenceEntry {
        param: code.to_owned(),
        target_type: t.map(index_text),
        target_id: i.map(index_text),
        url: url.map(index_text),
    };
    match rtype {
        Some(t)
            if crate::fhir::resource_types::is_resource_type(t)
                && crate::fhir::id::is_valid(id) =>
        {
            Some(entry(Some(t), Some(id), (!relative).then_some(reference)))
        }
        _ => Some(entry(None, None, Some(reference))),
    }
}

/// A number and the range its precision implies (`1.5` stands for [1.45, 1.55)).
fn number(item: &Item<'_>) -> Option<(f64, f64, f64)> {
    let text = match item {
        Item::Node(Node {
            value: Value::Number(n),
            ..
        }) => n.to_string(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => d.to_string(),
        _ => return None,
    };
    number_range(&text)
}

/// The value of a decimal text and its implicit range, half a unit of its last digit around it.
pub fn number_range(text: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    // Clamped: f64 has no precision beyond these, and `0.5e-2147483648` must not overflow.
    let exponent: i64 = text
        .split(['e', 'E'])
        .nth(1)
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(-400, 400);
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, f)| f.len())
        .min(400) as i64;
    let half = 0.5 * 10f64.powi((exponent - decimals) as i32);
    Some((value, value - half, value + half))
}

static MONEY_SYSTEM: &str = "urn:iso:std:iso:4217";

fn quantity(item: &Item<'_>, code: &str) -> Option<QuantityEntry> {
    let Item::Node(node) = item else { return None };
    let o = node.value.as_object()?;
    let Value::Number(n) = o.get("value")? else {
        return None;
    };
    let (value, lo, hi) = number_range(&n.to_string())?;
    let str_of = |k: &str| o.get(k).and_then(Value::as_str).map(index_text);
    let (system, unit_code) = match str_of("currency") {
        Some(currency) => (Some(MONEY_SYSTEM.to_owned()), Some(currency)),
        None => (str_of("system"), str_of("code")),
    };
    let canonical = match (&system, &unit_code) {
        (Some(system), Some(unit)) if system == ucum::SYSTEM => ucum::canonical(value, unit).ok(),
        _ => None,
    };
    Some(QuantityEntry {
        param: code.to_owned(),
        system,
        code: unit_code,
        unit: str_of("unit"),
        value,
        lo,
        hi,
        canonical,
    })
}

/// The Patient compartment parameters of each resource type (official CompartmentDefinition).
static PATIENT_COMPARTMENT: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../conformance/compartment-patient.json"))
        .expect("conformance/compartment-patient.json is valid")
});

/// The parameters that put a resource of type `rtype` in a Patient's compartment.
pub fn patient_compartment_params(rtype: &str) -> &'static [String] {
    PATIENT_COMPARTMENT.get(rtype).map_or(&[], Vec::as_slice)
}

/// The id of the Patient whose compartment holds this resource, if any: the sharding key.
pub fn patient_compartment(rtype: &str, id: &str, entries: &IndexEntries) -> Option<String> {
    if rtype == "Patient" {
        return Some(id.to_owned());
    }
    patient_compartment_params(rtype).iter().find_map(|param| {
        entries.references.iter().find_map(|r| {
            (&r.param == param && r.target_type.as_deref() == Some("Patient"))
                .then(|| r.target_id.clone())
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_tokens() {
        let patient = json!({"resourceType": "Patient", "id": "p", "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456782"}]});
        let entries = index_entries(&Registry::official(), &patient, "Patient");
        assert!(entries.tokens.contains(&TokenEntry {
            param: "identifier".into(),
            system: Some("http://fhir.nl/fhir/NamingSystem/bsn".into()),
            code: Some("123456782".into())
        }));
    }

    #[test]
    fn observations_belong_to_their_subjects_compartment() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        let entries = index_entries(&Registry::official(), &obs, "Observation");
        assert_eq!(
            patient_compartment("Observation", "o", &entries).as_deref(),
            Some("p1")
        );
    }

    #[test]
    fn contained_resources_are_indexed_as_their_own_type_under_contained_names() {
        let rx = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "contained": [{"resourceType": "Medication", "id": "med",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "aspirin"}]}}],
            "medicationReference": {"reference": "#med"}, "subject": {"reference": "Patient/p1"}});
        let entries = stored_entries(&Registry::official(), &rx, "MedicationRequest");
        assert!(entries.tokens.iter().all(|t| !t.param.contains('#')));
        assert_eq!(entries.contained.len(), 1);
        let med = &entries.contained[0];
        assert!(med.tokens.contains(&TokenEntry {
            param: "Medication#code".into(),
            system: Some("http://snomed.info/sct".into()),
            code: Some("aspirin".into())
        }));
        assert!(med.tokens.contains(&TokenEntry {
            param: "Medication#_id".into(),
            system: None,
            code: Some("med".into())
        }));
        // The container's compartment comes from its own references only.
        assert_eq!(
            patient_compartment("MedicationRequest", "rx", &entries).as_deref(),
            Some("p1")
        );
    }

    #[test]
    fn strings_are_case_and_accent_insensitive() {
        assert_eq!(normalize("Zoë Ångström"), "zoe angstrom");
    }

    #[test]
    fn huge_exponents_do_not_overflow() {
        assert!(number_range("0.5e-2147483648").is_some());
        assert!(number_range("1e999999999999").is_none());
    }

    #[test]
    fn numbers_carry_their_precision() {
        assert_eq!(number_range("1.5"), Some((1.5, 1.45, 1.55)));
        assert_eq!(number_range("100"), Some((100.0, 99.5, 100.5)));
    }
}
