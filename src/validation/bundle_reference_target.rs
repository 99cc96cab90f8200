//! The type of the entry a reference resolves to inside a Bundle, against the element's
//! `Reference(X|Y)` (references.html: the target "SHALL" be one of those types). A reference
//! whose form names its type (`Patient/1`, `…/Patient/1`) is checked by [`super::reference`]
//! wherever it is; a `urn:uuid:`/`urn:oid:` one names none, so its type is known only by
//! resolving it in the Bundle (bundle.html §2.36.4.1: an absolute reference matches an entry's
//! fullUrl). Checked on the elements of an entry's resource (its own and its backbone elements'
//! references); one that resolves to no entry, or to several, is not checked here.

use std::collections::HashMap;

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::StructureDefinition;
use super::{Definitions, CORE_PREFIX};

/// Checks the `urn:` references of every entry's resource of `bundle` (at `at`).
pub fn check(defs: &Definitions, bundle: &Value, at: &str, out: &mut Outcome) {
    let Some(entries) = bundle.get("entry").and_then(Value::as_array) else {
        return;
    };
    // fullUrl → the type of the entry's resource, `None` when several entries share it.
    let mut types: HashMap<&str, Option<&str>> = HashMap::new();
    for entry in entries {
        let (Some(url), Some(rtype)) = (
            entry.get("fullUrl").and_then(Value::as_str),
            entry
                .pointer("/resource/resourceType")
                .and_then(Value::as_str),
        ) else {
            continue;
        };
        if url.starts_with("urn:") {
            types
                .entry(url)
                .and_modify(|t| *t = None)
                .or_insert(Some(rtype));
        }
    }
    if types.is_empty() {
        return;
    }
    // The element paths start with the resource type: one cache for every entry.
    let mut allowed = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let Some(sd) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| defs.core(t))
        else {
            continue;
        };
        let mut walk = Targets {
            defs,
            sd,
            types: &types,
            allowed: &mut allowed,
            out: &mut *out,
        };
        walk.value(
            resource,
            &mut sd.type_name.clone(),
            &mut format!("{at}.entry[{i}].resource"),
        );
    }
}

struct Targets<'v, 'o> {
    defs: &'v Definitions,
    sd: &'v StructureDefinition,
    types: &'v HashMap<&'v str, Option<&'v str>>,
    /// The types an element (by path) may refer to, once per element; `None`: not checked.
    allowed: &'o mut HashMap<String, Option<Vec<String>>>,
    out: &'o mut Outcome,
}

impl Targets<'_, '_> {
    /// Walks `value`; `path` (the element path) and `at` (the location) are buffers, extended
    /// and cut back on the way, so the walk allocates only for what it reports.
    fn value(&mut self, value: &Value, path: &mut String, at: &mut String) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if matches!(key.as_str(), "contained" | "resourceType") || key.starts_with('_')
                    {
                        continue;
                    }
                    if key == "reference" {
                        if let Some(r) = v.as_str().filter(|r| r.starts_with("urn:")) {
                            self.reference(r, path, &format!("{at}.reference"));
                        }
                        continue;
                    }
                    if !matches!(v, Value::Object(_) | Value::Array(_)) {
                        continue;
                    }
                    let (path_len, at_len) = (path.len(), at.len());
                    for buffer in [&mut *path, &mut *at] {
                        buffer.push('.');
                        buffer.push_str(key);
                    }
                    self.value(v, path, at);
                    path.truncate(path_len);
                    at.truncate(at_len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let at_len = at.len();
                    at.push_str(&format!("[{i}]"));
                    self.value(v, path, at);
                    at.truncate(at_len);
                }
            }
            _ => {}
        }
    }

    /// The reference `r` of the Reference element at `path`.
    fn reference(&mut self, r: &str, path: &str, at: &str) {
        let Some(Some(target)) = self.types.get(r) else {
            return;
        };
        let (defs, sd) = (self.defs, self.sd);
        if !self.allowed.contains_key(path) {
            self.allowed
                .insert(path.to_owned(), allowed_types(defs, sd, path));
        }
        let allowed = &self.allowed[path];
        let Some(allowed) = allowed else { return };
        if allowed.iter().any(|t| t == target) {
            return;
        }
        self.out.error(
            "structure",
            at,
            format!(
                "The reference {r} resolves to the Bundle entry of a {target}, but {path} may only refer to {}",
                allowed.join(", ")
            ),
        );
    }
}

/// The resource types the Reference element at `path` (`Observation.subject`, a choice such as
/// `Observation.focus` or `…valueReference`) may refer to; `None` when the element is not found
/// in `sd` or may refer to any resource.
fn allowed_types(defs: &Definitions, sd: &StructureDefinition, path: &str) -> Option<Vec<String>> {
    let element = sd.element_by_path(path).or_else(|| {
        let stem = path.strip_suffix("Reference")?;
        sd.element_by_path(&format!("{stem}[x]"))
    })?;
    let targets: Vec<&str> = sd.elements[element]
        .types
        .iter()
        .filter(|t| t.code == "Reference")
        .flat_map(|t| t.target_profiles.iter().map(String::as_str))
        .collect();
    if targets.is_empty() {
        return None;
    }
    let mut names = Vec::new();
    for url in targets {
        let name = match url.strip_prefix(CORE_PREFIX) {
            Some(name) if defs.core(name).is_some() => name.to_owned(),
            _ => defs.get(url)?.type_name.clone(),
        };
        if matches!(name.as_str(), "Resource" | "DomainResource") {
            return None;
        }
        names.push(name);
    }
    Some(names)
}
