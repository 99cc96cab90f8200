//! Elements the R4 definitions call "An absolute URI": the canonical `url` of every
//! conformance and knowledge resource ("An absolute URI that is used to identify this value
//! set when it is referenced in a specification, model, design or an instance"), the code
//! system of a ValueSet's `compose.include` and `expansion.contains`, ConceptMap's source and
//! target systems, a StructureDefinition's `baseDefinition` and mapping `uri`, a
//! CapabilityStatement's compartments and search parameter definitions. A relative value
//! (`ValueSet/vs1`, a bare `c1` naming a contained CodeSystem) is not one: an error.
//!
//! The list is the R4 package's elements whose definition states it (4.0.1
//! StructureDefinitions, `snapshot.element.definition` beginning "An absolute URI", and
//! `ValueSet.compose.include.valueSet`: "This is an absolute URI"); the check runs when the
//! walk reaches an item of one of them against its core definition (`ValueSet.compose.exclude`
//! is walked through its content reference to `include`, so its systems are checked too).

use serde_json::Value;

use super::outcome::Outcome;
use super::reference::is_absolute;

/// The elements (paths in the core definitions) whose value is an absolute URI.
const ABSOLUTE: &[&str] = &[
    "ActivityDefinition.url",
    "CapabilityStatement.url",
    "CapabilityStatement.rest.compartment",
    "CapabilityStatement.rest.resource.searchParam.definition",
    "ChargeItemDefinition.url",
    "CodeSystem.url",
    "CompartmentDefinition.url",
    "ConceptMap.url",
    "ConceptMap.group.source",
    "ConceptMap.group.target",
    "ConceptMap.group.element.target.dependsOn.system",
    "EffectEvidenceSynthesis.url",
    "EventDefinition.url",
    "Evidence.url",
    "EvidenceVariable.url",
    "ExampleScenario.url",
    "GraphDefinition.url",
    "ImplementationGuide.url",
    "Library.url",
    "Measure.url",
    "OperationDefinition.url",
    "PlanDefinition.url",
    "Questionnaire.url",
    "ResearchDefinition.url",
    "ResearchElementDefinition.url",
    "RiskEvidenceSynthesis.url",
    "SearchParameter.url",
    "StructureDefinition.url",
    "StructureDefinition.baseDefinition",
    "StructureDefinition.mapping.uri",
    "StructureMap.url",
    "TerminologyCapabilities.url",
    "TestScript.url",
    "ValueSet.url",
    "ValueSet.compose.include.system",
    "ValueSet.compose.include.valueSet",
    "ValueSet.expansion.contains.system",
    "MetadataResource.url",
];

/// Whether the element at `path` (of a core definition) holds an absolute URI.
pub fn applies(path: &str) -> bool {
    ABSOLUTE.contains(&path)
}

/// Checks the value of such an element (at `at`).
pub fn check(path: &str, value: &Value, at: &str, out: &mut Outcome) {
    let Some(uri) = value.as_str() else { return };
    if !is_absolute(uri) {
        out.error(
            "invalid",
            at,
            format!("'{uri}' is not an absolute URI, and {path} is defined as one"),
        );
    }
}
