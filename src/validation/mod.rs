//! The validation engine: a resource against StructureDefinitions — the core R4 ones (resources,
//! data types, extensions, and the core profiles such as the vital-signs ones; from
//! `profiles/structure-definitions.json`, generated from HL7's package by
//! `scripts/generate_structure_definitions.py`), Signaal's own profiles and those of FHIR
//! packages loaded at start (`package`).
//!
//! Used on every write (the core definition of the resource's type, each profile it claims in
//! `meta.profile`, and the profiles the deployment requires for its type) and by `$validate`.
//! The generated JSON Schema (`fhir::validate`) checks the structure first (element names, JSON
//! types, primitive formats); the engine then checks what the definitions say beyond it:
//! cardinality and types as profiles narrow them (`element`), fixed and pattern values
//! (`fixed_pattern`), slicing (`slicing`), extensions by their definitions (`extension`),
//! invariants in FHIRPath (`invariant`) and bindings (`binding`). Definitions are compiled once
//! ([`Definitions`]); snapshots come from differentials when a profile has none (`snapshot`).

pub mod absolute_uri;
pub mod attachment;
pub mod binding;
pub mod bundle;
pub mod bundle_reference;
pub mod bundle_reference_target;
pub mod canonical;
pub mod capability_statement;
pub mod code_system;
pub mod coding_system;
pub mod element;
pub mod extension;
pub mod extension_context;
pub mod fixed_pattern;
pub mod invariant;
pub mod outcome;
pub mod package;
pub mod questionnaire_response;
pub mod reference;
pub mod search_parameter;
pub mod slicing;
pub mod snapshot;
pub mod structure_definition;
pub mod urn;
pub mod value_limits;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::Value;

use crate::error::{FhirError, Issue};
use crate::terminology::{CodeSystem, Codes, Offline};
pub use outcome::Outcome;
pub use structure_definition::{ConstraintCache, DefinitionError, StructureDefinition};

const CORE_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";

/// Signaal's own profiles and terminology, built in next to the core definitions.
const SIGNAAL_FILES: [&str; 6] = [
    include_str!("../../profiles/StructureDefinition-signaal-flag.json"),
    include_str!("../../profiles/StructureDefinition-signaal-risk-assessment.json"),
    include_str!("../../profiles/StructureDefinition-flag-priority.json"),
    include_str!("../../profiles/StructureDefinition-flag-risk-assessment.json"),
    include_str!("../../profiles/StructureDefinition-risk-score.json"),
    include_str!("../../profiles/StructureDefinition-risk-score-item.json"),
];

/// The core definitions as JSON, for snapshot generation (parsed only when a package or a
/// supporting profile needs it).
pub struct CoreFile(Value);

impl CoreFile {
    pub fn read() -> CoreFile {
        CoreFile(core_file())
    }

    fn by_url(&self) -> HashMap<&str, &Value> {
        self.0["StructureDefinition"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sd| Some((sd["url"].as_str()?, sd)))
            .collect()
    }
}

fn core_file() -> Value {
    serde_json::from_str(include_str!("../../profiles/structure-definitions.json"))
        .expect("profiles/structure-definitions.json is valid JSON")
}

/// The names of the FHIR types, for FHIRPath nodes (which borrow a `'static` type name). Looked
/// up for every element validated: hashed with FNV-1a ([`TypeNameHasher`]), not SipHash. Its keys
/// are the core definitions' type names, fixed at start: no input adds one.
static TYPE_NAMES: LazyLock<HashMap<String, &'static str, BuildHasherDefault<TypeNameHasher>>> =
    LazyLock::new(|| {
        let file = core_file();
        file["StructureDefinition"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|sd| sd["derivation"] == "specialization")
            .filter_map(|sd| sd["type"].as_str())
            .map(|t| (t.to_owned(), &*Box::leak(t.to_owned().into_boxed_str())))
            .collect()
    });

/// FNV-1a, for [`TYPE_NAMES`].
struct TypeNameHasher(u64);

