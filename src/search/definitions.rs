//! The SearchParameters the server knows: the official R4 definitions
//! (`conformance/search-parameters.json`, generated from the spec package) and Signaal's own
//! (`conformance/signaal-search-parameters.json`), with their FHIRPath expressions parsed once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

use crate::fhirpath::{self, Expression};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

#[derive(Debug, Deserialize)]
struct Definition {
    url: String,
    code: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: ParamType,
    expression: Option<String>,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    component: Vec<ComponentDefinition>,
}

#[derive(Debug, Deserialize)]
struct ComponentDefinition {
    definition: String,
    expression: String,
}

/// One component of a composite parameter: the type of the parameter it is defined by, and
/// its expression, evaluated on each element the composite's own expression selects.
#[derive(Debug)]
pub struct Component {
    pub kind: ParamType,
    pub expression: Arc<Expression>,
}

/// A search parameter as it applies to one resource type.
#[derive(Debug)]
pub struct SearchParam {
    pub url: String,
    pub code: String,
    pub kind: ParamType,
    /// `None` for parameters without an expression (`_content`, `_query`) or whose expression
    /// the evaluator cannot parse.
    pub expression: Option<Arc<Expression>>,
    pub target: Vec<String>,
    /// The components of a composite parameter, in order (empty for other types).
    pub components: Vec<Component>,
}

/// Parameters by resource type, then by code. `Resource`/`DomainResource` parameters are
/// listed under every type.
pub struct Registry {
    by_type: HashMap<String, HashMap<String, SearchParam>>,
}

static OFFICIAL: LazyLock<Registry> = LazyLock::new(|| {
    let mut definitions: Vec<Definition> =
        serde_json::from_str(include_str!("../../conformance/search-parameters.json"))
            .expect("conformance/search-parameters.json is valid");
    // Signaal's own parameters (Flag status and priority for the coach's worklist).
    let signaal: Vec<Definition> = serde_json::from_str(include_str!(
        "../../conformance/signaal-search-parameters.json"
    ))
    .expect("conformance/signaal-search-parameters.json is valid");
    definitions.extend(signaal);
    Registry::new(definitions)
});

impl Registry {
    fn new(definitions: Vec<Definition>) -> Self {
        let mut by_type: HashMap<String, HashMap<String, SearchParam>> = HashMap::new();
        let kinds: HashMap<String, ParamType> = definitions
            .iter()
            .map(|d| (d.url.clone(), d.kind))
            .collect();
        for def in definitions {
            let parse = |src: &str| match fhirpath::parse(src) {
                Ok(expr) => Some(Arc::new(expr)),
                Err(e) => {
                    tracing::warn!(url = def.url, error = %e, "search parameter expression does not parse");
                    None
                }
            };
            let components: Option<Vec<Component>> = def
                .component
                .iter()
                .map(|c| {
                    Some(Component {
                        kind: *kinds.get(&c.definition)?,
                        expression: parse(&c.expression)?,
                    })
                })
                .collect();
            // A composite whose components cannot all be read is not searchable at all.
            let expression = match &components {
                Some(_) => def.expression.as_deref().and_then(parse),
                None => None,
            };
            let components = components.unwrap_or_default();
            let bases: Vec<String> = if def
                .base
                .iter()
                .any(|b| b == "Resource" || b == "DomainResource")
            {
                crate::fhir::resource_types::all().to_vec()
            } else {
                def.base.clone()
            };
            for base in bases {
                let params = by_type.entry(base).or_default();
                params.insert(
                    def.code.clone(),
                    SearchParam {
                        url: def.url.clone(),
                        code: def.code.clone(),
                        kind: def.kind,
                        expression: expression.clone(),
                        target: def.target.clone(),
                        components: components
                            .iter()
                            .map(|c| Component {
                                kind: c.kind,
                                expression: c.expression.clone(),
                            })
                            .collect(),
                    },
                );
            }
        }
        Registry { by_type }
    }

    pub fn get(&self, rtype: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(rtype)?.get(code)
    }

    /// Every parameter of a resource type, in no particular order.
    pub fn params(&self, rtype: &str) -> impl Iterator<Item = &SearchParam> {
        self.by_type.get(rtype).into_iter().flat_map(|m| m.values())
    }
}

/// The official R4 search parameters.
pub fn registry() -> &'static Registry {
    &OFFICIAL
}
