//! The live definitions: the built-in and package ones plus the StructureDefinitions, ValueSets,
//! CodeSystems and Questionnaires clients stored (decision 0051). They are rebuilt when the
//! stored ones change ([`Validator::use_stored`] at start and when another server changed one,
//! [`Validator::use_changed`] after a request wrote some), incrementally: only what changed is
//! parsed and compiled again. The result is swapped in whole, so a validation in progress keeps
//! the definitions it began with. A transaction's own definitions are added for its entries
//! only ([`Validator::with_resources`]). Which stored resources are used, and what a write of
//! one is told: `stored_definition`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use super::{stored_definition, DefinitionError, Validator};

/// A stored definition as the store holds it: `type/id`, its version and when it was written,
/// and its JSON text (`None`: deleted).
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub key: String,
    pub version: i64,
    pub last_updated: i64,
    pub text: Option<String>,
}

/// One stored definition the live definitions were made from.
struct Made {
    version: i64,
    last_updated: i64,
    /// The resource, when it is used (`stored_definition::usable`).
    used: Option<Arc<Value>>,
}

/// The stored resources the live definitions were made from.
#[derive(Default)]
pub(super) struct MadeFrom {
    /// By `type/id`.
    entries: HashMap<String, Made>,
    /// The urls of the StructureDefinitions among them that could not be used (tried again at
    /// every rebuild: a base stored later makes them usable).
    left_out: HashSet<String>,
}

/// The definition type and url of a stored resource.
fn type_url(r: &Value) -> Option<(String, String)> {
    Some((
        r.get("resourceType")?.as_str()?.to_owned(),
        r.get("url")?.as_str()?.to_owned(),
    ))
}

/// What a rebuild of the stored definitions did ([`Validator::use_stored`]).
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Whether the live definitions were replaced (not when the stored resources are those
    /// they were made from).
    pub replaced: bool,
    /// The stored StructureDefinitions left out, and why (`stored_definition::unused` says
    /// which are left out without being wrong).
    pub left_out: Vec<DefinitionError>,
}

impl Validator {
    /// Makes the live definitions the base ones plus `all` the stored definitions (of two with
    /// one url, the one written last is used), as `stored_definition::usable` keeps them.
    /// Incremental: only what changed since the last call is parsed and compiled again (with
    /// the profiles built on a changed one, and those left out before); nothing when nothing
    /// changed.
    pub fn use_stored(&self, all: Vec<StoredEntry>) -> Rebuilt {
        let mut made = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::new();
        for entry in all {
            let key = entry.key.clone();
            if let Some(made) = self.made(&mut made.entries, entry) {
                next.insert(key, made);
            }
        }
        self.rebuild(&mut made, next)
    }

    /// [`Validator::use_stored`] for the definitions `changed` (those a request wrote or
    /// deleted); the others are as they were.
    pub fn use_changed(&self, changed: Vec<StoredEntry>) -> Rebuilt {
        let mut made = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: HashMap<String, Made> = made
            .entries
            .iter()
            .map(|(k, m)| {
                let copy = Made {
                    version: m.version,
                    last_updated: m.last_updated,
                    used: m.used.clone(),
                };
                (k.clone(), copy)
            })
            .collect();
        for entry in changed {
            let key = entry.key.clone();
            next.remove(&key);
            if let Some(made) = self.made(&mut made.entries, entry) {
                next.insert(key, made);
            }
        }
        self.rebuild(&mut made, next)
    }