impl Default for TypeNameHasher {
    fn default() -> Self {
        TypeNameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for TypeNameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The compiled definitions: StructureDefinitions by url, the ValueSets and CodeSystems of
/// packages, and the expansions made so far.
pub struct Definitions {
    by_url: HashMap<String, Arc<StructureDefinition>>,
    /// `ImplementationGuide.global` of the packages: (type, profile) every resource of the
    /// type must conform to.
    globals: Vec<(String, String)>,
    value_sets: HashMap<String, Arc<Value>>,
    code_systems: HashMap<String, Arc<CodeSystem>>,
    /// Questionnaires of packages (and supporting resources), by canonical url, for checking
    /// QuestionnaireResponses.
    questionnaires: HashMap<String, Arc<Value>>,
    expansions: Mutex<HashMap<String, Arc<Result<Codes, String>>>>,
}

static CORE: LazyLock<Arc<Definitions>> = LazyLock::new(|| {
    let extra = SIGNAAL_FILES
        .iter()
        .map(|f| serde_json::from_str(f).expect("Signaal's profiles are valid JSON"))
        .collect();
    Arc::new(Definitions::build(extra).expect("the built-in definitions compile"))
});

/// Raw snapshots for snapshot generation: the core file's and those made from the extras.
struct RawBases<'a> {
    core: HashMap<&'a str, &'a Value>,
    made: HashMap<String, Vec<Value>>,
}

impl snapshot::Bases for RawBases<'_> {
    fn snapshot_of(&self, url: &str) -> Option<Vec<Value>> {
        let url = url.split('|').next().unwrap_or(url);
        if let Some(made) = self.made.get(url) {
            return Some(made.clone());
        }
        self.core
            .get(url)?
            .pointer("/snapshot/element")?
            .as_array()
            .cloned()
    }
}

impl Definitions {
    /// The core R4 definitions and Signaal's, compiled once per process.
    pub fn built_in() -> Arc<Definitions> {
        CORE.clone()
    }

    /// The core definitions plus `extra` conformance resources (StructureDefinitions, with or
    /// without snapshot; ValueSets; CodeSystems). An extra one with the url of a core one is
    /// ignored: the core wins.
    pub fn build(extra: Vec<Value>) -> Result<Definitions, DefinitionError> {
        let file = core_file();
        let mut cache = ConstraintCache::default();
        let mut by_url = HashMap::new();
        for sd in file["StructureDefinition"].as_array().into_iter().flatten() {
            let compiled = StructureDefinition::compile(sd, &mut cache)?;
            by_url.insert(compiled.url.clone(), Arc::new(compiled));
        }
        let core = Definitions {
            by_url,
            globals: Vec::new(),
            value_sets: HashMap::new(),
            code_systems: HashMap::new(),
            questionnaires: HashMap::new(),
            expansions: Mutex::new(HashMap::new()),
        };
        core.extend(extra, &CoreFile(file))
    }

