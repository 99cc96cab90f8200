//! The terminology the models read: every clinical concept a model decides on is a ValueSet in
//! `profiles/valueset-scoring-*.json` (written by `scripts/generate_scoring_value_sets.py`, the
//! sources in each `description`), and SNOMED CT conditions may also reach a Charlson category
//! through the ConceptMap `profiles/conceptmap-snomed-charlson.json`.
//!
//! Membership of a code is decided the way the value set's `compose` says: listed concepts,
//! `is-a`/`descendent-of`/`is-not-a`/`=` filters through the hierarchy of a CodeSystem the
//! server holds (`terminology::CodeSystem`: a SNOMED CT release or fragment stored as a
//! CodeSystem with `url` `http://snomed.info/sct`, nesting or `parent` properties), `regex`
//! filters on the code (the ICD-10 ranges), nested value sets, and excludes. Without a stored
//! hierarchy an `is-a` filter holds its head concept only, and the listed concepts serve.
//!
//! **Which version wins.** A ValueSet or ConceptMap stored on the server with the same canonical
//! `url` as a built-in one and a higher `version` (compared part by part, numerically where both
//! parts are numbers) replaces the built-in one from the next scoring on; an equal or lower
//! version, or status `retired`, is ignored. Of several stored CodeSystems with one url, the
//! highest version (then the newest) is used.
//!
//! **Decided or not recognised.** A condition code is *decided* when a model's value set holds
//! it, the ConceptMap has an element for it (a category, or `unmatched`), the code system is
//! ICD-10 / ICD-10-CM (Quan's ranges are a complete definition: a well-formed code outside them
//! is no comorbidity), or a stored CodeSystem of its system holds it (its hierarchy then decides
//! every `is-a` filter). Anything else is *not recognised*, and the models say so.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::Value;

use super::{ICD10, SNOMED};
use crate::error::FhirError;
use crate::search::index::index_text;
use crate::search::query::{Predicate, SearchQuery, UriMatch};
use crate::store::{Store, Version};
use crate::terminology::CodeSystem;

pub const ICD10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const ICPC2: &str = "http://hl7.org/fhir/sid/icpc-2";
const VALUE_SET_BASE: &str = "https://signaal.dev/fhir/ValueSet/";
/// The canonical url of the built-in SNOMED CT → Charlson ConceptMap.
pub const CHARLSON_MAP: &str = "https://signaal.dev/fhir/ConceptMap/snomed-charlson";

/// The canonical url of a built-in scoring value set (`scoring-{name}`).
pub fn url(name: &str) -> String {
    format!("{VALUE_SET_BASE}scoring-{name}")
}

/// The value sets that decide Condition codes (the others decide Observation and Encounter
/// codes).
pub fn condition_value_sets() -> Vec<String> {
    let mut out: Vec<String> = super::charlson::CATEGORIES
        .iter()
        .map(|c| url(&format!("charlson-{}", c.code)))
        .collect();
    out.push(url("heart-failure"));
    out.push(url("active-cancer"));
    out.push(url("palliative-care"));
    out
}

/// The value sets of Observation codes and of Encounter service types.
pub const OBSERVATION_VALUE_SETS: &[&str] = &[
    "haemoglobin",
    "sodium",
    "body-weight",
    "blood-pressure",
    "glucose",
    "oxygen-saturation",
];

/// The code systems whose stored CodeSystems (with their hierarchy) the models use.
const HIERARCHIES: &[&str] = &[SNOMED, ICD10, ICD10_CM, ICPC2];

/// The built-in value sets (`scripts/generate_scoring_value_sets.py`): the scoring ValueSets
/// among the canonical resources the server ships (`fhir::canonical`, the one list of files).
static BUILTIN_VALUE_SETS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let prefix = format!("{}/ValueSet/scoring-", crate::fhir::canonical::BASE);
    crate::fhir::canonical::all()
        .iter()
        .filter(|r| {
            r["url"]
                .as_str()
                .is_some_and(|url| url.starts_with(&prefix))
        })
        .cloned()
        .collect()
});

