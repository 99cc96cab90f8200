//! A CodeSystem's concepts and their is-a hierarchy (nesting, and the `parent`/`child`
//! properties), and subsumption along it: the codes below or above a code (what token `:below`
//! and `:above` stand for).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::{Codes, Held, Stop};

#[derive(Debug, Default)]
pub struct CodeSystem {
    /// `complete` (every code is here), `fragment`, `example`, `not-present`, `supplement`.
    pub(super) content: String,
    /// `supplements`: the code system this one adds designations and properties to.
    pub(super) supplements: Option<String>,
    /// Every code, with its parents.
    pub(super) parents: HashMap<String, Vec<String>>,
    pub(super) children: HashMap<String, Vec<String>>,
    /// Concept property values as text, by code then property.
    pub(super) properties: HashMap<String, Vec<(String, String)>>,
}

impl CodeSystem {
    pub fn from_json(resource: &Value) -> CodeSystem {
        let mut cs = CodeSystem {
            content: resource
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or("complete")
                .to_owned(),
            supplements: resource
                .get("supplements")
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Default::default()
        };
        let mut stack: Vec<(&Value, Option<String>)> = resource
            .get("concept")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| (c, None))
            .collect();
        let mut edges: Vec<(String, String)> = Vec::new();
        while let Some((concept, parent)) = stack.pop() {
            let Some(code) = concept.get("code").and_then(Value::as_str) else {
                continue;
            };
            cs.parents.entry(code.to_owned()).or_default();
            if let Some(parent) = parent {
                edges.push((parent, code.to_owned()));
            }
            for p in concept
                .get("property")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = p.get("code").and_then(Value::as_str) else {
                    continue;
                };
                let value = ["valueCode", "valueString", "valueBoolean", "valueInteger"]
                    .iter()
                    .find_map(|k| p.get(*k))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                let Some(value) = value else { continue };
                match name {
                    "parent" => edges.push((value.clone(), code.to_owned())),
                    "child" => edges.push((code.to_owned(), value.clone())),
                    _ => {}
                }
                cs.properties
                    .entry(code.to_owned())
                    .or_default()
                    .push((name.to_owned(), value));
            }
            for child in concept
                .get("concept")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                stack.push((child, Some(code.to_owned())));
            }
        }
        for (parent, child) in edges {
            cs.parents
                .entry(child.clone())
                .or_default()
                .push(parent.clone());
            cs.children.entry(parent).or_default().push(child);
        }
        cs
    }

    pub fn has(&self, code: &str) -> bool {
        self.parents.contains_key(code)
    }

    /// The code and everything below it (`descendants` without the code itself when `!self_too`).
    pub(super) fn below(&self, code: &str, self_too: bool) -> BTreeSet<String> {
        walk(code, &self.children, self_too)
    }

    /// The code and everything above it.
    pub fn above(&self, code: &str) -> BTreeSet<String> {
        walk(code, &self.parents, true)
    }
}

fn walk(code: &str, edges: &HashMap<String, Vec<String>>, self_too: bool) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![code.to_owned()];
    while let Some(c) = stack.pop() {
        for next in edges.get(&c).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    if self_too {
        seen.insert(code.to_owned());
    } else {
        seen.remove(code);
    }
    seen
}

/// The code `system|code` and every code below it (`above`: above it) in its code system.
pub(super) fn subsumed(held: &Held, system: &str, code: &str, above: bool) -> Result<Codes, Stop> {
    let cs = held.code_system(system)?;
    if !cs.has(code) && cs.content != "complete" {
        return Err(Stop::Cannot(format!(
            "this server holds the code system {system} only as '{}' content, without '{code}'",
            cs.content
        )));
    }
    if !cs.has(code) {
        return Err(Stop::Cannot(format!(
            "the code system {system} has no code '{code}'"
        )));
    }
    let set = if above {
        cs.above(code)
    } else {
        cs.below(code, true)
    };
    Ok(Codes::from([(system.to_owned(), set)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_concepts_are_below_their_parents() {
        let cs = CodeSystem::from_json(&serde_json::json!({"content": "complete", "concept": [
            {"code": "a", "concept": [{"code": "b", "concept": [{"code": "c"}]}]},
            {"code": "d", "property": [{"code": "parent", "valueCode": "c"}]}
        ]}));
        assert_eq!(
            cs.below("b", true),
            BTreeSet::from(["b".into(), "c".into(), "d".into()])
        );
        assert_eq!(
            cs.above("d"),
            BTreeSet::from(["a".into(), "b".into(), "c".into(), "d".into()])
        );
        assert_eq!(cs.below("a", false).len(), 3);
    }

    #[test]
    fn an_official_code_is_below_itself_and_above_nothing_else_at_the_top() {
        let held = Held::default();
        let system = "http://hl7.org/fhir/administrative-gender";
        let below = subsumed(&held, system, "female", false).unwrap();
        assert!(below[system].contains("female"));
        assert!(matches!(
            subsumed(&held, system, "no-such-code", true),
            Err(Stop::Cannot(_))
        ));
    }
}