    /// These definitions plus `extra` conformance resources (as [`Definitions::build`]);
    /// `core` gives the core snapshots that snapshot generation starts from.
    pub fn extend(
        &self,
        extra: Vec<Value>,
        core: &CoreFile,
    ) -> Result<Definitions, DefinitionError> {
        let mut cache = ConstraintCache::default();
        let mut by_url = self.by_url.clone();
        let mut value_sets = self.value_sets.clone();
        let mut code_systems = self.code_systems.clone();
        let mut questionnaires = self.questionnaires.clone();
        let mut globals = self.globals.clone();
        let mut pending: HashMap<String, Value> = HashMap::new();
        for resource in extra {
            let url = resource
                .get("url")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let Some(url) = url else { continue };
            match resource.get("resourceType").and_then(Value::as_str) {
                Some("StructureDefinition") if !by_url.contains_key(&url) => {
                    pending.insert(url, resource);
                }
                Some("ValueSet") => {
                    value_sets.insert(url, Arc::new(resource));
                }
                Some("CodeSystem") => {
                    code_systems.insert(url, Arc::new(CodeSystem::from_json(&resource)));
                }
                Some("Questionnaire") => {
                    questionnaires.insert(url, Arc::new(resource));
                }
                Some("ImplementationGuide") => {
                    for global in resource
                        .get("global")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let (Some(t), Some(p)) = (
                            global.get("type").and_then(Value::as_str),
                            global.get("profile").and_then(Value::as_str),
                        ) {
                            globals.push((t.to_owned(), p.to_owned()));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut bases = RawBases {
            core: core.by_url(),
            made: HashMap::new(),
        };
        let urls: Vec<String> = pending.keys().cloned().collect();
        for url in urls {
            with_snapshot(&url, &pending, &mut bases, &mut HashSet::new())?;
        }
        for (url, raw) in &pending {
            let mut sd = raw.clone();
            if let Some(elements) = bases.made.get(url) {
                sd["snapshot"] = serde_json::json!({ "element": elements });
            }
            let compiled = StructureDefinition::compile(&sd, &mut cache)?;
            by_url.insert(url.clone(), Arc::new(compiled));
        }
        drop(bases);
        Ok(Definitions {
            by_url,
            globals,
            value_sets,
            code_systems,
            questionnaires,
            expansions: Mutex::new(HashMap::new()),
        })
    }

    /// The StructureDefinition with canonical `url` (a `|version` suffix is ignored).
    pub fn get(&self, url: &str) -> Option<&StructureDefinition> {
        let url = url.split('|').next().unwrap_or(url);
        self.by_url.get(url).map(Arc::as_ref)
    }

    /// The Questionnaire with canonical `url` (a `|version` suffix is ignored).
    pub fn questionnaire(&self, url: &str) -> Option<&Value> {
        let url = url.split('|').next().unwrap_or(url);
        self.questionnaires.get(url).map(Arc::as_ref)
    }

    /// The base definition of a type (`Observation`, `CodeableConcept`, `string`).
    pub fn core(&self, type_name: &str) -> Option<&StructureDefinition> {
        // Not `format!`: the walk asks this for nearly every element it visits.
        let mut url = String::with_capacity(CORE_PREFIX.len() + type_name.len());
        url.push_str(CORE_PREFIX);
        url.push_str(type_name);
        self.get(&url)
            .filter(|sd| sd.derivation == "specialization")
    }

    /// The `'static` name of a FHIR type.
    pub fn type_name(&self, name: &str) -> Option<&'static str> {
        TYPE_NAMES.get(name).copied()
    }

    /// Whether `suffix` (`Quantity`, `DateTime`) names a FHIR type in a choice element's name.
    pub fn is_type_suffix(&self, suffix: &str) -> bool {
        let mut lower = suffix.to_owned();
        if let Some(first) = lower.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        TYPE_NAMES.contains_key(suffix) || TYPE_NAMES.contains_key(&lower)
    }

    /// The number of StructureDefinitions held.
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }

    pub fn terminology(&self) -> Offline<'_> {
        Offline {
            value_sets: &self.value_sets,
            code_systems: &self.code_systems,
        }
    }

    /// The codes of a ValueSet, expanded once.
    pub fn expansion(&self, url: &str) -> Result<Arc<Codes>, String> {
        if let Some(done) = self.expansions.lock().expect("not poisoned").get(url) {
            return done.as_ref().clone().map(Arc::new);
        }
        let result = Arc::new(self.terminology().expand(url));
        self.expansions
            .lock()
            .expect("not poisoned")
            .insert(url.to_owned(), result.clone());
        result.as_ref().clone().map(Arc::new)
    }
}

/// Generates the snapshot of `url` (one of `pending`) into `bases.made`, its bases first.
fn with_snapshot(
    url: &str,
    pending: &HashMap<String, Value>,
    bases: &mut RawBases<'_>,
    visiting: &mut HashSet<String>,
) -> Result<(), DefinitionError> {
    if bases.made.contains_key(url) {
        return Ok(());
    }
    let Some(sd) = pending.get(url) else {
        return Ok(());
    };
    if !visiting.insert(url.to_owned()) {
        return Err(DefinitionError::Invalid {
            url: url.to_owned(),
            message: "its base definitions form a cycle".into(),
        });
    }
    if let Some(base) = sd.get("baseDefinition").and_then(Value::as_str) {
        let base = base.split('|').next().unwrap_or(base);
        if pending.contains_key(base) {
            with_snapshot(base, pending, bases, visiting)?;
        }
    }
    let elements = match sd.pointer("/snapshot/element").and_then(Value::as_array) {
        Some(elements) if !elements.is_empty() => elements.clone(),
        _ => {
            let generated =
                snapshot::generate(sd, bases).map_err(|message| DefinitionError::Invalid {
                    url: url.to_owned(),
                    message: format!("no snapshot can be generated: {message}"),
                })?;
            generated["snapshot"]["element"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    bases.made.insert(url.to_owned(), elements);
    Ok(())
}

/// What to do with a profile the server does not know, claimed in `meta.profile` or asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownProfile {
    #[default]
    Warning,
    Error,
}

/// The validation settings of `signaal serve`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--package FILE` (repeatable): FHIR packages (`.tgz`) to load.
    pub packages: Vec<std::path::PathBuf>,
    /// `--package-dir DIR`: every `.tgz` in it is loaded too.
    pub package_dir: Option<std::path::PathBuf>,
    /// `--unknown-profile warning|error`.
    pub unknown_profile: UnknownProfile,
    /// `--require-profile Type=url` (repeatable): profiles every resource of the type must
    /// conform to.
    pub required: Vec<(String, String)>,
}

/// The validator of a running server: its definitions and its policy.
pub struct Validator {
    pub defs: Arc<Definitions>,
    settings: Settings,
}

impl Default for Validator {
    fn default() -> Self {
        Validator {
            defs: Definitions::built_in(),
            settings: Settings::default(),
        }
    }
}

/// Why the validator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Package(#[from] package::PackageError),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("--require-profile {type_name}={url}: {reason}")]
    RequiredProfile {
        type_name: String,
        url: String,
        reason: String,
    },
}

impl Validator {
    /// A validator over `defs` with `settings`' policy (its packages are not read).
    pub fn with_definitions(defs: Arc<Definitions>, settings: Settings) -> Validator {
        Validator { defs, settings }
    }

