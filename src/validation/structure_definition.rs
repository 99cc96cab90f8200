//! A StructureDefinition compiled for validation: its snapshot's elements as a tree (children by
//! element id, slices next to the element they slice), each element's cardinality, types,
//! fixed and pattern values, binding, slicing and constraints (FHIRPath parsed once).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::fhirpath;

/// Why a StructureDefinition cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("the StructureDefinition has no url")]
    NoUrl,
    #[error("the StructureDefinition {0} has neither a snapshot nor a differential")]
    NoElements(String),
    #[error("the StructureDefinition {url} is based on {base}, which is not known")]
    UnknownBase { url: String, base: String },
    #[error("the StructureDefinition {url}: {message}")]
    Invalid { url: String, message: String },
}

impl DefinitionError {
    /// The url of the StructureDefinition that cannot be used, when it has one.
    pub fn url(&self) -> Option<&str> {
        match self {
            DefinitionError::NoUrl => None,
            DefinitionError::NoElements(url)
            | DefinitionError::UnknownBase { url, .. }
            | DefinitionError::Invalid { url, .. } => Some(url),
        }
    }
}

#[derive(Debug)]
pub struct StructureDefinition {
    pub url: String,
    pub name: String,
    /// `type`: the resource or data type it defines or constrains.
    pub type_name: String,
    /// `resource`, `complex-type`, `primitive-type` or `logical`.
    pub kind: String,
    pub derivation: String,
    pub base: Option<String>,
    /// Where an extension may be used: (`element`/`fhirpath`/`extension`, expression).
    pub contexts: Vec<(String, String)>,
    /// `contextInvariant`: FHIRPath rules, all true where the extension is used.
    pub context_invariants: Vec<String>,
    /// The root element's `isModifier`: for an extension, whether it is a modifier extension.
    pub is_modifier: bool,
    pub elements: Vec<ElementDefinition>,
    /// Children of each element (by index): the element ids one segment longer.
    children: Vec<Vec<usize>>,
}

#[derive(Debug)]
pub struct ElementDefinition {
    pub id: String,
    pub path: String,
    /// The last segment of the path (`value[x]`, `coding`).
    pub name: String,
    /// The slice this element starts (its own `sliceName`), if any.
    pub slice_name: Option<String>,
    pub min: u32,
    /// `None`: `*`.
    pub max: Option<u32>,
    pub types: Vec<TypeRef>,
    /// `#Questionnaire.item`: the element whose children this one has.
    pub content_reference: Option<String>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    /// `minValue[x]` and `maxValue[x]` (inclusive), `maxLength` (`value_limits`).
    pub min_value: Option<Value>,
    pub max_value: Option<Value>,
    pub max_length: Option<u64>,
    pub binding: Option<Binding>,
    pub slicing: Option<Slicing>,
    pub constraints: Vec<Arc<Constraint>>,
}

#[derive(Debug, Clone)]
pub struct TypeRef {
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub strength: String,
    pub value_set: String,
}

#[derive(Debug, Clone)]
pub struct Slicing {
    /// (`value`/`pattern`/`type`/`profile`/`exists`, path).
    pub discriminators: Vec<(String, String)>,
    pub ordered: bool,
    /// `open`, `closed` or `openAtEnd`.
    pub rules: String,
}

#[derive(Debug)]
pub struct Constraint {
    pub key: String,
    /// `error` or `warning`.
    pub severity: &'static str,
    pub human: String,
    /// The parsed expression; `Err` says why it cannot be evaluated.
    pub expression: Result<fhirpath::Expression, String>,
}

/// Parsed constraints shared between definitions (`ele-1` is on every element).
#[derive(Default)]
pub struct ConstraintCache(HashMap<(String, String), Arc<Constraint>>);

