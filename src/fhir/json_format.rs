//! The rules of FHIR's JSON representation (R4 json.html) that a JSON parser lets through, for
//! every resource a client sends:
//!
//! - **no duplicate property names**: RFC 8259 only says names SHOULD be unique, and serde_json
//!   keeps the last of two silently; FHIR JSON is a serialisation of a tree in which an element
//!   appears once, so a duplicate is refused. [`parse`] builds the document with its own
//!   `Deserialize` (the same single pass as `serde_json::from_slice`), noticing a duplicate when
//!   it builds each object from its members.
//! - **`null` only where json.html puts it**: in the two arrays of a repeating primitive
//!   (`given` and `_given`), to keep the value at index i and its id/extensions at index i aligned.
//!   A `null` there needs a partner that is not `null` at the same index, and the two arrays are
//!   equally long. Anywhere else a `null` is refused.
//! - **no empty objects or arrays**: an element has a value or children (ele-1, "All FHIR
//!   elements must have a @value or children"); `{}` and `[]` have neither, and an object that
//!   holds nothing but an `id` has no children besides it (ele-1's `children().count() >
//!   id.count()`) unless it is the `_element` partner of a primitive that has a value.
//! - **no control characters in strings**: datatypes.html says strings (and `markdown`, a
//!   specialisation of `string`) SHOULD NOT contain characters below U+0020 other than tab, CR and
//!   LF, and XML 1.0 cannot carry them at all, so a resource holding one could not be exchanged in
//!   the other format. The `string` regex (`[ \r\n\t\S]+`) does not exclude them: this module does,
//!   in every string of the document (values and property names).
//!
//! Dates that match the `date`/`dateTime`/`instant` regex but name no calendar day (`2021-02-29`)
//! need the element's type and are checked with the schema (`validate`, `datetime::is_calendar_date`).
//!
//! Work is bounded: the walk stops after [`crate::fhir::validate::MAX_ISSUES`] issues, and says so.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::error::{FhirError, Issue};
use crate::fhir::validate::{stopped_issue, MAX_ISSUES};

/// Parses a request body that holds a resource, refusing what JSON allows but FHIR JSON does not.
/// Malformed JSON, duplicate property names and every rule of [`check`] are a 400 whose issues
/// name the element (`expression`).
pub fn parse(body: &[u8]) -> Result<Value, FhirError> {
    let document = parse_unique(body)?;
    check(&document)?;
    Ok(document)
}

/// Checks a document (a resource, or what becomes one: a patched resource) against the rules
/// above, except duplicate names, which only a parse can see: a 400 with at most `MAX_ISSUES`
/// issues, located from the root's `resourceType`, and a last one saying so when there are more.
pub fn check(document: &Value) -> Result<(), FhirError> {
    let mut issues = Vec::new();
    let mut walk = Walk {
        path: root_name(document),
        issues: &mut issues,
        stopped: false,
    };
    walk.value(document, Place::Root);
    if walk.stopped {
        issues.push(stopped_issue());
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(FhirError::Invalid(issues))
    }
}

fn root_name(document: &Value) -> String {
    document
        .as_object()
        .and_then(resource_type)
        .unwrap_or_else(|| "$this".to_owned())
}

/// The `resourceType` among an object's members read so far.
fn members_resource_type(members: &[(String, Value)]) -> Option<String> {
    type_name(
        members
            .iter()
            .find(|(k, _)| k == "resourceType")
            .map(|(_, v)| v),
    )
}

/// An object's `resourceType` when it has the shape of a type name.
fn resource_type(object: &Map<String, Value>) -> Option<String> {
    type_name(object.get("resourceType"))
}

