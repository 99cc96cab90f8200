//! capabilities: `GET [base]/metadata`, a CapabilityStatement of what this server really does.
//!
//! Built from the same tables the server runs on (resource types, supported search parameter
//! types), so it cannot claim what is not implemented.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::fhir::subset::Subset;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::reindex;
use crate::search::definitions::{ParamType, Registry};

pub async fn capabilities(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    match request.single_param("mode")? {
        None | Some("full") => {}
        Some("normative") => {}
        Some(mode) => {
            return Err(FhirError::invalid(format!(
            "mode={mode} is not supported: this server has no terminology capabilities to report"
        )))
        }
    }
    Ok(FhirResponse::ok(subset(request, statement(app))?))
}

/// `_summary` and `_elements` on `metadata` (http page, "capabilities": the parameters apply
/// as on a read).
fn subset(request: &FhirRequest, statement: Value) -> Result<Value, FhirError> {
    let summary_param = request.single_param("_summary")?;
    let elements = request.single_param("_elements")?;
    match (summary_param, elements) {
        (Some(_), Some(_)) => Err(FhirError::invalid(
            "_summary and _elements cannot be combined: ask for one",
        )),
        (Some(value), None) => match Subset::summary(value)? {
            Subset::Count => Err(FhirError::invalid(
                "_summary=count applies to searches, not to the CapabilityStatement",
            )),
            subset => Ok(subset.apply(statement, false)),
        },
        (None, Some(value)) => {
            let names: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = names
                .iter()
                .find(|n| !n.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return Err(FhirError::invalid(format!(
                    "_elements: '{bad}' is not the name of a CapabilityStatement element"
                )));
            }
            if names.is_empty() {
                return Err(FhirError::invalid("_elements names no element"));
            }
            Ok(crate::fhir::subset::only_elements(statement, &names))
        }
        (None, None) => Ok(statement),
    }
}

/// `searchInclude` and `searchRevInclude` of every type: `Type:param` of each reference
/// search parameter the server evaluates, and `*`; a type's reverse includes are the reference
/// parameters of every type that may point at it.
fn includes(registry: &Registry) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
    let mut forward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut reverse: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in resource_types::all() {
        let mut own: Vec<String> = registry
            .params(source)
            .filter(|p| p.kind == ParamType::Reference && p.expression.is_some())
            .map(|p| {
                for target in &p.target {
                    reverse
                        .entry(target.clone())
                        .or_default()
                        .insert(format!("{source}:{}", p.code));
                }
                format!("{source}:{}", p.code)
            })
            .collect();
        own.sort();
        own.insert(0, "*".to_owned());
        forward.insert(source.clone(), own);
    }
    // `_revinclude=*` is refused (which types would it search?), so it is not listed.
    let reverse = reverse
        .into_iter()
        .map(|(target, sources)| (target, sources.into_iter().collect()))
        .collect();
    (forward, reverse)
}

/// The patch formats `PATCH` accepts (http page, "patch"): JSON Patch, XML Patch, and FHIRPath
/// Patch as a `Parameters` resource in FHIR JSON or FHIR XML.
const PATCH_FORMATS: [&str; 4] = [
    "application/json-patch+json",
    "application/xml-patch+xml",
    "application/fhir+json",
    "application/fhir+xml",
];

/// The search parameters of a type that `search::param` can evaluate.
fn search_params(registry: &Registry, rtype: &str) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"}),
        json!({"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}),
    ];
    let mut supported: Vec<_> = registry
        .params(rtype)
        .filter(|p| p.code != "_id" && p.code != "_lastUpdated" && p.expression.is_some())
        .filter(|p| !matches!(p.kind, ParamType::Composite | ParamType::Special))
        .collect();
    supported.sort_by(|a, b| a.code.cmp(&b.code));
    for p in supported {
        let kind = serde_json::to_value(p.kind).unwrap_or_default();
        params.push(json!({"name": p.code, "type": kind, "definition": p.url}));
    }
    params
}

/// The canonical URL of `conformance/operation-worklist.json`.
pub const WORKLIST_DEFINITION: &str =
    "https://signaal.dev/fhir/OperationDefinition/Practitioner-worklist";