    /// Loads the packages of `settings` and checks its policy names known profiles.
    pub fn start(settings: Settings) -> Result<Validator, StartError> {
        let mut files = settings.packages.clone();
        if let Some(dir) = &settings.package_dir {
            files.extend(package::in_folder(dir)?);
        }
        let defs = if files.is_empty() {
            Definitions::built_in()
        } else {
            let packages = package::load_all(&files)?;
            let resources = packages.into_iter().flat_map(|p| p.resources).collect();
            Arc::new(Definitions::built_in().extend(resources, &CoreFile::read())?)
        };
        for (type_name, url) in &settings.required {
            let reason = match defs.get(url) {
                None => {
                    Some("the profile is not known (load its package with --package)".to_owned())
                }
                Some(sd) if sd.type_name != *type_name => Some(format!(
                    "the profile constrains {}, not {type_name}",
                    sd.type_name
                )),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                return Err(StartError::RequiredProfile {
                    type_name: type_name.clone(),
                    url: url.clone(),
                    reason,
                });
            }
        }
        Ok(Validator { defs, settings })
    }

    /// Every issue of `resource` (of `rtype`, at `at`) against the structure, the core
    /// definition of its type, the profiles it claims, the profiles required for its type and
    /// `profiles`.
    pub fn validate(&self, resource: &Value, rtype: &str, profiles: &[String]) -> Outcome {
        let mut out = Outcome::default();
        if let Err(e) = crate::fhir::validate::validate(resource, rtype) {
            out.issues.extend(e.issues());
            return out;
        }
        let Some(core) = self.defs.core(rtype) else {
            return out;
        };
        element::Walk::new(&self.defs, resource, &mut out).resource_against(core, rtype);
        // Rules that come from no StructureDefinition, looked up by type so other writes pay
        // nothing for them.
        match rtype {
            "QuestionnaireResponse" => {
                questionnaire_response::check(&self.defs, resource, rtype, &mut out)
            }
            "CapabilityStatement" => capability_statement::check(resource, rtype, &mut out),
            "CodeSystem" => code_system::check(resource, rtype, &mut out),
            "SearchParameter" => search_parameter::check(resource, rtype, &mut out),
            "Bundle" => {
                bundle::check(&self.defs, resource, rtype, &mut out);
                bundle_reference::check_document(&self.defs, resource, rtype, &mut out);
                bundle_reference_target::check(&self.defs, resource, rtype, &mut out);
            }
            _ => {}
        }
        let claimed = resource
            .pointer("/meta/profile")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .enumerate()
            .map(|(i, url)| (url.to_owned(), Some(i)));
        let asked = profiles.iter().cloned().map(|url| (url, None));
        let required = self
            .settings
            .required
            .iter()
            .chain(&self.defs.globals)
            .filter(|(t, _)| t == rtype)
            .map(|(_, url)| (url.clone(), None));
        let mut seen = HashSet::new();
        for (url, claimed_at) in claimed.chain(asked).chain(required) {
            if !seen.insert(url.clone()) {
                continue;
            }
            let at = match claimed_at {
                Some(i) => format!("{rtype}.meta.profile[{i}]"),
                None => rtype.to_owned(),
            };
            match self.defs.get(&url) {
                Some(sd) if sd.type_name == rtype => {
                    element::Walk::new(&self.defs, resource, &mut out).resource_against(sd, rtype);
                }
                Some(sd) => out.error(
                    "invalid",
                    &at,
                    format!("The profile {url} constrains {}, not {rtype}", sd.type_name),
                ),
                None => {
                    let message = format!(
                        "The profile {url} is not known to this server, so the resource was not checked against it"
                    );
                    match self.settings.unknown_profile {
                        UnknownProfile::Warning => out.warning("not-supported", &at, message),
                        UnknownProfile::Error => out.error("not-supported", &at, message),
                    }
                }
            }
        }
        out
    }