impl ConstraintCache {
    fn get(&mut self, c: &Value) -> Option<Arc<Constraint>> {
        let key = c.get("key")?.as_str()?.to_owned();
        let source = c.get("expression").and_then(Value::as_str).unwrap_or("");
        if let Some(hit) = self.0.get(&(key.clone(), source.to_owned())) {
            return Some(hit.clone());
        }
        let expression = if source.is_empty() {
            Err("the constraint has no FHIRPath expression".to_owned())
        } else {
            let source = super::invariant::corrected(&key, source).unwrap_or(source);
            fhirpath::parse(source).map_err(|e| e.to_string())
        };
        let constraint = Arc::new(Constraint {
            key: key.clone(),
            severity: match c.get("severity").and_then(Value::as_str) {
                Some("warning") => "warning",
                _ => "error",
            },
            human: c
                .get("human")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            expression,
        });
        self.0.insert((key, source.to_owned()), constraint.clone());
        Some(constraint)
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn string(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The fixed or pattern value of an element (`fixedCode`, `patternCodeableConcept`, ...).
fn prefixed(element: &serde_json::Map<String, Value>, prefix: &str) -> Option<Value> {
    element.iter().find_map(|(k, v)| {
        let rest = k.strip_prefix(prefix)?;
        rest.starts_with(|c: char| c.is_ascii_uppercase())
            .then(|| v.clone())
    })
}

impl ElementDefinition {
    fn compile(element: &Value, cache: &mut ConstraintCache) -> Option<ElementDefinition> {
        let object = element.as_object()?;
        let path = string(element, "path")?;
        let id = string(element, "id").unwrap_or_else(|| path.clone());
        let name = path.rsplit('.').next().unwrap_or(&path).to_owned();
        let last_id = id.rsplit('.').next().unwrap_or(&id);
        let slice_name = last_id.split_once(':').map(|(_, s)| s.to_owned());
        Some(ElementDefinition {
            min: element.get("min").and_then(Value::as_u64).unwrap_or(0) as u32,
            max: match element.get("max").and_then(Value::as_str) {
                Some("*") | None => None,
                Some(n) => n.parse().ok(),
            },
            types: element
                .get("type")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some(TypeRef {
                        code: type_code(t)?,
                        profiles: strings(t.get("profile")),
                        target_profiles: strings(t.get("targetProfile")),
                    })
                })
                .collect(),
            content_reference: string(element, "contentReference"),
            fixed: prefixed(object, "fixed"),
            pattern: prefixed(object, "pattern"),
            min_value: prefixed(object, "minValue"),
            max_value: prefixed(object, "maxValue"),
            max_length: element.get("maxLength").and_then(Value::as_u64),
            binding: element.get("binding").and_then(|b| {
                Some(Binding {
                    strength: string(b, "strength")?,
                    value_set: string(b, "valueSet")?,
                })
            }),
            slicing: element.get("slicing").map(|s| Slicing {
                discriminators: s
                    .get("discriminator")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|d| Some((string(d, "type")?, string(d, "path")?)))
                    .collect(),
                ordered: s.get("ordered").and_then(Value::as_bool).unwrap_or(false),
                rules: string(s, "rules").unwrap_or_else(|| "open".into()),
            }),
            constraints: element
                .get("constraint")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| cache.get(c))
                .collect(),
            id,
            path,
            name,
            slice_name,
        })
    }

    /// Whether the element is a choice (`value[x]`).
    pub fn is_choice(&self) -> bool {
        self.name.ends_with("[x]")
    }

    /// The single type code, when there is exactly one.
    pub fn single_type(&self) -> Option<&str> {
        match self.types.as_slice() {
            [t] => Some(&t.code),
            _ => None,
        }
    }
}

/// A type code; the primitive types' `value` elements name theirs with an extension
/// (`http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type`) and a System code.
fn type_code(t: &Value) -> Option<String> {
    let code = t.get("code")?.as_str()?;
    if let Some(fhir_type) = t
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| {
            e.get("url").and_then(Value::as_str)
                == Some("http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type")
        })
        .and_then(|e| e.get("valueUrl").or(e.get("valueUri")))
        .and_then(Value::as_str)
    {
        return Some(fhir_type.to_owned());
    }
    Some(code.to_owned())
}

impl StructureDefinition {
    /// Compiles a StructureDefinition that has a snapshot (see `snapshot` for one without).
    pub fn compile(
        sd: &Value,
        cache: &mut ConstraintCache,
    ) -> Result<StructureDefinition, DefinitionError> {
        let url = string(sd, "url").ok_or(DefinitionError::NoUrl)?;
        let elements: Vec<ElementDefinition> = sd
            .pointer("/snapshot/element")
            .and_then(Value::as_array)
            .ok_or_else(|| DefinitionError::NoElements(url.clone()))?
            .iter()
            .filter_map(|e| ElementDefinition::compile(e, cache))
            .collect();
        if elements.is_empty() {
            return Err(DefinitionError::NoElements(url));
        }
        let index: HashMap<&str, usize> = elements
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.as_str(), i))
            .collect();
        let mut children = vec![Vec::new(); elements.len()];
        for (i, e) in elements.iter().enumerate() {
            let parent = match e.id.rfind('.') {
                Some(dot) => &e.id[..dot],
                None => continue,
            };
            if let Some(&p) = index.get(parent) {
                children[p].push(i);
            }
        }
        Ok(StructureDefinition {
            name: string(sd, "name").unwrap_or_else(|| url.clone()),
            type_name: string(sd, "type").unwrap_or_default(),
            kind: string(sd, "kind").unwrap_or_default(),
            derivation: string(sd, "derivation").unwrap_or_else(|| "specialization".into()),
            base: string(sd, "baseDefinition"),
            contexts: sd
                .get("context")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| Some((string(c, "type")?, string(c, "expression")?)))
                .collect(),
            context_invariants: strings(sd.get("contextInvariant")),
            is_modifier: sd.pointer("/snapshot/element/0/isModifier") == Some(&Value::Bool(true)),
            url,
            elements,
            children,
        })
    }

    /// The children of element `index` (unsliced elements and slices alike).
    pub fn children(&self, index: usize) -> &[usize] {
        &self.children[index]
    }

    /// The index of the element with id `id`.
    pub fn element_by_id(&self, id: &str) -> Option<usize> {
        self.elements.iter().position(|e| e.id == id)
    }

    /// The index of the first element whose path is `path` (for `contentReference`).
    pub fn element_by_path(&self, path: &str) -> Option<usize> {
        self.elements
            .iter()
            .position(|e| e.path == path && e.slice_name.is_none())
    }
}