fn type_name(value: Option<&Value>) -> Option<String> {
    match value.and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Some(t.to_owned())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing with unique property names
// ---------------------------------------------------------------------------------------------

/// serde_json hands an arbitrary-precision number (the `arbitrary_precision` feature this crate
/// uses, so that `1.50` stays `1.50`) to a visitor as a one-entry map under this name; its own
/// `Value` does the same. A unit test pins it.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The state of one parse: where a duplicate name was met (the steps from it up to the root,
/// collected while the error unwinds, so that a document without one pays nothing for them),
/// and spare member lists to collect an object's members in before it is built.
#[derive(Default)]
struct Duplicate {
    found: bool,
    steps: Vec<Step>,
    /// The `resourceType` of the outermost object unwound so far, if it had been read.
    root: Option<String>,
    spare: Vec<Vec<(String, Value)>>,
}

enum Step {
    Key(String),
    Index(usize),
}

fn parse_unique(body: &[u8]) -> Result<Value, FhirError> {
    let mut duplicate = Duplicate::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Unique {
        duplicate: &mut duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if duplicate.found => {
            let mut steps = duplicate.steps;
            steps.reverse();
            let name = match steps.last() {
                Some(Step::Key(k)) => k.clone(),
                _ => String::new(),
            };
            let root = duplicate.root.unwrap_or_else(|| "$this".to_owned());
            Err(FhirError::Invalid(vec![Issue::error(
                "structure",
                format!(
                    "The property '{}' appears twice in one object; FHIR JSON names each element once",
                    printable(&name)
                ),
            )
            .at(steps_expression(root, &steps))]))
        }
        Err(e) => Err(FhirError::Invalid(vec![Issue::error(
            "structure",
            format!("The body is not valid JSON: {e}"),
        )])),
    }
}

/// `Patient.name[0].family` from the steps of a path that starts at the root named `root`.
fn steps_expression(root: String, steps: &[Step]) -> String {
    let mut out = root;
    for step in steps {
        match step {
            Step::Key(k) => {
                out.push('.');
                out.push_str(&printable(k));
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// A property name as it can be shown: control characters escaped, at most 100 characters.
fn printable(name: &str) -> String {
    let mut out = String::new();
    for (n, c) in name.chars().enumerate() {
        if n == 100 {
            out.push('…');
            break;
        }
        if (c as u32) < 0x20 {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Deserializes a JSON value like `serde_json::Value` does, but fails on a duplicate name.
struct Unique<'a> {
    duplicate: &'a mut Duplicate,
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            let next = seq.next_element_seed(Unique {
                duplicate: &mut *self.duplicate,
            });
            match next {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {
                    // Growth by doubling leaves up to half of a large array unused.
                    items.shrink_to_fit();
                    return Ok(Value::Array(items));
                }
                Err(e) => {
                    if self.duplicate.found {
                        self.duplicate.steps.push(Step::Index(items.len()));
                    }
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == NUMBER_TOKEN {
            let digits: String = map.next_value()?;
            return digits
                .parse::<Number>()
                .map(Value::Number)
                .map_err(de::Error::custom);
        }
        // The members are collected first so that the object is built at its size: a map grown
        // one member at a time holds room for four, which for a million two-member codings is
        // a third of the document's memory.
        let mut members = self.duplicate.spare.pop().unwrap_or_default();
        let mut key = Some(first);
        while let Some(name) = key {
            match map.next_value_seed(Unique {
                duplicate: &mut *self.duplicate,
            }) {
                Ok(value) => members.push((name, value)),
                Err(e) => {
                    if self.duplicate.found {
                        self.duplicate.steps.push(Step::Key(name));
                        self.duplicate.root = members_resource_type(&members);
                    }
                    return Err(e);
                }
            }
            key = map.next_key()?;
        }
        let mut object = Map::with_capacity(members.len());
        let mut duplicate = None;
        for (name, value) in members.drain(..) {
            match object.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    duplicate = Some(slot.key().clone());
                    break;
                }
            }
        }
        members.clear();
        self.duplicate.spare.push(members);
        if let Some(name) = duplicate {
            self.duplicate.found = true;
            self.duplicate.steps.push(Step::Key(name));
            self.duplicate.root = resource_type(&object);
            return Err(de::Error::custom("duplicate property name"));
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------

/// What holds the value being checked.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root,
    /// The value of a property; `partner` is the value of its primitive partner (`given` ↔
    /// `_given`) in the same object, if any.
    Property {
        name: &'a str,
        partner: Option<&'a Value>,
    },
    /// Item `index` of the array value of a property.
    Item {
        name: &'a str,
        index: usize,
        partner: Option<&'a Value>,
    },
}

struct Walk<'i> {
    /// The location of the value being checked, FHIRPath-like (`Patient.name[0].given[1]`).
    path: String,
    issues: &'i mut Vec<Issue>,
    stopped: bool,
}

impl Walk<'_> {
    fn report(&mut self, code: &'static str, diagnostics: String) {
        if self.issues.len() >= MAX_ISSUES {
            self.stopped = true;
            return;
        }
        self.issues
            .push(Issue::error(code, diagnostics).at(self.path.clone()));
    }

    fn value(&mut self, value: &Value, place: Place<'_>) {
        if self.stopped {
            return;
        }
        match value {
            Value::Null => self.null(place),
            Value::String(s) => self.string(s),
            Value::Array(items) => self.array(items, place),
            Value::Object(object) => self.object(object, place),
            Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn null(&mut self, place: Place<'_>) {
        match place {
            Place::Item {
                name,
                index,
                partner,
            } => {
                let partner_item = partner.and_then(Value::as_array).and_then(|p| p.get(index));
                if partner_item.is_none_or(Value::is_null) {
                    let other = partner_name(name);
                    self.report(
                        "structure",
                        format!(
                            "null at index {index} of '{name}' has no partner: a null only keeps \
                             the two arrays of a repeating primitive aligned, so '{other}[{index}]' \
                             must hold the value or its id/extensions"
                        ),
                    );
                }
            }
            _ => self.report(
                "structure",
                "null is not a value in FHIR JSON: leave an element without a value out".into(),
            ),
        }
    }

    fn string(&mut self, s: &str) {
        if let Some((at, c)) = control_character(s) {
            self.report(
                "value",
                format!(
                    "The string holds the control character U+{:04X} at character {at}; FHIR \
                     strings may hold tab, carriage return and line feed, but no other character \
                     below U+0020",
                    c as u32
                ),
            );
        }
    }

    fn array(&mut self, items: &[Value], place: Place<'_>) {
        let (name, partner) = match place {
            Place::Property { name, partner } => (Some(name), partner),
            _ => (None, None),
        };
        if items.is_empty() {
            self.report(
                "structure",
                "An empty array: FHIR JSON leaves out an element that has no items".into(),
            );
            return;
        }
        if let (Some(name), Some(Value::Array(other))) = (name, partner) {
            // Report the mismatch once, on the value array.
            if !name.starts_with('_') && other.len() != items.len() {
                self.report(
                    "structure",
                    format!(
                        "'{name}' has {} items but '_{name}' has {}: the two arrays of a repeating \
                         primitive are aligned item by item (null fills the gaps)",
                        items.len(),
                        other.len()
                    ),
                );
            }
        }
        let len = self.path.len();
        for (index, item) in items.iter().enumerate() {
            if self.stopped {
                break;
            }
            self.path.push('[');
            self.path.push_str(&index.to_string());
            self.path.push(']');
            let place = match name {
                Some(name) => Place::Item {
                    name,
                    index,
                    partner,
                },
                None => Place::Root,
            };
            self.value(item, place);
            self.path.truncate(len);
        }
    }

    fn object(&mut self, object: &Map<String, Value>, place: Place<'_>) {
        if object.is_empty() {
            self.report(
                "invariant",
                "ele-1: an empty object is an element with neither a value nor children".into(),
            );
            return;
        }
        if object.len() == 1 && object.contains_key("id") && !self.partner_has_value(place) {
            self.report(
                "invariant",
                "ele-1: an element with only an id has neither a value nor children".into(),
            );
        }
        let len = self.path.len();
        for (key, child) in object {
            if self.stopped {
                break;
            }
            self.path.push('.');
            self.path.push_str(key);
            if let Some((at, c)) = control_character(key) {
                self.report(
                    "structure",
                    format!(
                        "The property name holds the control character U+{:04X} at character {at}",
                        c as u32
                    ),
                );
            }
            // Only arrays (null items, their length) and `_element` objects (an id alone) look
            // at their partner; other properties skip the lookup.
            let partner = match child {
                Value::Array(_) => object.get(&partner_name(key)),
                Value::Object(_) => key.strip_prefix('_').and_then(|k| object.get(k)),
                _ => None,
            };
            self.value(child, Place::Property { name: key, partner });
            self.path.truncate(len);
        }
    }

    /// Whether an object is the `_element` of a primitive that has a value: `_birthDate` beside
    /// `birthDate`, or item i of `_given` beside a value at `given[i]`.
    fn partner_has_value(&self, place: Place<'_>) -> bool {
        match place {
            Place::Property {
                name,
                partner: Some(p),
            } => name.starts_with('_') && !p.is_null(),
            Place::Item {
                name,
                index,
                partner: Some(p),
            } => {
                name.starts_with('_')
                    && p.as_array()
                        .and_then(|p| p.get(index))
                        .is_some_and(|v| !v.is_null())
            }
            _ => false,
        }
    }
}

/// `given` ↔ `_given`.
fn partner_name(name: &str) -> String {
    match name.strip_prefix('_') {
        Some(value) => value.to_owned(),
        None => format!("_{name}"),
    }
}

/// The first character below U+0020 other than tab, LF and CR, with its (0-based) position in
/// characters.
fn control_character(s: &str) -> Option<(usize, char)> {
    if !s
        .bytes()
        .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return None;
    }
    s.chars()
        .enumerate()
        .find(|(_, c)| (*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(body: &str) -> Vec<(String, String)> {
        match parse(body.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(FhirError::Invalid(issues)) => issues
                .into_iter()
                .map(|i| (i.expression.unwrap_or_default(), i.diagnostics))
                .collect(),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    fn at(body: &str) -> Vec<String> {
        issues(body).into_iter().map(|(e, _)| e).collect()
    }

    #[test]
    fn numbers_keep_their_digits() {
        let value =
            parse(br#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#).unwrap();
        assert_eq!(value["valueQuantity"]["value"].to_string(), "1.50");
        let big = parse(br#"{"a":123456789012345678901234567890,"b":-0.0000000001e-5}"#).unwrap();
        assert_eq!(
            big.to_string(),
            r#"{"a":123456789012345678901234567890,"b":-0.0000000001e-5}"#
        );
    }

    #[test]
    fn the_parse_equals_serde_json_for_unique_names() {
        let text = r#"{"resourceType":"Patient","name":[{"given":["A",null],"_given":[null,{"id":"x","extension":[{"url":"u","valueBoolean":true}]}]}],"b":false,"n":-3}"#;
        assert_eq!(
            parse_unique(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn duplicate_names_are_refused_where_they_are() {
        assert_eq!(
            at(r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#),
            ["Patient.gender"]
        );
        // The resourceType comes after the duplicate: the root has no name yet.
        assert_eq!(
            at(r#"{"gender":"male","gender":"female","resourceType":"Patient"}"#),
            ["$this.gender"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[{"family":"a"},{"family":"b","family":"c"}]}"#),
            ["Patient.name[1].family"]
        );
    }

    #[test]
    fn malformed_json_is_still_malformed() {
        assert!(issues(r#"{"a":1,}"#)[0].1.contains("not valid JSON"));
        assert!(issues(r#"{"a":1} x"#)[0].1.contains("not valid JSON"));
    }

    #[test]
    fn control_characters_are_refused_but_tab_cr_lf_are_not() {
        assert_eq!(
            at("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"a\\u0001b\"}]}"),
            ["Patient.name[0].family"]
        );
        assert_eq!(
            at("{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"<div>\\u0000</div>\"}}"),
            ["Patient.text.div"]
        );
        assert!(
            at("{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"a\\tb\\r\\nc\"}]}").is_empty()
        );
    }

    #[test]
    fn nulls_need_a_partner_at_their_index() {
        let ok = r#"{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"extension":[{"url":"u","valueString":"x"}]}]}]}"#;
        assert!(at(ok).is_empty());
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[{"given":["a",null]}]}"#),
            ["Patient.name[0].given[1]"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[{"given":[null],"_given":[null]}]}"#),
            ["Patient.name[0].given[0]", "Patient.name[0]._given[0]"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","birthDate":null}"#),
            ["Patient.birthDate"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[null]}"#),
            ["Patient.name[0]"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[{"id":"1"}]}]}"#),
            ["Patient.name[0].given"]
        );
    }

    #[test]
    fn empty_objects_and_arrays_are_refused() {
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[{}]}"#),
            ["Patient.name[0]"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","name":[]}"#),
            ["Patient.name"]
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","maritalStatus":{"id":"m"}}"#),
            ["Patient.maritalStatus"]
        );
        // An id on the extension of a primitive that has a value is fine.
        assert!(
            at(r#"{"resourceType":"Patient","birthDate":"2000","_birthDate":{"id":"b"}}"#)
                .is_empty()
        );
        assert_eq!(
            at(r#"{"resourceType":"Patient","_birthDate":{"id":"b"}}"#),
            ["Patient._birthDate"]
        );
    }

    #[test]
    fn a_million_nulls_stop_at_the_issue_limit() {
        let body = format!(
            r#"{{"resourceType":"Patient","name":[{{"given":[{}]}}]}}"#,
            vec!["null"; 1_000_000].join(",")
        );
        let found = issues(&body);
        assert_eq!(found.len(), MAX_ISSUES + 1);
        assert!(found[MAX_ISSUES].1.contains("stopped"));
    }
}
