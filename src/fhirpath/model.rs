//! The small slice of the FHIR type model the evaluator needs.
//!
//! There is no full StructureDefinition model here. Types are known only from
//! (a) a choice element's suffix (`valueQuantity` → `Quantity`), (b) a
//! resource's `resourceType`, (c) the JSON kind where it is unambiguous (JSON
//! `true`/`false` is always FHIR `boolean`) and (d) literals. This module holds
//! the tables for (a) and the type hierarchy used by `is`/`as`/`ofType`, and
//! says which type names would need the full model (so the evaluator can
//! refuse instead of guessing).

/// Choice-element suffixes (as they appear in JSON keys) and the FHIR type
/// each one names. Covers every type allowed in an R4 `[x]` element.
const CHOICE_TYPES: &[(&str, &str)] = &[
    ("Base64Binary", "base64Binary"),
    ("Boolean", "boolean"),
    ("Canonical", "canonical"),
    ("Code", "code"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Decimal", "decimal"),
    ("Id", "id"),
    ("Instant", "instant"),
    ("Integer", "integer"),
    ("Markdown", "markdown"),
    ("Oid", "oid"),
    ("PositiveInt", "positiveInt"),
    ("String", "string"),
    ("Time", "time"),
    ("UnsignedInt", "unsignedInt"),
    ("Uri", "uri"),
    ("Url", "url"),
    ("Uuid", "uuid"),
    ("Address", "Address"),
    ("Age", "Age"),
    ("Annotation", "Annotation"),
    ("Attachment", "Attachment"),
    ("CodeableConcept", "CodeableConcept"),
    ("Coding", "Coding"),
    ("ContactPoint", "ContactPoint"),
    ("Count", "Count"),
    ("Distance", "Distance"),
    ("Duration", "Duration"),
    ("HumanName", "HumanName"),
    ("Identifier", "Identifier"),
    ("Money", "Money"),
    ("Period", "Period"),
    ("Quantity", "Quantity"),
    ("Range", "Range"),
    ("Ratio", "Ratio"),
    ("Reference", "Reference"),
    ("SampledData", "SampledData"),
    ("Signature", "Signature"),
    ("Timing", "Timing"),
    ("ContactDetail", "ContactDetail"),
    ("Contributor", "Contributor"),
    ("DataRequirement", "DataRequirement"),
    ("Expression", "Expression"),
    ("ParameterDefinition", "ParameterDefinition"),
    ("RelatedArtifact", "RelatedArtifact"),
    ("TriggerDefinition", "TriggerDefinition"),
    ("UsageContext", "UsageContext"),
    ("Dosage", "Dosage"),
    ("Meta", "Meta"),
];

/// The names of the choice elements (`value[x]` → `value`) of the R4 resources and data types,
/// sorted: from the R4 StructureDefinitions (every element path ending in `[x]`).
const CHOICE_ELEMENTS: &[&str] = &[
    "abatement",
    "additive",
    "age",
    "allowed",
    "amount",
    "answer",
    "asNeeded",
    "author",
    "born",
    "bounds",
    "characteristic",
    "chargeItem",
    "code",
    "collected",
    "content",
    "created",
    "date",
    "deceased",
    "defaultValue",
    "definingSubstance",
    "definition",
    "detail",
    "diagnosis",
    "dose",
    "doseNumber",
    "due",
    "effective",
    "entity",
    "event",
    "example",
    "fastingStatus",
    "fixed",
    "identified",
    "indication",
    "item",
    "legallyBinding",
    "location",
    "manufacturer",
    "maxValue",
    "medication",
    "minValue",
    "minimumVolume",
    "module",
    "multipleBirth",
    "name",
    "occurred",
    "occurrence",
    "offset",
    "onset",
    "participantEffective",
    "pattern",
    "performed",
    "probability",
    "procedure",
    "product",
    "quantity",
    "rate",
    "reported",
    "scheduled",
    "seriesDoses",
    "serviced",
    "source",
    "start",
    "statusReason",
    "studyEffective",
    "subject",
    "substance",
    "target",
    "time",
    "timing",
    "topic",
    "used",
    "value",
    "when",
];

/// FHIR data types that are not choice targets but can be named in a type test.
const OTHER_DATATYPES: &[&str] = &[
    "Element",
    "BackboneElement",
    "Extension",
    "Narrative",
    "xhtml",
    "ElementDefinition",
    "MarketingStatus",
    "Population",
    "ProdCharacteristic",
    "ProductShelfLife",
    "SubstanceAmount",
    "MoneyQuantity",
    "SimpleQuantity",
];

/// The R4 resource type names (abstract `Resource`/`DomainResource` included),
/// so a misspelt type in `is`/`as`/`ofType` is an error, not silently false.
const RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "DomainResource",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "Resource",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// The System (FHIRPath) primitive type names.
pub(crate) const SYSTEM_TYPES: &[&str] = &[
    "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity",
];

/// If `key` is `name` plus a choice-type suffix, returns the FHIR type name.
#[cfg(test)]
pub(crate) fn choice_type(key: &str, name: &str) -> Option<&'static str> {
    // Only the names of choice elements: `responseCode` is TestScript's own element, not a
    // `response[x]` of type code.
    if !is_choice_element(name) {
        return None;
    }
    choice_suffix_type(key, name)
}

