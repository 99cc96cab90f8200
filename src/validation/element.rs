//! The walk: an instance against a StructureDefinition, element by element. For every element
//! of the definition, the items the instance has for it (a repeating element's array items; a
//! choice's `value[x]` as whichever `valueQuantity`… is there) are counted against `min`/`max`,
//! their type checked against the element's types, and each item checked in turn: invariants,
//! fixed/pattern values, binding, then its own children — from the definition's snapshot when it
//! lists them, else from the item's type's definition (so a profile that does not constrain
//! `Observation.code` still gets CodeableConcept's rules). Slices and extensions have their own
//! modules; nested resources (`contained`, `Bundle.entry.resource`) are walked as resources.

use std::collections::HashSet;

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::{Constraint, ElementDefinition, StructureDefinition};
use super::{
    absolute_uri, attachment, binding, canonical, extension, fixed_pattern, invariant, reference,
    slicing, urn, value_limits, Definitions,
};
use crate::fhir::member::{member, underscored};
use crate::fhirpath::Item;

/// How deep nested definitions may go (bounds recursive types such as Extension.extension and
/// Identifier.assigner.identifier).
const MAX_DEPTH: usize = 64;

/// One item of an element: the JSON value (none for a primitive with only `_name`) and the
/// `_name` sibling of a primitive.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub value: Option<&'a Value>,
    pub ext: Option<&'a Value>,
}

/// An item found for an element definition: where it is and its type.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub node: Node<'a>,
    pub at: String,
    pub type_code: Option<String>,
}

pub struct Walk<'v, 'a> {
    pub defs: &'v Definitions,
    /// `%resource`: the resource the element is part of.
    pub resource: &'a Value,
    /// `%rootResource`: the resource that contains `resource` when it is a contained one, else
    /// `resource` itself.
    pub root_resource: &'a Value,
    pub out: &'v mut Outcome,
    depth: usize,
    /// Whether nested resources are also walked against the profiles they claim
    /// ([`Walk::nested_claims`]); not when a slice's match is probed.
    pub claims: bool,
}

/// Whether invariant `c` is still to be evaluated on the item whose evaluated invariants are
/// `done` (noting it there). The skipped ones (`ele-1`, on every element) are not noted: they
/// are never evaluated, and noting them would copy and hash their key at every element.
fn evaluate_once(c: &Constraint, done: &mut HashSet<String>) -> bool {
    invariant::skipped(&c.key).is_none() && done.insert(c.key.clone())
}

