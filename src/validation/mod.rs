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
//!
//! The StructureDefinitions, ValueSets, CodeSystems and Questionnaires clients store are added
//! on top of those (`live_definitions`, `stored_definition`): the live definitions are replaced
//! as a whole when they change, so a validation in progress keeps the ones it began with.

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
mod definitions;
pub mod element;
pub mod extension;
pub mod extension_context;
pub mod fixed_pattern;
pub mod invariant;
mod live_definitions;
pub mod outcome;
pub mod package;
pub mod questionnaire_response;
pub mod reference;
pub mod search_parameter;
pub mod slicing;
pub mod snapshot;
pub mod stored_definition;
pub mod structure_definition;
pub mod target_profile;
pub mod urn;
pub mod value_limits;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};

use serde_json::Value;

use crate::error::{FhirError, Issue};
use crate::terminology::{CodeSystem, Codes, Offline};
pub use definitions::Definitions;
use live_definitions::MadeFrom;
pub use live_definitions::{Rebuilt, StoredEntry};
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

/// The core definitions' file (`profiles/structure-definitions.json`).
const CORE_JSON: &str = include_str!("../../profiles/structure-definitions.json");

fn core_file() -> Value {
    serde_json::from_str(CORE_JSON).expect("profiles/structure-definitions.json is valid JSON")
}

/// The core definitions' snapshots by url as JSON text, for snapshot generation: made once from
/// the parse of the file that compiles the core ([`Definitions::build`]), and parsed one
/// definition at a time (the whole file parsed is ten times its size in memory).
static CORE_SNAPSHOTS: OnceLock<HashMap<String, String>> = OnceLock::new();

fn core_snapshots(file: Option<&Value>) -> &'static HashMap<String, String> {
    CORE_SNAPSHOTS.get_or_init(|| {
        let parsed;
        let file = match file {
            Some(file) => file,
            None => {
                parsed = core_file();
                &parsed
            }
        };
        file["StructureDefinition"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sd| {
                let elements = sd.pointer("/snapshot/element")?;
                Some((sd["url"].as_str()?.to_owned(), elements.to_string()))
            })
            .collect()
    })
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
    /// The built-in definitions and those of the packages: what stored ones are added to.
    base: Arc<Definitions>,
    /// `base` plus the conformance resources clients stored ([`Validator::use_stored`]):
    /// replaced as a whole, so a validation keeps the definitions it began with.
    live: RwLock<Arc<Definitions>>,
    /// What `live` was made from.
    stored: Mutex<MadeFrom>,
    /// Serialises reloads of the stored definitions, so that the last one to finish read the
    /// latest state.
    pub reload: tokio::sync::Mutex<()>,
    settings: Settings,
}

impl Default for Validator {
    fn default() -> Self {
        Validator::with_definitions(Definitions::built_in(), Settings::default())
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
        Validator {
            live: RwLock::new(defs.clone()),
            base: defs,
            stored: Mutex::default(),
            reload: tokio::sync::Mutex::new(()),
            settings,
        }
    }

    /// The definitions in force now: built-in, packages' and stored ones.
    pub fn defs(&self) -> Arc<Definitions> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The built-in and package definitions, without stored ones.
    pub fn base(&self) -> &Definitions {
        &self.base
    }

