//! The SearchParameters the server knows: the official R4 definitions
//! (`conformance/search-parameters.json`, generated from the spec package) and Signaal's own
//! (`conformance/signaal-search-parameters.json`), merged with the active SearchParameter
//! resources stored on the server, with their FHIRPath expressions parsed once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FhirError, Issue};
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

/// A search parameter definition: an official one from `conformance/search-parameters.json`,
/// or one read from a SearchParameter resource stored on the server.
#[derive(Debug, Clone, Deserialize)]
pub struct Definition {
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub expression: Option<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    component: Vec<ComponentDefinition>,
}

#[derive(Debug, Clone, Deserialize)]
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
    /// The id of the SearchParameter resource it comes from; `None` for official parameters.
    pub resource_id: Option<String>,
}

/// Parameters by resource type, then by code. `Resource`/`DomainResource` parameters are
/// listed under every type. The one registry of the server: the official parameters merged
/// with the active SearchParameter resources it holds.
#[derive(Clone)]
pub struct Registry {
    by_type: HashMap<String, HashMap<String, Arc<SearchParam>>>,
}

static OFFICIAL: LazyLock<Arc<Registry>> = LazyLock::new(|| {
    let mut definitions: Vec<Definition> =
        serde_json::from_str(include_str!("../../conformance/search-parameters.json"))
            .expect("conformance/search-parameters.json is valid");
    // Signaal's own parameters (Flag status and priority for the coach's worklist).
    let signaal: Vec<Definition> = serde_json::from_str(include_str!(
        "../../conformance/signaal-search-parameters.json"
    ))
    .expect("conformance/signaal-search-parameters.json is valid");
    definitions.extend(signaal);
    let kinds: HashMap<String, ParamType> = definitions
        .iter()
        .map(|d| (d.url.clone(), d.kind))
        .collect();
    let mut registry = Registry {
        by_type: HashMap::new(),
    };
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
        registry.insert(&def, expression, components.unwrap_or_default(), None);
    }
    Arc::new(registry)
});

/// The resource types a definition's `base` stands for.
fn base_types(base: &[String]) -> Vec<String> {
    if base
        .iter()
        .any(|b| b == "Resource" || b == "DomainResource")
    {
        crate::fhir::resource_types::all().to_vec()
    } else {
        base.to_vec()
    }
}

impl Registry {
    /// The official parameters alone (and Signaal's own): what tools and unit tests search
    /// with, and what a scope's filter is checked against.
    pub fn official() -> Arc<Registry> {
        OFFICIAL.clone()
    }

    fn insert(
        &mut self,
        def: &Definition,
        expression: Option<Arc<Expression>>,
        components: Vec<Component>,
        resource_id: Option<&str>,
    ) {
        let param = Arc::new(SearchParam {
            url: def.url.clone(),
            code: def.code.clone(),
            kind: def.kind,
            expression,
            target: def.target.clone(),
            components,
            resource_id: resource_id.map(str::to_owned),
        });
        for base in base_types(&def.base) {
            self.by_type
                .entry(base)
                .or_default()
                .insert(def.code.clone(), param.clone());
        }
    }

    /// The official parameters plus the SearchParameter resources `stored` (`(id, resource)`)
    /// that are active and valid; others are left out (invalid ones with a warning: they were
    /// refused when written, so only a changed evaluator can make one invalid).
    pub fn with_stored(stored: &[(String, Value)]) -> Registry {
        let mut registry = (**OFFICIAL).clone();
        for (id, resource) in stored {
            match registry.check(id, resource) {
                Ok(Some((def, expression))) => {
                    registry.insert(&def, Some(expression), Vec::new(), Some(id))
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(id, error = %e, "stored SearchParameter left out"),
            }
        }
        registry
    }

    /// Checks a SearchParameter resource with id `id` about to be stored. An active one must
    /// define a parameter this server can evaluate (a search type other than composite and
    /// special, resource types as base, an expression our FHIRPath parses) whose code no other
    /// parameter of those types has; it is returned with its parsed expression. Other statuses
    /// (draft, retired) are not checked: they do not take part in search.
    pub fn check(
        &self,
        id: &str,
        resource: &Value,
    ) -> Result<Option<(Definition, Arc<Expression>)>, FhirError> {
        if resource.get("status").and_then(Value::as_str) != Some("active") {
            return Ok(None);
        }
        let invalid = |msg: String| {
            FhirError::Unprocessable(vec![Issue::error(
                "processing",
                format!("SearchParameter: {msg}"),
            )])
        };
        let def: Definition = serde_json::from_value(resource.clone()).map_err(|e| {
            invalid(format!(
                "an active SearchParameter needs url, code, base and type ({e})"
            ))
        })?;
        if matches!(def.kind, ParamType::Composite | ParamType::Special) {
            return Err(invalid(format!(
                "type '{}' is not supported for SearchParameters defined on this server",
                serde_json::to_value(def.kind)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            )));
        }
        if def.code.is_empty()
            || !def
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "code '{}' is not a valid search parameter name",
                def.code
            )));
        }
        if def.base.is_empty() {
            return Err(invalid("base is empty".to_owned()));
        }
        for base in &def.base {
            if !crate::fhir::resource_types::is_resource_type(base)
                && base != "Resource"
                && base != "DomainResource"
            {
                return Err(invalid(format!("base '{base}' is not a resource type")));
            }
        }
        let source = def
            .expression
            .as_deref()
            .ok_or_else(|| invalid("an expression is required".to_owned()))?;
        let expression = fhirpath::parse(source)
            .map_err(|e| invalid(format!("expression '{source}' is not valid FHIRPath: {e}")))?;
        for base in base_types(&def.base) {
            if let Some(existing) = self.get(&base, &def.code) {
                if existing.resource_id.as_deref() != Some(id) {
                    return Err(invalid(format!(
                        "{base} already has a search parameter '{}' ({})",
                        def.code, existing.url
                    )));
                }
            }
        }
        Ok(Some((def, Arc::new(expression))))
    }

    pub fn get(&self, rtype: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(rtype)?.get(code).map(|p| &**p)
    }

    /// Every parameter of a resource type, in no particular order.
    pub fn params(&self, rtype: &str) -> impl Iterator<Item = &SearchParam> {
        self.by_type
            .get(rtype)
            .into_iter()
            .flat_map(|m| m.values().map(|p| &**p))
    }

    /// Whether a SearchParameter resource of this id takes part in search.
    pub fn has_resource(&self, id: &str) -> bool {
        self.by_type
            .values()
            .flat_map(HashMap::values)
            .any(|p| p.resource_id.as_deref() == Some(id))
    }
}

/// The registry of one server, replaced whole when its SearchParameters change.
pub struct ServerRegistry {
    current: RwLock<Arc<Registry>>,
    /// Serialises reloads, so that the last one to finish read the latest state.
    pub reload: tokio::sync::Mutex<()>,
}

impl ServerRegistry {
    pub fn new(registry: Registry) -> Self {
        ServerRegistry {
            current: RwLock::new(Arc::new(registry)),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Arc<Registry> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, registry: Registry) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
    }
}