    /// The stored definition `entry` as made: reused when its version is the one made before,
    /// else parsed. `None` when it is deleted.
    fn made(&self, before: &mut HashMap<String, Made>, entry: StoredEntry) -> Option<Made> {
        let text = entry.text?;
        if let Some(m) = before
            .get(&entry.key)
            .filter(|m| m.version == entry.version)
        {
            return Some(Made {
                version: m.version,
                last_updated: m.last_updated,
                used: m.used.clone(),
            });
        }
        let used = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|r| stored_definition::usable(&self.base, r))
            .map(|r| Arc::new(stored_definition::as_used(r)));
        Some(Made {
            version: entry.version,
            last_updated: entry.last_updated,
            used,
        })
    }

    /// Replaces the live definitions made from `made` by those made from `next`, compiling only
    /// what changed.
    fn rebuild(&self, made: &mut MadeFrom, next: HashMap<String, Made>) -> Rebuilt {
        let url_of = |m: &Made| m.used.as_deref().and_then(type_url);
        // The urls whose resource changed: added, a new version, or gone.
        let mut changed: HashSet<(String, String)> = HashSet::new();
        for (key, m) in &made.entries {
            match next.get(key) {
                Some(n) if n.version == m.version => {}
                _ => changed.extend(url_of(m)),
            }
        }
        for (key, n) in &next {
            match made.entries.get(key) {
                Some(m) if m.version == n.version => {}
                _ => changed.extend(url_of(n)),
            }
        }
        if changed.is_empty() {
            made.entries = next;
            return Rebuilt::default();
        }
        changed.extend(
            made.left_out
                .iter()
                .map(|url| ("StructureDefinition".to_owned(), url.clone())),
        );
        let live = self.defs();
        // Profiles built on a changed one (their snapshots were made from it).
        let sd = |url: &str| ("StructureDefinition".to_owned(), url.to_owned());
        let built_on_changed: Vec<(String, String)> = next
            .values()
            .filter_map(url_of)
            .filter(|(rtype, _)| rtype == "StructureDefinition")
            .filter(|(_, url)| {
                let mut base = live.get(url).and_then(|d| d.base.clone());
                let mut steps = 0;
                while let Some(b) = base {
                    if changed.contains(&sd(&b)) {
                        return true;
                    }
                    steps += 1;
                    base = live
                        .get(&b)
                        .and_then(|d| d.base.clone())
                        .filter(|_| steps < 64);
                }
                false
            })
            .collect();
        changed.extend(built_on_changed);
        // Oldest first: of two with one url, the later is used.
        let mut again: Vec<(i64, &String, &Arc<Value>)> = next
            .iter()
            .filter_map(|(k, m)| Some((m.last_updated, k, m.used.as_ref()?)))
            .filter(|(_, _, r)| type_url(r).is_some_and(|t| changed.contains(&t)))
            .collect();
        again.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let again = again
            .into_iter()
            .map(|(_, _, r)| r.as_ref().clone())
            .collect();
        let (defs, left_out) = live.without(&changed).extend_leaving_out(again);
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(defs);
        *made = MadeFrom {
            entries: next,
            left_out: left_out
                .iter()
                .filter_map(|e| e.url().map(str::to_owned))
                .collect(),
        };
        Rebuilt {
            replaced: true,
            left_out,
        }
    }

    /// This validator with `resources` (those a transaction Bundle writes) added to the live
    /// definitions, each replacing a stored one with its url: the entries of a transaction are
    /// validated with the definitions it brings. `None` when it brings none that is used.
    pub fn with_resources(&self, resources: Vec<Value>) -> Option<Validator> {
        let brought: Vec<Value> = resources
            .into_iter()
            .filter(|r| stored_definition::usable(&self.base, r))
            .map(stored_definition::as_used)
            .collect();
        if brought.is_empty() {
            return None;
        }
        let replaced: HashSet<(String, String)> = brought.iter().filter_map(type_url).collect();
        let (defs, _) = self.defs().without(&replaced).extend_leaving_out(brought);
        Some(Validator {
            base: self.base.clone(),
            live: RwLock::new(Arc::new(defs)),
            stored: Mutex::default(),
            reload: tokio::sync::Mutex::new(()),
            settings: self.settings.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Definitions;
    use serde_json::json;

    /// A profile on Observation numbered `n`, based on `base`, requiring `element`.
    fn stored_profile(n: usize, base: &str, element: &str) -> Value {
        json!({"resourceType": "StructureDefinition",
            "url": format!("https://example.org/fhir/StructureDefinition/tide-{n}"),
            "name": format!("Tide{n}"), "status": "active", "kind": "resource",
            "abstract": false, "type": "Observation", "derivation": "constraint",
            "baseDefinition": base,
            "differential": {"element": [{"id": element, "path": element, "min": 1}]}})
    }

    /// Stored entries of `(type/id/version, resource)`, written in this order.
    fn entries(stored: &[(String, Value)]) -> Vec<StoredEntry> {
        stored
            .iter()
            .enumerate()
            .map(|(i, (k, r))| {
                let (key, version) = k.rsplit_once('/').unwrap();
                StoredEntry {
                    key: key.to_owned(),
                    version: version.parse().unwrap(),
                    last_updated: i as i64,
                    text: Some(r.to_string()),
                }
            })
            .collect()
    }

    #[test]
    fn stored_profiles_are_used_and_a_rebuild_is_skipped_when_nothing_changed() {
        let validator = Validator::default();
        let core = "http://hl7.org/fhir/StructureDefinition/Observation";
        let stored = vec![
            (
                "StructureDefinition/a/1".to_owned(),
                stored_profile(1, core, "Observation.subject"),
            ),
            (
                "StructureDefinition/b/1".to_owned(),
                stored_profile(
                    2,
                    "https://example.org/fhir/StructureDefinition/tide-1",
                    "Observation.note",
                ),
            ),
            (
                "StructureDefinition/c/1".to_owned(),
                stored_profile(
                    3,
                    "https://example.org/fhir/StructureDefinition/nowhere",
                    "Observation.note",
                ),
            ),
        ];
        let rebuilt = validator.use_stored(entries(&stored));
        assert!(rebuilt.replaced);
        assert_eq!(rebuilt.left_out.len(), 1, "{:?}", rebuilt.left_out);
        let r = json!({"resourceType": "Observation", "status": "final", "code": {"text": "tide"}});
        let found = validator
            .validate(
                &r,
                "Observation",
                &["https://example.org/fhir/StructureDefinition/tide-2".to_owned()],
            )
            .issues;
        let said: Vec<_> = found
            .iter()
            .filter(|i| i.severity == "error")
            .map(|i| i.diagnostics.clone())
            .collect();
        assert!(
            said.iter().any(|d| d.contains("element subject")),
            "{found:?}"
        );
        assert!(said.iter().any(|d| d.contains("element note")), "{found:?}");
        assert!(!validator.use_stored(entries(&stored)).replaced);
        // A new version of the base profile: the one built on it is made again over it; the
        // one left out is tried again, and its base is now stored.
        let mut changed = stored.clone();
        changed[0] = (
            "StructureDefinition/a/2".to_owned(),
            stored_profile(1, core, "Observation.issued"),
        );
        changed.push((
            "StructureDefinition/d/1".to_owned(),
            json!({"resourceType": "StructureDefinition",
                "url": "https://example.org/fhir/StructureDefinition/nowhere", "name": "Nowhere",
                "status": "active", "kind": "resource", "abstract": false, "type": "Observation",
                "derivation": "constraint", "baseDefinition": core,
                "differential": {"element": [{"id": "Observation.method", "path": "Observation.method", "min": 1}]}}),
        ));
        let rebuilt = validator.use_stored(entries(&changed));
        assert!(
            rebuilt.replaced && rebuilt.left_out.is_empty(),
            "{:?}",
            rebuilt.left_out
        );
        let said: Vec<_> = validator
            .validate(
                &r,
                "Observation",
                &[
                    "https://example.org/fhir/StructureDefinition/tide-2".to_owned(),
                    "https://example.org/fhir/StructureDefinition/tide-3".to_owned(),
                ],
            )
            .issues
            .into_iter()
            .filter(|i| i.severity == "error")
            .map(|i| i.diagnostics)
            .collect();
        for element in ["issued", "note", "method"] {
            assert!(
                said.iter()
                    .any(|d| d.contains(&format!("element {element}"))),
                "{element}: {said:?}"
            );
        }
        assert!(
            !said.iter().any(|d| d.contains("element subject")),
            "{said:?}"
        );
        // A request deletes the base profile: the one built on it is left out.
        let rebuilt = validator.use_changed(vec![StoredEntry {
            key: "StructureDefinition/a".to_owned(),
            version: 3,
            last_updated: 10,
            text: None,
        }]);
        assert_eq!(rebuilt.left_out.len(), 1, "{:?}", rebuilt.left_out);
        assert!(validator
            .defs()
            .get("https://example.org/fhir/StructureDefinition/tide-2")
            .is_none());
        assert!(validator
            .defs()
            .get("https://example.org/fhir/StructureDefinition/nowhere")
            .is_some());
        assert!(validator.use_stored(Vec::new()).replaced);
        assert!(validator
            .defs()
            .get("https://example.org/fhir/StructureDefinition/tide-1")
            .is_none());
    }

    /// What a rebuild costs with `n` stored profiles (printed; run with `--nocapture`).
    #[test]
    fn a_rebuild_does_not_compile_the_core_again() {
        let validator = Validator::default();
        let core = "http://hl7.org/fhir/StructureDefinition/Observation";
        // The first one also reads the core snapshots (once per process).
        let started = std::time::Instant::now();
        validator.use_stored(entries(&[(
            "StructureDefinition/w/1".into(),
            stored_profile(999, core, "Observation.note"),
        )]));
        eprintln!(
            "first rebuild (core snapshots read): {:?}",
            started.elapsed()
        );
        for n in [1usize, 10, 50] {
            let stored: Vec<(String, Value)> = (0..n)
                .map(|i| {
                    (
                        format!("StructureDefinition/{i}/{n}"),
                        stored_profile(i, core, "Observation.subject"),
                    )
                })
                .collect();
            let started = std::time::Instant::now();
            let rebuilt = validator.use_stored(entries(&stored));
            let took = started.elapsed();
            assert!(rebuilt.replaced && rebuilt.left_out.is_empty());
            eprintln!("rebuild with {n} stored profiles, all new: {took:?}");
        }
        // One more profile next to 50: only it is compiled.
        let mut stored: Vec<(String, Value)> = (0..51)
            .map(|i| {
                (
                    format!("StructureDefinition/{i}/50"),
                    stored_profile(i, core, "Observation.subject"),
                )
            })
            .collect();
        stored[50].0 = "StructureDefinition/50/51".to_owned();
        let started = std::time::Instant::now();
        let rebuilt = validator.use_stored(entries(&stored));
        eprintln!("one profile added to 50 stored: {:?}", started.elapsed());
        assert!(rebuilt.replaced && rebuilt.left_out.is_empty());
        assert_eq!(validator.defs().len(), Definitions::built_in().len() + 51);
    }
}