static BUILTIN_MAP: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!(
        "../../profiles/conceptmap-snomed-charlson.json"
    ))
    .expect("profiles/conceptmap-snomed-charlson.json is valid JSON")
});

/// The built-in terminology alone (no stored CodeSystem, ValueSet or ConceptMap).
pub static BUILTIN_TERMS: LazyLock<Arc<Terms>> =
    LazyLock::new(|| Arc::new(Terms::build(&[], &[], &[])));

/// One filter of a `compose.include`/`exclude`, compiled.
#[derive(Debug)]
enum Filter {
    IsA(String),
    DescendentOf(String),
    IsNotA(String),
    Equals(String),
    Regex(Regex),
    /// A filter this module does not implement: it selects nothing (and says so in `problems`).
    Unsupported,
}

/// One `compose.include`/`exclude` entry.
#[derive(Debug)]
struct Part {
    system: Option<String>,
    codes: HashSet<String>,
    filters: Vec<Filter>,
    value_sets: Vec<String>,
}

#[derive(Debug)]
struct Compiled {
    include: Vec<Part>,
    exclude: Vec<Part>,
}

/// The value sets, maps and hierarchies one scoring uses.
#[derive(Debug)]
pub struct Terms {
    compiled: HashMap<String, Compiled>,
    code_systems: HashMap<String, Arc<CodeSystem>>,
    /// (system, code) → the Charlson category codes it maps to (empty: `unmatched`).
    map: HashMap<(String, String), Vec<String>>,
    /// What was used besides the built-in files (`ValueSet/url|version`…), for the record.
    pub stored: Vec<String>,
    /// Filters that could not be used (a bad regex, an unknown operator).
    pub problems: Vec<String>,
}

/// Compares two `version` strings part by part (numerically where both parts are numbers).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut x = a.split(['.', '-']);
    let mut y = b.split(['.', '-']);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn version_of(r: &Value) -> &str {
    r["version"].as_str().unwrap_or("")
}

/// The resource that wins for one url: the built-in one unless a stored one (not retired) has
/// a higher version.
fn winner<'a>(builtin: &'a Value, stored: &'a [Value]) -> (&'a Value, bool) {
    let url = builtin["url"].as_str().unwrap_or("");
    let best = stored
        .iter()
        .filter(|r| r["url"] == url && r["status"] != "retired")
        .max_by(|a, b| compare_versions(version_of(a), version_of(b)));
    match best {
        Some(r) if compare_versions(version_of(r), version_of(builtin)) == Ordering::Greater => {
            (r, true)
        }
        _ => (builtin, false),
    }
}

impl Terms {
    /// The terminology from the built-in files and what the store holds: `value_sets` and
    /// `maps` stored with the built-in urls, `code_systems` stored for the hierarchies.
    pub fn build(value_sets: &[Value], maps: &[Value], code_systems: &[Value]) -> Terms {
        let mut terms = Terms {
            compiled: HashMap::new(),
            code_systems: HashMap::new(),
            map: HashMap::new(),
            stored: Vec::new(),
            problems: Vec::new(),
        };
        for builtin in BUILTIN_VALUE_SETS.iter() {
            let (vs, stored) = winner(builtin, value_sets);
            let url = vs["url"].as_str().unwrap_or_default().to_owned();
            if stored {
                terms
                    .stored
                    .push(format!("ValueSet {url}|{}", version_of(vs)));
            }
            let compiled = terms.compile(&url, vs);
            terms.compiled.insert(url, compiled);
        }
        let (map, stored) = winner(&BUILTIN_MAP, maps);
        if stored {
            terms
                .stored
                .push(format!("ConceptMap {CHARLSON_MAP}|{}", version_of(map)));
        }
        for group in map["group"].as_array().into_iter().flatten() {
            let system = group["source"].as_str().unwrap_or(SNOMED);
            for element in group["element"].as_array().into_iter().flatten() {
                let Some(code) = element["code"].as_str() else {
                    continue;
                };
                let entry = terms
                    .map
                    .entry((system.to_owned(), code.to_owned()))
                    .or_default();
                for target in element["target"].as_array().into_iter().flatten() {
                    if let Some(category) = target["code"].as_str() {
                        if target["equivalence"] != "disjoint"
                            && target["equivalence"] != "unmatched"
                        {
                            entry.push(category.to_owned());
                        }
                    }
                }
            }
        }
        let mut by_url: HashMap<&str, &Value> = HashMap::new();
        for cs in code_systems {
            let Some(url) = cs["url"].as_str() else {
                continue;
            };
            if !HIERARCHIES.contains(&url) {
                continue;
            }
            let better = by_url.get(url).is_none_or(|have| {
                compare_versions(version_of(cs), version_of(have)) != Ordering::Less
            });
            if better {
                by_url.insert(url, cs);
            }
        }
        for (url, cs) in by_url {
            if cs["content"] == "not-present" {
                continue;
            }
            terms
                .stored
                .push(format!("CodeSystem {url}|{}", version_of(cs)));
            terms
                .code_systems
                .insert(url.to_owned(), Arc::new(CodeSystem::from_json(cs)));
        }
        terms.stored.sort();
        terms
    }