    /// Loads the packages of `settings` (the policy is checked by [`Validator::check_policy`],
    /// once stored definitions are in).
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
            Arc::new(Definitions::built_in().extend(resources)?)
        };
        Ok(Validator::with_definitions(defs, settings))
    }

    /// Checks the policy names known profiles (built-in, packages' or stored ones).
    pub fn check_policy(&self) -> Result<(), StartError> {
        let defs = self.defs();
        for (type_name, url) in &self.settings.required {
            let reason = match defs.get(url) {
                None => Some(
                    "the profile is not known (load its package with --package, or store it)"
                        .to_owned(),
                ),
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
        Ok(())
    }

    /// Every issue of `resource` (of `rtype`, at `at`) against the structure, the core
    /// definition of its type, the profiles it claims, the profiles required for its type and
    /// `profiles`.
    pub fn validate(&self, resource: &Value, rtype: &str, profiles: &[String]) -> Outcome {
        let defs = self.defs();
        let mut out = self.validate_with(&defs, resource, rtype, profiles);
        if !out.has_errors() {
            stored_definition::check(&self.base, &defs, resource, rtype, &mut out);
        }
        out
    }

    /// [`Validator::validate`] over `defs`, without the check of a stored definition's use.
    fn validate_with(
        &self,
        defs: &Definitions,
        resource: &Value,
        rtype: &str,
        profiles: &[String],
    ) -> Outcome {
        let mut out = Outcome::default();
        if let Err(e) = crate::fhir::validate::validate(resource, rtype) {
            // Unprocessable: the structure is R4's, only one of Signaal's profiles is broken.
            let only_profiles = matches!(e, FhirError::Unprocessable(_));
            out.issues.extend(e.issues());
            if !only_profiles {
                out.core_checked();
            }
            return out;
        }
        let Some(core) = defs.core(rtype) else {
            return out;
        };
        element::Walk::new(defs, resource, &mut out).resource_against(core, rtype);
        // Rules that come from no StructureDefinition, looked up by type so other writes pay
        // nothing for them.
        match rtype {
            "QuestionnaireResponse" => {
                questionnaire_response::check(defs, resource, rtype, &mut out)
            }
            "CapabilityStatement" => capability_statement::check(resource, rtype, &mut out),
            "CodeSystem" => code_system::check(resource, rtype, &mut out),
            "SearchParameter" => search_parameter::check(resource, rtype, &mut out),
            "Bundle" => {
                bundle::check(defs, resource, rtype, &mut out);
                bundle_reference::check_document(defs, resource, rtype, &mut out);
                bundle_reference_target::check(defs, resource, rtype, &mut out);
            }
            _ => {}
        }
        out.core_checked();
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
            .chain(&defs.globals)
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
            match defs.get(&url) {
                Some(sd) if sd.type_name == rtype => {
                    // The nested resources' own claims were walked with the core definition.
                    let mut walk = element::Walk::new(defs, resource, &mut out);
                    walk.claims = false;
                    walk.resource_against(sd, rtype);
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

    /// The check of the write path: the resource is refused with every issue when it has an
    /// error (400 when it breaks R4's own rules, 422 when only the profiles it claims or the
    /// deployment requires); otherwise what is left to check once the references' targets are found
    /// ([`target_profile`], done by the interaction: `interaction::target_profile`).
    /// A stored definition that could not be used (`stored_definition`) is refused with 422.
    pub fn check_write(&self, resource: &Value, rtype: &str) -> Result<TargetChecks, FhirError> {
        let defs = self.defs();
        let out = self.validate_with(&defs, resource, rtype, &[]);
        if !out.has_errors() {
            let targets = out.targets;
            let mut out = Outcome::default();
            stored_definition::check(&self.base, &defs, resource, rtype, &mut out);
            if out.has_errors() {
                return Err(FhirError::Unprocessable(
                    out.into_issues()
                        .into_iter()
                        .filter(|i| i.severity == "error")
                        .collect(),
                ));
            }
            return Ok(TargetChecks(targets));
        }
        let only_profiles = out.breaks_only_profiles();
        let issues: Vec<Issue> = out
            .into_issues()
            .into_iter()
            // What was not checked is for `$validate`; the note that validation stopped at
            // the issue limit stays, so the client knows the list is not complete.
            .filter(|i| i.severity != "information" || i.code == "too-costly")
            .collect();
        if only_profiles {
            Err(FhirError::Unprocessable(issues))
        } else {
            Err(FhirError::Invalid(issues))
        }
    }
}

/// The references a valid resource makes to targets that must conform to profiles: checked
/// once the targets are found ([`target_profile`]).
#[must_use = "the references' targets are still to be checked against their profiles"]
#[derive(Debug, Default)]
pub struct TargetChecks(pub Vec<target_profile::TargetCheck>);

impl Validator {
    /// Each target `find` finds against its reference's profiles ([`target_profile::check`]).
    pub fn check_targets<'t>(
        &self,
        checks: &[target_profile::TargetCheck],
        find: &dyn Fn(&target_profile::TargetCheck) -> target_profile::Target<'t>,
        out: &mut Outcome,
    ) {
        target_profile::check(&self.defs(), checks, find, out);
    }
}

/// Compiles the core definitions now rather than on the first write, if loading the stored
/// ones at start has not already (their own time is logged then, "core validation definitions
/// compiled"); returns the seconds this call took. Its log line, after the JSON schemas', marks
/// the end of the server's warm-up.
pub fn warm_up() -> f64 {
    let started = std::time::Instant::now();
    let defs = Definitions::built_in();
    tracing::info!(definitions = defs.len(), "validation definitions compiled");
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