/// `dateTime` → `DateTime`: the type's suffix in a choice element's JSON name.
pub fn upper_first(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

impl<'v, 'a> Walk<'v, 'a> {
    pub fn new(defs: &'v Definitions, resource: &'a Value, out: &'v mut Outcome) -> Self {
        Walk {
            defs,
            resource,
            root_resource: resource,
            out,
            depth: 0,
            claims: true,
        }
    }

    /// Walks `resource` (at `at`) against the whole of `sd`.
    pub fn resource_against(&mut self, sd: &StructureDefinition, at: &str) {
        let node = Node {
            value: Some(self.resource),
            ext: None,
        };
        let type_name = sd.type_name.clone();
        self.element(
            sd,
            0,
            node,
            Some(&type_name),
            at,
            &sd.type_name.clone(),
            &mut HashSet::new(),
        );
    }

    /// One item against element `idx` of `sd`. `def_path` is the element's path in the terms of
    /// the resource (`Patient.name`), for extension contexts; `done` the invariants already
    /// evaluated on this item (the element's and its type's definitions repeat some).
    #[allow(clippy::too_many_arguments)]
    pub fn element(
        &mut self,
        sd: &StructureDefinition,
        idx: usize,
        node: Node<'a>,
        type_code: Option<&str>,
        at: &str,
        def_path: &str,
        done: &mut HashSet<String>,
    ) {
        if self.out.full() || self.depth > MAX_DEPTH {
            return;
        }
        self.depth += 1;
        let def = &sd.elements[idx];
        if let Some(value) = node.value {
            let item = Item::node(
                value,
                type_code.and_then(|t| self.defs.type_name(t)),
                node.ext,
            );
            for c in &def.constraints {
                if evaluate_once(c, done) {
                    invariant::check(c, self.resource, self.root_resource, &item, at, self.out);
                }
            }
        }
        if def.fixed.is_some() || def.pattern.is_some() {
            fixed_pattern::check(
                node.value,
                def.fixed.as_ref(),
                def.pattern.as_ref(),
                at,
                self.out,
            );
        }
        if let (Some(t), Some(value)) = (type_code, node.value) {
            if value.is_string() && value_limits::is_string(t) {
                value_limits::check_string_size(value, at, self.out);
            }
        }
        if def.min_value.is_some() || def.max_value.is_some() || def.max_length.is_some() {
            if let Some(value) = node.value {
                value_limits::check(def, value, at, self.out);
            }
        }
        if let (Some(b), Some(t), Some(value)) = (&def.binding, type_code, node.value) {
            binding::check(self.defs, b, t, value, at, self.out);
        }
        if let (Some("Reference"), Some(value)) = (type_code, node.value) {
            reference::check(self.defs, &def.types, value, at, self.out);
        }
        if let (Some("uri" | "url" | "canonical"), Some(value)) = (type_code, node.value) {
            urn::check(value, at, self.out);
        }
        if let (Some("canonical"), Some(value)) = (type_code, node.value) {
            canonical::check(self.defs, &def.types, value, at, self.out);
        }
        if let (Some("uri" | "canonical"), Some(value)) = (type_code, node.value) {
            // Once per item: against the core definition, not again for each profile.
            if sd.derivation == "specialization" && absolute_uri::applies(&def.path) {
                absolute_uri::check(&def.path, value, at, self.out);
            }
        }
        if let (Some("Attachment"), Some(value)) = (type_code, node.value) {
            // Once per Attachment: where the walk reaches it through its type's definition.
            if sd.type_name == "Attachment" && idx == 0 {
                attachment::check(value, at, self.out);
            }
        }
        if let (Some("Coding"), Some(value)) = (type_code, node.value) {
            // Once per Coding: where the walk reaches it through its type's definition.
            if sd.type_name == "Coding" && idx == 0 {
                binding::check_coding(self.defs, value, at, self.out);
            }
        }
        self.below(sd, idx, def, node, type_code, at, def_path, done);
        self.depth -= 1;
    }

    /// The item's children: from the definition, a content reference, the type's profile or
    /// the type's own definition.
    #[allow(clippy::too_many_arguments)]
    fn below(
        &mut self,
        sd: &StructureDefinition,
        idx: usize,
        def: &ElementDefinition,
        node: Node<'a>,
        type_code: Option<&str>,
        at: &str,
        def_path: &str,
        done: &mut HashSet<String>,
    ) {
        if let Some(reference) = &def.content_reference {
            let target = reference.trim_start_matches('#');
            let target = target.rsplit_once('#').map_or(target, |(_, t)| t);
            if let Some(t) = sd
                .element_by_id(target)
                .or_else(|| sd.element_by_path(target))
            {
                let target_def = &sd.elements[t];
                for c in &target_def.constraints {
                    if let Some(value) = node.value {
                        if evaluate_once(c, done) {
                            let item = Item::node(value, None, node.ext);
                            invariant::check(
                                c,
                                self.resource,
                                self.root_resource,
                                &item,
                                at,
                                self.out,
                            );
                        }
                    }
                }
                self.children(sd, t, node, at, def_path);
            }
            return;
        }
        if !sd.children(idx).is_empty() {
            // The definition lists the children; the type's own invariants still apply.
            if let Some(t) = type_code {
                if idx > 0 {
                    if let Some(type_sd) = self.defs.core(t) {
                        if type_sd.kind != "primitive-type" && type_sd.kind != "resource" {
                            self.constraints_only(type_sd, node, t, at, done);
                        }
                    }
                }
            }
            self.children(sd, idx, node, at, def_path);
            return;
        }
        let Some(t) = type_code else { return };
        let profiles: Vec<String> = def
            .types
            .iter()
            .filter(|r| r.code == t)
            .flat_map(|r| r.profiles.iter().cloned())
            .collect();
        if !profiles.is_empty() {
            // A profile on the type (an extension's definition, SimpleQuantity): the item must
            // conform to one of them.
            let mut known = false;
            for url in &profiles {
                if let Some(profile) = self.defs.get(url) {
                    known = true;
                    if profile.url != sd.url {
                        self.element(profile, 0, node, Some(t), at, def_path, done);
                    }
                    break;
                }
            }
            if known {
                return;
            }
            self.out.not_checked(
                format!("profile {}", profiles[0]),
                at,
                format!("The profile {} of this element's type is not known, so the element was checked against {t} only", profiles[0]),
            );
        }
        if let Some(type_sd) = self.defs.core(t) {
            if type_sd.kind != "primitive-type" && !std::ptr::eq(type_sd, sd) {
                self.element(type_sd, 0, node, Some(t), at, def_path, done);
            } else if let Some(ext) = node.ext {
                extension::on_primitive(self, ext, at, def_path, &def.path, sd);
            }
        }
    }

    /// Only the root invariants of `type_sd` on `node`.
    fn constraints_only(
        &mut self,
        type_sd: &StructureDefinition,
        node: Node<'a>,
        t: &str,
        at: &str,
        done: &mut HashSet<String>,
    ) {
        let Some(value) = node.value else { return };
        let item = Item::node(value, self.defs.type_name(t), node.ext);
        for c in &type_sd.elements[0].constraints {
            if evaluate_once(c, done) {
                invariant::check(c, self.resource, self.root_resource, &item, at, self.out);
            }
        }
    }

    /// The children of element `parent` of `sd` in the object `node`.
    fn children(
        &mut self,
        sd: &StructureDefinition,
        parent: usize,
        node: Node<'a>,
        at: &str,
        def_path: &str,
    ) {
        let Some(object) = node.value.and_then(Value::as_object) else {
            return;
        };
        let kids = sd.children(parent);
        for &c in kids {
            let def = &sd.elements[c];
            if def.slice_name.is_some() {
                continue;
            }
            let entries = self.entries(sd, kids, def, object, at);
            let slices: Vec<usize> = kids
                .iter()
                .copied()
                .filter(|&s| sd.elements[s].slice_name.is_some() && sd.elements[s].name == def.name)
                .collect();
            // Most of a definition's elements are absent from an instance: their path is made
            // only for those that have items or slices.
            let child_def_path = || format!("{def_path}.{}", def.name.trim_end_matches("[x]"));
            if def.slicing.is_some() || !slices.is_empty() {
                slicing::check(
                    self,
                    sd,
                    c,
                    &slices,
                    entries,
                    at,
                    &child_def_path(),
                    def_path,
                );
            } else {
                self.cardinality(def, None, entries.len(), at);
                if entries.is_empty() {
                    continue;
                }
                let child_def_path = child_def_path();
                for entry in entries {
                    self.item(sd, c, &entry, &child_def_path, def_path);
                }
            }
        }
    }

    /// Checks the number of items of an element (or of one of its slices).
    pub fn cardinality(
        &mut self,
        def: &ElementDefinition,
        slice: Option<&str>,
        count: usize,
        at: &str,
    ) {
        let name = def.name.trim_end_matches("[x]");
        // Only an error names the element: most counts are fine, and this runs for every
        // element of every definition walked.
        let what = || match slice {
            Some(s) => format!("The slice '{s}' of {name}"),
            None => format!("The element {name}"),
        };
        if (count as u64) < u64::from(def.min) {
            self.out.error(
                "required",
                at,
                format!(
                    "{} must occur at least {} time(s) here, found {count}",
                    what(),
                    def.min
                ),
            );
        }
        if let Some(max) = def.max {
            if count as u64 > u64::from(max) {
                self.out.error(
                    "structure",
                    &format!("{at}.{name}"),
                    format!(
                        "{} may occur at most {max} time(s) here, found {count}",
                        what()
                    ),
                );
            }
        }
    }

    /// One item of element `idx`: an extension by its definition, a nested resource as a
    /// resource, anything else against the element.
    pub fn item(
        &mut self,
        sd: &StructureDefinition,
        idx: usize,
        entry: &Entry<'a>,
        def_path: &str,
        holder_path: &str,
    ) {
        let def = &sd.elements[idx];
        let type_code = entry.type_code.as_deref();
        if matches!(type_code, Some("Resource")) || def.types.iter().any(|t| t.code == "Resource") {
            if let Some(value) = entry.node.value {
                self.nested(value, &entry.at, def.name == "contained");
                self.nested_profiles(def, value, &entry.at);
            }
            return;
        }
        if matches!(def.name.as_str(), "extension" | "modifierExtension")
            && def.types.iter().all(|t| t.profiles.is_empty())
            && def.slice_name.is_none()
        {
            if let Some(value) = entry.node.value {
                // The holder's path in the definition walked (`ElementDefinition.binding` inside
                // a StructureDefinition, `Questionnaire.item` for a nested item): contexts name
                // elements of data types and content references so.
                let defined_at = def
                    .path
                    .strip_suffix(".extension")
                    .or_else(|| def.path.strip_suffix(".modifierExtension"))
                    .unwrap_or(holder_path);
                if extension::check(self, value, &entry.at, holder_path, defined_at, sd) {
                    return;
                }
            }
        }
        self.element(
            sd,
            idx,
            entry.node,
            type_code,
            &entry.at,
            def_path,
            &mut HashSet::new(),
        );
    }

    /// A resource inside this one, against its own type's definition. A contained resource
    /// keeps this one's `%rootResource` (FHIRPath: the containing resource); any other nested
    /// resource (a Bundle entry's, a Parameters value) is its own root.
    fn nested(&mut self, value: &'a Value, at: &str, contained: bool) {
        let Some(rtype) = value.get("resourceType").and_then(Value::as_str) else {
            return;
        };
        let Some(sd) = self.defs.core(rtype) else {
            return;
        };
        self.nested_against(sd, value, at, contained);
        if self.claims {
            self.nested_claims(value, rtype, at, contained);
        }
    }

    /// A nested resource against the profiles it claims in its own `meta.profile`, as a
    /// resource written alone is (a Bundle entry, a contained resource, a Parameters value):
    /// what breaks them is a profile's error ([`Outcome::profile_errors_from`]). A claimed
    /// profile the server does not know is a warning: the deployment's `--unknown-profile`
    /// policy is about the resource written, not about what a Bundle of it carries.
    fn nested_claims(&mut self, value: &'a Value, rtype: &str, at: &str, contained: bool) {
        let Some(claims) = value.pointer("/meta/profile").and_then(Value::as_array) else {
            return;
        };
        for (i, url) in claims.iter().enumerate() {
            let Some(url) = url.as_str() else {
                continue;
            };
            let errors = self.out.error_count();
            match self.defs.get(url) {
                Some(sd) if sd.type_name == rtype => self.nested_against(sd, value, at, contained),
                Some(sd) => self.out.error(
                    "invalid",
                    &format!("{at}.meta.profile[{i}]"),
                    format!("The profile {url} constrains {}, not {rtype}", sd.type_name),
                ),
                None => self.out.warning(
                    "not-supported",
                    &format!("{at}.meta.profile[{i}]"),
                    format!(
                        "The profile {url} is not known to this server, so the resource was not checked against it"
                    ),
                ),
            }
            self.out.profile_errors_from(errors);
        }
    }

    /// Walks a nested resource against `sd`, with its own `%rootResource` unless `contained`.
    fn nested_against(
        &mut self,
        sd: &'v StructureDefinition,
        value: &'a Value,
        at: &str,
        contained: bool,
    ) {
        let mut inner = Walk {
            defs: self.defs,
            resource: value,
            root_resource: if contained { self.root_resource } else { value },
            out: &mut *self.out,
            depth: self.depth,
            claims: self.claims,
        };
        inner.resource_against(sd, at);
    }

    /// A nested resource against the profiles its element's type names (`Bundle.entry.resource`
    /// as `Resource` with profile `DocumentManifest`): it conforms to at least one of them
    /// (ElementDefinition.type.profile). Profiles the server does not know are not checked; a
    /// resource of a type none of the known ones constrains is an error.
    fn nested_profiles(&mut self, def: &ElementDefinition, value: &'a Value, at: &str) {
        let known: Vec<&'v StructureDefinition> = def
            .types
            .iter()
            .flat_map(|t| t.profiles.iter())
            .filter_map(|url| self.defs.get(url))
            .collect();
        if known.is_empty() {
            return;
        }
        let Some(rtype) = value.get("resourceType").and_then(Value::as_str) else {
            return;
        };
        if known
            .iter()
            .any(|sd| matches!(sd.type_name.as_str(), "Resource" | "DomainResource"))
        {
            return;
        }
        let of_type: Vec<&StructureDefinition> = known
            .iter()
            .copied()
            .filter(|sd| sd.type_name == rtype)
            .collect();
        match of_type.as_slice() {
            [] => {
                let mut allowed: Vec<&str> = known.iter().map(|sd| sd.type_name.as_str()).collect();
                allowed.dedup();
                self.out.error(
                    "structure",
                    at,
                    format!(
                        "The resource is a {rtype}, but this element's profiles only allow {}",
                        allowed.join(", ")
                    ),
                );
            }
            // One profile of its type: it must conform to it (with several, conforming to any
            // one is enough, which needs a walk per profile: not checked here).
            [sd] if sd.derivation != "specialization" => {
                self.nested_against(sd, value, at, def.name == "contained");
            }
            _ => {}
        }
    }

    /// The items `object` has for the element `def` (one of `kids`, the children of the same
    /// parent): array items one by one, a primitive's `_name` with its value, a choice's
    /// `valueQuantity` as type Quantity. A choice's type the element does not allow is an error.
    fn entries(
        &mut self,
        sd: &StructureDefinition,
        kids: &[usize],
        def: &ElementDefinition,
        object: &'a serde_json::Map<String, Value>,
        at: &str,
    ) -> Vec<Entry<'a>> {
        let mut out = Vec::new();
        if def.is_choice() {
            let prefix = def.name.trim_end_matches("[x]");
            for (key, value) in object {
                let Some(suffix) = key.strip_prefix(prefix) else {
                    continue;
                };
                if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
                    continue;
                }
                // Another element of the same parent with exactly this name is not a choice.
                if kids.iter().any(|&k| sd.elements[k].name == *key) {
                    continue;
                }
                match def.types.iter().find(|t| upper_first(&t.code) == suffix) {
                    Some(t) => {
                        let code = t.code.clone();
                        push_items(
                            &mut out,
                            key,
                            Some(value),
                            underscored(object, key),
                            at,
                            Some(code),
                        );
                    }
                    None if self.defs.is_type_suffix(suffix) => {
                        let allowed: Vec<String> = def
                            .types
                            .iter()
                            .map(|t| format!("{prefix}{}", upper_first(&t.code)))
                            .collect();
                        self.out.error(
                            "structure",
                            &format!("{at}.{key}"),
                            format!(
                                "The type of {key} is not allowed here: {prefix}[x] may only be {}",
                                allowed.join(", ")
                            ),
                        );
                    }
                    None => {}
                }
            }
            // `_valueString` without `valueString`.
            for (key, value) in object {
                if let Some(name) = key.strip_prefix('_') {
                    if member(object, name).is_some() {
                        continue;
                    }
                    if let Some(suffix) = name.strip_prefix(prefix) {
                        if let Some(t) = def.types.iter().find(|t| upper_first(&t.code) == suffix) {
                            push_items(&mut out, name, None, Some(value), at, Some(t.code.clone()));
                        }
                    }
                }
            }
        } else {
            let value = member(object, &def.name);
            let ext = underscored(object, &def.name);
            if value.is_some() || ext.is_some() {
                let t = def.single_type().map(str::to_owned);
                push_items(&mut out, &def.name, value, ext, at, t);
            }
        }
        out
    }
}

fn push_items<'a>(
    out: &mut Vec<Entry<'a>>,
    key: &str,
    value: Option<&'a Value>,
    ext: Option<&'a Value>,
    at: &str,
    type_code: Option<String>,
) {
    match (value, ext) {
        (Some(Value::Array(items)), _) | (None, Some(Value::Array(items))) => {
            let exts = ext.and_then(Value::as_array);
            let values = value.and_then(Value::as_array);
            for i in 0..items.len() {
                let v = values.and_then(|v| v.get(i)).filter(|v| !v.is_null());
                let e = exts.and_then(|e| e.get(i)).filter(|e| !e.is_null());
                out.push(Entry {
                    node: Node { value: v, ext: e },
                    at: format!("{at}.{key}[{i}]"),
                    type_code: type_code.clone(),
                });
            }
        }
        _ => out.push(Entry {
            node: Node { value, ext },
            at: format!("{at}.{key}"),
            type_code,
        }),
    }
}
