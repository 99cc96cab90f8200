//! Slicing (profiling.html#slicing): the items of a sliced element are sorted into its slices by
//! the discriminators — `value`/`pattern` (the value at the discriminator's path matches the
//! slice's fixed or pattern value), `type`, `profile` (the item conforms to the slice's profile)
//! and `exists` — then each slice's cardinality is checked and its items are walked against the
//! slice. Rules: `closed` refuses an item no slice takes, `openAtEnd` one that comes before a
//! sliced item. A slice whose discriminator cannot be read from the definition takes the items
//! that conform to it.

use serde_json::Value;

use super::element::{Entry, Node, Walk};
use super::fixed_pattern::{matches_fixed, matches_pattern};
use super::outcome::Outcome;
use super::reference;
use super::structure_definition::StructureDefinition;

/// The element at `path` (dot-separated names) below element `from` of `sd`; `$this` is `from`.
fn element_at(sd: &StructureDefinition, from: usize, path: &str) -> Option<usize> {
    let path = path.strip_prefix("$this.").unwrap_or(path);
    if path == "$this" {
        return Some(from);
    }
    let mut at = from;
    for segment in path.split('.') {
        at = *sd.children(at).iter().find(|&&c| {
            let e = &sd.elements[c];
            e.slice_name.is_none()
                && (e.name == segment || e.name.trim_end_matches("[x]") == segment)
        })?;
    }
    Some(at)
}

/// The values at `path` in `value` (arrays flattened; a choice name reaches `valueX`).
fn values_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.strip_prefix("$this.").unwrap_or(path);
    let mut current = vec![value];
    if path == "$this" {
        return current;
    }
    for segment in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            let Some(object) = v.as_object() else {
                continue;
            };
            let found = object.get(segment).or_else(|| {
                object.iter().find_map(|(k, v)| {
                    k.strip_prefix(segment)
                        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
                        .map(|_| v)
                })
            });
            match found {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(v) => next.push(v),
                None => {}
            }
        }
        current = next;
    }
    current
}