/// The type-level interactions implemented for every resource type.
const INTERACTIONS: [&str; 9] = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// The Subscriptions Backport IG's advertisement of the topics (the
/// `capabilitystatement-subscriptiontopic-canonical` extension on the Subscription resource, one
/// per topic in force) and its operations.
fn subscription_topics(app: &App, resource: &mut Value, operations: &mut Vec<Value>) {
    const IG: &str = "http://hl7.org/fhir/uv/subscriptions-backport";
    let topics = app.subscriptions.topics.read().expect("topics lock");
    let extension: Vec<Value> = topics
        .all()
        .map(|t| json!({
            "url": format!("{IG}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"),
            "valueCanonical": t.url,
        }))
        .collect();
    resource["extension"] = Value::Array(extension);
    resource["supportedProfile"] =
        json!([format!("{IG}/StructureDefinition/backport-subscription")]);
    for (name, id) in [
        ("status", "backport-subscription-status"),
        ("events", "backport-subscription-events"),
        (
            "get-ws-binding-token",
            "backport-subscription-get-ws-binding-token",
        ),
    ] {
        operations
            .push(json!({"name": name, "definition": format!("{IG}/OperationDefinition/{id}")}));
    }
}

fn statement(app: &App) -> Value {
    let (search_include, search_rev_include) = includes(app.registry());
    let resources: Vec<Value> = resource_types::all()
        .iter()
        .map(|rtype| {
            let interactions: Vec<Value> = INTERACTIONS
                .iter()
                .map(|code| json!({"code": code}))
                .collect();
            let mut resource = json!({
                "type": rtype,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rtype}"),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": search_params(app.registry(), rtype),
            });
            if let Some(list) = search_include.get(rtype.as_str()) {
                resource["searchInclude"] = json!(list);
            }
            if let Some(list) = search_rev_include.get(rtype.as_str()) {
                resource["searchRevInclude"] = json!(list);
            }
            let mut operations =
                vec![json!({"name": "reindex", "definition": reindex::DEFINITION})];
            if rtype == "Observation" {
                operations.push(json!({
                    "name": "lastn",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
                }));
            }
            if rtype == "Patient" || rtype == "Group" {
                operations.push(json!({
                    "name": "export",
                    "definition": if rtype == "Patient" {
                        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
                    } else {
                        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
                    },
                    "documentation": super::export::DOCUMENTATION,
                }));
            }
            if rtype == "Patient" {
                operations.push(json!({
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "Instance level (GET): start, end, _since, _type, _count.",
                }));
            }
            if rtype == "Practitioner" {
                operations.push(json!({
                    "name": "worklist",
                    "definition": WORKLIST_DEFINITION,
                }));
            }
            if rtype == "Subscription" {
                subscription_topics(app, &mut resource, &mut operations);
            }
            if rtype == "Measure" {
                operations.push(json!({
                    "name": "evaluate-measure",
                    "definition": super::evaluate_measure::DEFINITION,
                }));
            }
            resource["operation"] = Value::Array(operations);
            let profiles: Vec<&str> = crate::fhir::profile::known()
                .filter(|url| crate::fhir::profile::profile_type(url) == Some(rtype.as_str()))
                .collect();
            if !profiles.is_empty() {
                resource["supportedProfile"] = json!(profiles);
            }
            resource
        })
        .collect();
    let mut rest = json!({
        "mode": "server",
        "resource": resources,
        "interaction": [
            {"code": "transaction"},
            {"code": "batch"},
            {"code": "history-system"},
        ],
        "operation": [{
            "name": "reindex",
            "definition": reindex::DEFINITION,
            "documentation": reindex::DOCUMENTATION,
        }, {
            "name": "scoring-coverage",
            "definition": super::scoring_coverage::DEFINITION,
            "documentation": "The codes of the population that no risk model recognises (GET).",
        }, {
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
            "documentation": super::export::DOCUMENTATION,
        }, {
            "name": "import",
            "definition": super::import::DEFINITION,
            "documentation": super::import::DOCUMENTATION,
        }],
    });
    if app.auth.enforced() {
        rest["security"] = crate::auth::discovery::security(&app.auth);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "publisher": "Signaal",
        "kind": "instance",
        "software": {"name": "Signaal", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Signaal FHIR R4 server", "url": app.base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "patchFormat": PATCH_FORMATS,
        "rest": [rest],
    })
}