/// Whether `name` is the name of a choice element (`value` of `value[x]`).
pub(crate) fn is_choice_element(name: &str) -> bool {
    CHOICE_ELEMENTS.binary_search(&name).is_ok()
}

/// [`choice_type`] for a `name` known to be a choice element's.
pub(crate) fn choice_suffix_type(key: &str, name: &str) -> Option<&'static str> {
    let suffix = key.strip_prefix(name)?;
    // A type suffix starts upper-case: most keys that share the prefix are other elements.
    if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    CHOICE_TYPES
        .iter()
        .find(|(s, _)| *s == suffix)
        .map(|(_, t)| *t)
}

/// True when `name` is a FHIR data type (primitive or complex), i.e. a type
/// that JSON alone cannot reveal for a non-choice element.
pub(crate) fn is_datatype(name: &str) -> bool {
    CHOICE_TYPES.iter().any(|(_, t)| *t == name) || OTHER_DATATYPES.contains(&name)
}

/// True when `name` names an R4 resource type.
pub(crate) fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.contains(&name)
}

/// The FHIR base type of a data type, per the R4 StructureDefinitions.
fn datatype_parent(name: &str) -> Option<&'static str> {
    Some(match name {
        "code" | "id" | "markdown" => "string",
        "url" | "canonical" | "oid" | "uuid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => {
            "Quantity"
        }
        "Element" => return None,
        _ => "Element",
    })
}

/// Resource types that derive from `Resource` directly, not `DomainResource`.
fn is_plain_resource(name: &str) -> bool {
    matches!(name, "Bundle" | "Binary" | "Parameters")
}

/// Whether a value whose FHIR type is `actual` satisfies a test for `wanted`
/// (same type or a supertype). `is_resource` says `actual` came from a
/// `resourceType`, so the resource hierarchy applies.
pub(crate) fn fhir_type_matches(actual: &str, is_resource: bool, wanted: &str) -> bool {
    if actual == wanted {
        return true;
    }
    if is_resource {
        return wanted == "Resource" || (wanted == "DomainResource" && !is_plain_resource(actual));
    }
    let mut t = actual;
    while let Some(p) = datatype_parent(t) {
        if p == wanted {
            return true;
        }
        t = p;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_suffixes_name_their_type() {
        assert_eq!(choice_type("valueQuantity", "value"), Some("Quantity"));
        assert_eq!(choice_type("valueDateTime", "value"), Some("dateTime"));
        assert_eq!(choice_type("onsetAge", "onset"), Some("Age"));
        assert_eq!(choice_type("valueSet", "value"), None);
        assert_eq!(choice_type("countMax", "count"), None);
    }

    #[test]
    fn hierarchy() {
        assert_eq!(choice_type("valueQuantity", "value"), Some("Quantity"));
        assert_eq!(choice_type("responseCode", "response"), None);
        assert!(fhir_type_matches("Age", false, "Quantity"));
        assert!(fhir_type_matches("code", false, "string"));
        assert!(!fhir_type_matches("string", false, "code"));
        assert!(fhir_type_matches("uuid", false, "uri"));
        assert!(fhir_type_matches("Patient", true, "DomainResource"));
        assert!(!fhir_type_matches("Bundle", true, "DomainResource"));
        assert!(fhir_type_matches("Bundle", true, "Resource"));
    }
}