/// Whether `entry` belongs to the slice `slice`: `Some(answer)`, or `None` when a discriminator
/// cannot be read from the definition.
fn discriminated(
    walk: &mut Walk<'_, '_>,
    sd: &StructureDefinition,
    slice: usize,
    discriminators: &[(String, String)],
    entry: &Entry<'_>,
) -> Option<bool> {
    let value = entry.node.value?;
    for (kind, path) in discriminators {
        let target = element_at(sd, slice, path);
        let ok = match kind.as_str() {
            "value" | "pattern" => {
                let def = target.map(|t| &sd.elements[t]);
                let expected = match def.and_then(|d| {
                    d.fixed
                        .as_ref()
                        .map(|f| (f, true))
                        .or(d.pattern.as_ref().map(|p| (p, false)))
                }) {
                    Some(e) => e,
                    None if path == "url" => {
                        // An extension slice: its url is its type's profile.
                        let url = sd.elements[slice].types.first()?.profiles.first()?;
                        let actual = values_at(value, "url");
                        if !actual.iter().any(|a| a.as_str() == Some(url.as_str())) {
                            return Some(false);
                        }
                        continue;
                    }
                    None => return None,
                };
                let actual = values_at(value, path);
                actual.iter().any(|a| {
                    if expected.1 {
                        matches_fixed(a, expected.0)
                    } else {
                        matches_pattern(a, expected.0)
                    }
                })
            }
            "exists" => {
                let def = &sd.elements[target?];
                let present = !values_at(value, path).is_empty();
                if def.min >= 1 {
                    present
                } else if def.max == Some(0) {
                    !present
                } else {
                    return None;
                }
            }
            "type" if path.ends_with(".resolve()") => {
                // The type of the resource a reference points at (FHIRPath resolve()): the
                // type its literal form names, against the types the slice's reference
                // element may target (profiling.html#discriminator).
                let base = path.trim_end_matches(".resolve()");
                let def = &sd.elements[element_at(sd, slice, base)?];
                let allowed: Vec<&str> = def
                    .types
                    .iter()
                    .flat_map(|t| t.target_profiles.iter())
                    .filter_map(|url| walk.defs.get(url).map(|p| p.type_name.as_str()))
                    .collect();
                if allowed.is_empty() {
                    return None;
                }
                let root = walk.root_resource;
                let actual: Vec<&str> = values_at(value, base)
                    .into_iter()
                    .filter_map(|r| r.get("reference")?.as_str())
                    .filter_map(|r| match r.strip_prefix('#') {
                        // A contained resource of the (root) resource (references.html#contained).
                        Some(id) => contained_type(root, id),
                        None => reference::type_of(r),
                    })
                    .collect();
                if actual.is_empty() {
                    return None;
                }
                actual.iter().all(|t| allowed.contains(t))
            }
            "type" => {
                let def = &sd.elements[target?];
                let actual = if path == "$this" {
                    entry.type_code.clone().or_else(|| {
                        value
                            .get("resourceType")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                } else {
                    values_at(value, path)
                        .first()
                        .and_then(|v| v.get("resourceType"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                let actual = actual?;
                def.types.iter().any(|t| t.code == actual)
            }
            "profile" => {
                let def = &sd.elements[target?];
                let urls: Vec<&String> = def.types.iter().flat_map(|t| &t.profiles).collect();
                if urls.is_empty() {
                    return None;
                }
                let profiles: Vec<&StructureDefinition> =
                    urls.iter().filter_map(|u| walk.defs.get(u)).collect();
                if profiles.len() != urls.len() {
                    return None;
                }
                let on_resource = sd.elements[target?].types.iter().any(|t| {
                    t.code == "Resource"
                        || walk
                            .defs
                            .core(&t.code)
                            .is_some_and(|c| c.kind == "resource")
                });
                if on_resource {
                    // A nested resource (`Bundle.entry.resource`): the value at the path is
                    // walked as a resource against the profile.
                    let values = values_at(value, path);
                    !values.is_empty()
                        && values
                            .iter()
                            .all(|v| profiles.iter().any(|p| resource_conforms(walk, p, v)))
                } else if path == "$this" {
                    profiles.iter().any(|p| conforms(walk, p, 0, entry))
                } else {
                    // The values at the discriminator's path (`coding`, `text`), each against
                    // the profiles of the slice's element there.
                    let values = values_at(value, path);
                    !values.is_empty()
                        && values.iter().all(|v| {
                            profiles.iter().any(|p| {
                                let at_path = Entry {
                                    node: Node {
                                        value: Some(v),
                                        ext: None,
                                    },
                                    at: format!("{}.{path}", entry.at),
                                    type_code: Some(p.type_name.clone()),
                                };
                                conforms(walk, p, 0, &at_path)
                            })
                        })
                }
            }
            _ => return None,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

/// The type of the contained resource `id` of `resource`.
fn contained_type<'a>(resource: &'a Value, id: &str) -> Option<&'a str> {
    resource
        .get("contained")?
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))?
        .get("resourceType")?
        .as_str()
}

/// Whether the resource `value` conforms to the profile `sd`, without reporting.
fn resource_conforms(walk: &mut Walk<'_, '_>, sd: &StructureDefinition, value: &Value) -> bool {
    if value.get("resourceType").and_then(Value::as_str) != Some(sd.type_name.as_str()) {
        return false;
    }
    let mut quiet = Outcome::default();
    let mut probe = Walk::new(walk.defs, value, &mut quiet);
    probe.claims = false;
    probe.resource_against(sd, &sd.type_name);
    !quiet.has_errors()
}

/// Whether `entry` conforms to element `idx` of `sd`, without reporting.
fn conforms(
    walk: &mut Walk<'_, '_>,
    sd: &StructureDefinition,
    idx: usize,
    entry: &Entry<'_>,
) -> bool {
    let mut quiet = Outcome::default();
    let mut probe = Walk::new(walk.defs, walk.resource, &mut quiet);
    probe.root_resource = walk.root_resource;
    probe.claims = false;
    probe.element(
        sd,
        idx,
        entry.node,
        entry.type_code.as_deref(),
        &entry.at,
        "",
        &mut Default::default(),
    );
    !quiet.has_errors()
}

/// Sorts `entries` of the sliced element `base` into `slices` and checks them.
#[allow(clippy::too_many_arguments)]
pub fn check<'a>(
    walk: &mut Walk<'_, 'a>,
    sd: &StructureDefinition,
    base: usize,
    slices: &[usize],
    entries: Vec<Entry<'a>>,
    at: &str,
    def_path: &str,
    holder_path: &str,
) {
    let base_def = &sd.elements[base];
    walk.cardinality(base_def, None, entries.len(), at);
    let (discriminators, rules, ordered) = match &base_def.slicing {
        Some(s) => (s.discriminators.clone(), s.rules.clone(), s.ordered),
        // Extensions are sliced by url without saying so.
        None => (
            vec![("value".to_owned(), "url".to_owned())],
            "open".to_owned(),
            false,
        ),
    };
    let mut taken: Vec<Option<usize>> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let mut found = None;
        for &s in slices {
            let fits = match discriminated(walk, sd, s, &discriminators, entry) {
                Some(answer) => answer,
                None => conforms(walk, sd, s, entry),
            };
            if fits {
                found = Some(s);
                break;
            }
        }
        taken.push(found);
    }
    for &s in slices {
        let count = taken.iter().filter(|t| **t == Some(s)).count();
        let def = &sd.elements[s];
        walk.cardinality(def, def.slice_name.as_deref(), count, at);
    }
    let mut last_slice_position = 0;
    for (i, entry) in entries.iter().enumerate() {
        match taken[i] {
            Some(s) => {
                if ordered {
                    let position = slices.iter().position(|x| *x == s).unwrap_or(0);
                    if position < last_slice_position {
                        walk.out.error(
                            "structure",
                            &entry.at,
                            format!(
                                "The slices of {} are ordered, and this item (slice '{}') comes after a later slice's item",
                                base_def.name,
                                sd.elements[s].slice_name.as_deref().unwrap_or("")
                            ),
                        );
                    }
                    last_slice_position = position;
                }
                walk.item(sd, s, entry, def_path, holder_path);
            }
            None => {
                match rules.as_str() {
                    "closed" => walk.out.error(
                        "structure",
                        &entry.at,
                        format!(
                            "This item of {} matches none of the profile's slices, and the slicing is closed",
                            base_def.name
                        ),
                    ),
                    "openAtEnd" if taken[i + 1..].iter().any(Option::is_some) => {
                        walk.out.error(
                            "structure",
                            &entry.at,
                            format!(
                                "This item of {} matches none of the profile's slices and comes before sliced items, but the slicing is open at the end only",
                                base_def.name
                            ),
                        )
                    }
                    _ => {}
                }
                walk.item(sd, base, entry, def_path, holder_path);
            }
        }
    }
}