    fn compile(&mut self, url: &str, vs: &Value) -> Compiled {
        let mut part_list = |key: &str| -> Vec<Part> {
            vs["compose"][key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| self.part(url, p))
                .collect()
        };
        Compiled {
            include: part_list("include"),
            exclude: part_list("exclude"),
        }
    }

    fn part(&mut self, url: &str, p: &Value) -> Part {
        let filters = p["filter"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let value = f["value"].as_str().unwrap_or_default().to_owned();
                match (f["property"].as_str(), f["op"].as_str()) {
                    (Some("concept"), Some("is-a")) => Filter::IsA(value),
                    (Some("concept"), Some("descendent-of")) => Filter::DescendentOf(value),
                    (Some("concept"), Some("is-not-a")) => Filter::IsNotA(value),
                    (Some("concept" | "code"), Some("=")) => Filter::Equals(value),
                    (Some("concept" | "code"), Some("regex")) => {
                        match Regex::new(&format!("^(?:{value})$")) {
                            Ok(re) => Filter::Regex(re),
                            Err(e) => {
                                self.problems
                                    .push(format!("{url}: the regex '{value}' is not valid: {e}"));
                                Filter::Unsupported
                            }
                        }
                    }
                    (property, op) => {
                        self.problems.push(format!(
                            "{url}: the filter '{} {} {value}' is not implemented",
                            property.unwrap_or(""),
                            op.unwrap_or("")
                        ));
                        Filter::Unsupported
                    }
                }
            })
            .collect();
        Part {
            system: p["system"]
                .as_str()
                .map(|s| s.split('|').next().unwrap_or(s).to_owned()),
            codes: p["concept"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["code"].as_str().map(str::to_owned))
                .collect(),
            filters,
            value_sets: p["valueSet"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| {
                    v.as_str()
                        .map(|s| s.split('|').next().unwrap_or(s).to_owned())
                })
                .collect(),
        }
    }

    /// Whether `code` of `system` is below (or is) `head` in a stored hierarchy.
    fn below(&self, system: &str, code: &str, head: &str, self_too: bool) -> bool {
        if code == head {
            return self_too;
        }
        self.code_systems
            .get(system)
            .is_some_and(|cs| cs.has(code) && cs.above(code).contains(head))
    }

    fn filter_holds(&self, system: &str, code: &str, filter: &Filter) -> bool {
        match filter {
            Filter::IsA(head) => self.below(system, code, head, true),
            Filter::DescendentOf(head) => self.below(system, code, head, false),
            Filter::IsNotA(head) => {
                // Only a held hierarchy can say that a code is not below the head.
                self.code_systems.get(system).is_some_and(|cs| cs.has(code))
                    && !self.below(system, code, head, true)
            }
            Filter::Equals(value) => code == value,
            Filter::Regex(re) => re.is_match(code),
            Filter::Unsupported => false,
        }
    }

    fn part_holds(&self, part: &Part, system: &str, code: &str, depth: usize) -> bool {
        if let Some(s) = &part.system {
            if s != system {
                return false;
            }
            if !part.codes.is_empty() && !part.codes.contains(code) {
                return false;
            }
            if !part
                .filters
                .iter()
                .all(|f| self.filter_holds(system, code, f))
            {
                return false;
            }
        } else if part.value_sets.is_empty() {
            return false;
        }
        part.value_sets
            .iter()
            .all(|vs| self.contains_at(vs, system, code, depth + 1))
    }

    fn contains_at(&self, url: &str, system: &str, code: &str, depth: usize) -> bool {
        if depth > 16 {
            return false;
        }
        let Some(c) = self.compiled.get(url) else {
            return false;
        };
        c.include
            .iter()
            .any(|p| self.part_holds(p, system, code, depth))
            && !c
                .exclude
                .iter()
                .any(|p| self.part_holds(p, system, code, depth))
    }

    /// Whether the value set `url` holds `system|code`.
    pub fn contains(&self, url: &str, system: &str, code: &str) -> bool {
        self.contains_at(url, system, code, 0)
    }

    /// Whether a CodeableConcept has a coding in the value set `url`.
    pub fn holds(&self, url: &str, concept: &Value) -> bool {
        super::codings(concept).any(|(s, c)| self.contains(url, s, c))
    }

    /// The Charlson category codes the ConceptMap maps `system|code` to (`Some(empty)`:
    /// mapped as no comorbidity; `None`: not in the map).
    pub fn mapped(&self, system: &str, code: &str) -> Option<&[String]> {
        self.map
            .get(&(system.to_owned(), code.to_owned()))
            .map(Vec::as_slice)
    }

    /// Whether the models can place a Condition code (see the module doc).
    pub fn decides_condition(&self, system: &str, code: &str) -> bool {
        static ICD_CODE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$").unwrap());
        if (system == ICD10 || system == ICD10_CM) && ICD_CODE.is_match(code) {
            return true;
        }
        if self.mapped(system, code).is_some() {
            return true;
        }
        if self.code_systems.get(system).is_some_and(|cs| cs.has(code)) {
            return true;
        }
        condition_value_sets()
            .iter()
            .any(|url| self.contains(url, system, code))
    }

    /// Whether an Observation code is one a model reads.
    pub fn decides_observation(&self, system: &str, code: &str) -> bool {
        OBSERVATION_VALUE_SETS
            .iter()
            .any(|name| self.contains(&url(name), system, code))
    }
}