    /// The check of the write path: the resource is refused (400) with every issue when it has
    /// an error.
    pub fn check_write(&self, resource: &Value, rtype: &str) -> Result<(), FhirError> {
        let out = self.validate(resource, rtype, &[]);
        if !out.has_errors() {
            return Ok(());
        }
        let issues: Vec<Issue> = out
            .into_issues()
            .into_iter()
            // What was not checked is for `$validate`; the note that validation stopped at
            // the issue limit stays, so the client knows the list is not complete.
            .filter(|i| i.severity != "information" || i.code == "too-costly")
            .collect();
        Err(FhirError::Invalid(issues))
    }
}

/// Compiles the core definitions now rather than on the first write; returns the seconds taken.
pub fn warm_up() -> f64 {
    let started = std::time::Instant::now();
    let defs = Definitions::built_in();
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        definitions = defs.len(),
        "validation definitions compiled"
    );
    started.elapsed().as_secs_f64()
}

/// The elements of the array `name` of `value`; none when it is absent or not an array.
fn array<'a>(value: &'a Value, name: &str) -> &'a [Value] {
    value
        .get(name)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(resource: Value, profiles: &[&str]) -> Vec<Issue> {
        let rtype = resource["resourceType"].as_str().unwrap().to_owned();
        let profiles: Vec<String> = profiles.iter().map(|p| p.to_string()).collect();
        Validator::default()
            .validate(&resource, &rtype, &profiles)
            .issues
    }

    fn errors(resource: Value, profiles: &[&str]) -> Vec<String> {
        issues(resource, profiles)
            .into_iter()
            .filter(|i| i.severity == "error")
            .map(|i| format!("{} @ {}", i.diagnostics, i.expression.unwrap_or_default()))
            .collect()
    }

    const BODY_WEIGHT: &str = "http://hl7.org/fhir/StructureDefinition/bodyweight";

    fn body_weight(value: Value) -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-01-02",
            "valueQuantity": value})
    }

    #[test]
    fn the_core_definitions_compile() {
        let defs = Definitions::built_in();
        assert!(defs.len() > 600, "{}", defs.len());
        assert!(defs.get(BODY_WEIGHT).is_some());
        assert!(defs
            .get("https://signaal.dev/fhir/StructureDefinition/signaal-flag")
            .is_some());
    }

    #[test]
    fn a_conformant_body_weight_passes_its_profile() {
        let ok = body_weight(
            json!({"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}),
        );
        assert_eq!(errors(ok, &[BODY_WEIGHT]), Vec::<String>::new());
    }

    #[test]
    fn a_body_weight_in_a_unit_outside_the_profile_fails() {
        let bad = body_weight(
            json!({"value": 72.5, "unit": "stone", "system": "http://unitsofmeasure.org", "code": "[stone_av]"}),
        );
        let found = errors(bad, &[BODY_WEIGHT]);
        assert!(!found.is_empty());
    }

    #[test]
    fn a_body_weight_without_category_breaks_the_slice() {
        let mut bad = body_weight(
            json!({"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}),
        );
        bad["category"] = json!([{"text": "something"}]);
        let found = errors(bad, &[BODY_WEIGHT]);
        assert!(found.iter().any(|e| e.contains("VSCat")), "{found:?}");
    }

    #[test]
    fn core_invariants_are_checked() {
        // obs-6: dataAbsentReason only when there is no value.
        let bad = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueString": "a", "dataAbsentReason": {"text": "unknown"}});
        let found = errors(bad, &[]);
        assert!(found.iter().any(|e| e.contains("obs-6")), "{found:?}");
        // per-1 on a Period inside a data type.
        let bad = json!({"resourceType": "Patient",
            "name": [{"family": "A", "period": {"start": "2020-01-02", "end": "2019-01-01"}}]});
        let found = errors(bad, &[]);
        assert!(found.iter().any(|e| e.contains("per-1")), "{found:?}");
    }

    #[test]
    fn an_unknown_profile_is_a_warning() {
        let r =
            json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/nothing"]}});
        let found = issues(r, &[]);
        assert!(
            found.iter().any(|i| i.severity == "warning"
                && i.expression.as_deref() == Some("Patient.meta.profile[0]")),
            "{found:?}"
        );
    }
}
