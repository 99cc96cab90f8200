//! ValueSet expansion: a value set's `compose` (includes minus excludes, with concept lists,
//! filters and nested value sets), or else its stored `expansion`. What token `:in` and
//! `:not-in` stand for.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::code_system::CodeSystem;
use super::{Codes, Held, Stop};

impl Held {
    /// Expands the ValueSet `url`: its compose (includes minus excludes), or else its expansion.
    pub(super) fn expand(&self, url: &str, visiting: &mut HashSet<String>) -> Result<Codes, Stop> {
        if !visiting.insert(url.to_owned()) {
            return Err(Stop::Cannot(format!("the value set {url} includes itself")));
        }
        let vs = self.value_set(url)?;
        let result = if let Some(compose) = vs.get("compose") {
            let mut codes = Codes::new();
            for part in compose
                .get("include")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for (system, set) in self.part(url, part, visiting)? {
                    codes.entry(system).or_default().extend(set);
                }
            }
            for part in compose
                .get("exclude")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for (system, set) in self.part(url, part, visiting)? {
                    if let Some(have) = codes.get_mut(&system) {
                        have.retain(|c| !set.contains(c));
                    }
                }
            }
            codes
        } else if let Some(contains) = vs.pointer("/expansion/contains") {
            let mut codes = Codes::new();
            flatten_contains(contains, &mut codes);
            codes
        } else {
            return Err(Stop::Cannot(format!(
                "the value set {url} has neither a compose nor an expansion"
            )));
        };
        visiting.remove(url);
        Ok(result)
    }

    /// The codes one `compose.include`/`exclude` entry selects.
    fn part(&self, url: &str, part: &Value, visiting: &mut HashSet<String>) -> Result<Codes, Stop> {
        let mut selected: Option<Codes> = None;
        if let Some(system) = part.get("system").and_then(Value::as_str) {
            let system = strip_version(system);
            let listed: BTreeSet<String> = part
                .get("concept")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("code")?.as_str().map(str::to_owned))
                .collect();
            let filters = part
                .get("filter")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let codes = if !listed.is_empty() {
                listed
            } else {
                let cs = self.code_system(system)?;
                // Only a complete code system lists every code a filter could select.
                if cs.content != "complete" {
                    return Err(Stop::Cannot(format!(
                        "the value set {url} selects codes of {system} by filter or as a whole, but this server holds that code system only as '{}' content",
                        cs.content
                    )));
                }
                if filters.is_empty() {
                    cs.parents.keys().cloned().collect()
                } else {
                    let mut codes: Option<BTreeSet<String>> = None;
                    for filter in &filters {
                        let set = apply_filter(url, system, &cs, filter)?;
                        codes = Some(match codes {
                            None => set,
                            Some(have) => have.intersection(&set).cloned().collect(),
                        });
                    }
                    codes.unwrap_or_default()
                }
            };
            selected = Some(Codes::from([(system.to_owned(), codes)]));
        }
        for nested in part
            .get("valueSet")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let nested = self.expand(strip_version(nested), visiting)?;
            selected = Some(match selected {
                None => nested,
                Some(have) => intersect(&have, &nested),
            });
        }
        Ok(selected.unwrap_or_default())
    }
}

fn strip_version(canonical: &str) -> &str {
    canonical.split('|').next().unwrap_or(canonical)
}

fn intersect(a: &Codes, b: &Codes) -> Codes {
    a.iter()
        .filter_map(|(system, codes)| {
            let other = b.get(system)?;
            Some((system.clone(), codes.intersection(other).cloned().collect()))
        })
        .collect()
}

fn flatten_contains(contains: &Value, codes: &mut Codes) {
    for item in contains.as_array().into_iter().flatten() {
        if let (Some(system), Some(code)) = (
            item.get("system").and_then(Value::as_str),
            item.get("code").and_then(Value::as_str),
        ) {
            codes
                .entry(system.to_owned())
                .or_default()
                .insert(code.to_owned());
        }
        if let Some(nested) = item.get("contains") {
            flatten_contains(nested, codes);
        }
    }
}

/// A `compose.include.filter`: `concept is-a|descendent-of|is-not-a X`, `concept = X`, and
/// `P = V` on a concept property (`parent`/`child` through the hierarchy).
fn apply_filter(
    url: &str,
    system: &str,
    cs: &CodeSystem,
    filter: &Value,
) -> Result<BTreeSet<String>, Stop> {
    let text = |k: &str| filter.get(k).and_then(Value::as_str).unwrap_or_default();
    let (property, op, value) = (text("property"), text("op"), text("value"));
    Ok(match (property, op) {
        ("concept", "is-a") if cs.has(value) => cs.below(value, true),
        ("concept", "descendent-of") if cs.has(value) => cs.below(value, false),
        ("concept", "is-a" | "descendent-of") => BTreeSet::new(),
        ("concept", "is-not-a") => {
            let below = cs.below(value, true);
            cs.parents
                .keys()
                .filter(|c| !below.contains(*c))
                .cloned()
                .collect()
        }
        ("concept", "=") => cs.has(value).then(|| value.to_owned()).into_iter().collect(),
        ("parent", "=") => cs.children.get(value).into_iter().flatten().cloned().collect(),
        ("child", "=") => cs.parents.get(value).into_iter().flatten().cloned().collect(),
        (_, "=") => cs
            .properties
            .iter()
            .filter(|(_, props)| props.iter().any(|(p, v)| p == property && v == value))
            .map(|(code, _)| code.clone())
            .collect(),
        _ => {
            return Err(Stop::Cannot(format!(
                "the value set {url} filters {system} by '{property} {op} {value}', which this server does not implement"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_value_sets_expand_with_their_hierarchy() {
        let held = Held::default();
        let codes = held
            .expand(
                "http://hl7.org/fhir/ValueSet/administrative-gender",
                &mut HashSet::new(),
            )
            .unwrap();
        let genders = &codes["http://hl7.org/fhir/administrative-gender"];
        assert!(genders.contains("female") && genders.contains("unknown"));
    }

    #[test]
    fn an_unknown_value_set_is_read_before_it_is_expanded() {
        let held = Held::default();
        let url = "http://example.org/ValueSet/never-stored";
        assert!(matches!(
            held.expand(url, &mut HashSet::new()),
            Err(Stop::NeedValueSet(u)) if u == url
        ));
    }

    #[test]
    fn filters_select_by_hierarchy_and_excludes_remove() {
        let cs = CodeSystem::from_json(&serde_json::json!({"content": "complete", "concept": [
            {"code": "a", "concept": [{"code": "b"}, {"code": "c"}]}, {"code": "z"}
        ]}));
        let filter = |op: &str, value: &str| {
            apply_filter(
                "vs",
                "s",
                &cs,
                &serde_json::json!({"property": "concept", "op": op, "value": value}),
            )
            .unwrap()
        };
        assert_eq!(filter("is-a", "a").len(), 3);
        assert_eq!(filter("descendent-of", "a").len(), 2);
        assert_eq!(filter("is-not-a", "a"), BTreeSet::from(["z".to_owned()]));
        assert!(apply_filter(
            "vs",
            "s",
            &cs,
            &serde_json::json!({"property": "concept", "op": "regex", "value": "."})
        )
        .is_err());
    }
}