/// The stored resources the terminology of a scoring depends on: ValueSets and the ConceptMap
/// with the built-in urls, and the CodeSystems of the hierarchies.
pub async fn stored(store: &dyn Store) -> Result<Vec<Version>, FhirError> {
    let by_url = |rtype: &str, urls: Vec<String>| SearchQuery {
        rtype: rtype.to_owned(),
        filters: vec![urls
            .iter()
            .map(|u| Predicate::Uri {
                param: "url".into(),
                value: index_text(u),
                mode: UriMatch::Exact,
            })
            .collect()],
        count: 1000,
        ..Default::default()
    };
    let value_set_urls: Vec<String> = BUILTIN_VALUE_SETS
        .iter()
        .filter_map(|v| v["url"].as_str().map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for query in [
        by_url("ValueSet", value_set_urls),
        by_url("ConceptMap", vec![CHARLSON_MAP.to_owned()]),
        by_url(
            "CodeSystem",
            HIERARCHIES.iter().map(|s| s.to_string()).collect(),
        ),
    ] {
        out.extend(store.search(&query).await?.into_iter().map(|h| h.version));
    }
    out.sort_by(|a, b| (&a.rtype, &a.id).cmp(&(&b.rtype, &b.id)));
    Ok(out)
}

/// Builds the terminology from what [`stored`] read.
pub fn from_stored(versions: &[Version]) -> Terms {
    let mut value_sets = Vec::new();
    let mut maps = Vec::new();
    let mut code_systems = Vec::new();
    for v in versions {
        let Some(r) = v
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
        else {
            continue;
        };
        match v.rtype.as_str() {
            "ValueSet" => value_sets.push(r),
            "ConceptMap" => maps.push(r),
            "CodeSystem" => code_systems.push(r),
            _ => {}
        }
    }
    Terms::build(&value_sets, &maps, &code_systems)
}
