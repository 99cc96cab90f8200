//! The stored versions the scorer has parsed, kept for its next scoring of the patient
//! (decision 0062).
//!
//! A stored version never changes: an update or a delete makes a new version. So the JSON
//! of `Type/id/version` parses to the same value every time, and the scorer, which re-reads a
//! patient's whole compartment at every write that queues it, parses only the versions it has
//! not seen. Keyed by the version, nothing kept here stands in for a newer one, whichever
//! server (on PostgreSQL) wrote it.
//!
//! Bounded by the JSON text of what it holds ([`DEFAULT_BUDGET`]): two generations, each
//! allowed half the budget. A version found is moved to the young one; when the young one is
//! full it becomes the old one and the old one is dropped: what was not used during a whole
//! generation goes first. A parsed value takes several times its text in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::store::Version;

/// The default bound of the cache: 16 MiB of JSON text (about 100 MB of parsed values when
/// full).
pub const DEFAULT_BUDGET: usize = 16 << 20;

/// A version: type, id, version.
type Key = (String, String, i64);

/// The parsed versions of one store (one [`crate::scoring::run::Scoring`]).
#[derive(Debug)]
pub struct ParsedVersions {
    /// The most JSON text (bytes) held; 0: nothing is kept.
    budget: usize,
    generations: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    young: Generation,
    old: Generation,
}

#[derive(Debug, Default)]
struct Generation {
    /// The value and the length of its JSON text.
    entries: HashMap<Key, (Arc<Value>, usize)>,
    bytes: usize,
}

impl Default for ParsedVersions {
    fn default() -> Self {
        ParsedVersions::new(DEFAULT_BUDGET)
    }
}

impl ParsedVersions {
    /// A cache holding up to `budget` bytes of JSON text.
    pub fn new(budget: usize) -> Self {
        ParsedVersions {
            budget,
            generations: Mutex::new(Generations::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The version's resource, parsed now or before; `None` for a deletion or JSON that does
    /// not parse (not kept: it is parsed, and fails, again).
    pub fn resource(&self, version: &Version) -> Option<Arc<Value>> {
        let content = version.content.as_deref()?;
        let key: Key = (version.rtype.clone(), version.id.clone(), version.version);
        if let Some(found) = self.found(&key) {
            self.hits.fetch_add(1, Relaxed);
            return Some(found);
        }
        self.misses.fetch_add(1, Relaxed);
        let parsed = Arc::new(serde_json::from_str::<Value>(content).ok()?);
        self.keep(key, parsed.clone(), content.len());
        Some(parsed)
    }

    /// How many versions were found parsed, and how many had to be parsed, since the start.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// The JSON text held now (bytes).
    pub fn bytes(&self) -> usize {
        let generations = self.lock();
        generations.young.bytes + generations.old.bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A version kept, moved to the young generation if found in the old one.
    fn found(&self, key: &Key) -> Option<Arc<Value>> {
        let mut generations = self.lock();
        if let Some((value, _)) = generations.young.entries.get(key) {
            return Some(value.clone());
        }
        let (value, bytes) = generations.old.entries.remove(key)?;
        generations.old.bytes -= bytes;
        let dropped = self.admit(&mut generations, key.clone(), value.clone(), bytes);
        drop(generations);
        drop(dropped);
        Some(value)
    }

    fn keep(&self, key: Key, value: Arc<Value>, bytes: usize) {
        let mut generations = self.lock();
        let dropped = self.admit(&mut generations, key, value, bytes);
        drop(generations);
        // The values of a dropped generation are freed outside the lock.
        drop(dropped);
    }

    /// Puts a version in the young generation; when that is full, it becomes the old one and
    /// the old one is answered, to be dropped once the lock is released.
    fn admit(
        &self,
        generations: &mut Generations,
        key: Key,
        value: Arc<Value>,
        bytes: usize,
    ) -> Option<Generation> {
        let half = self.budget / 2;
        if bytes > half {
            return None;
        }
        if let Some((_, before)) = generations.young.entries.insert(key, (value, bytes)) {
            generations.young.bytes -= before;
        }
        generations.young.bytes += bytes;
        if generations.young.bytes <= half {
            return None;
        }
        let young = std::mem::take(&mut generations.young);
        Some(std::mem::replace(&mut generations.old, young))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Method;
    use serde_json::json;

    fn version(id: &str, version: i64, content: &Value) -> Version {
        Version {
            rtype: "Observation".into(),
            id: id.into(),
            version,
            last_updated: 0,
            method: Method::Put,
            content: Some(content.to_string()),
        }
    }

    #[test]
    fn a_version_seen_before_is_not_parsed_again() {
        let cache = ParsedVersions::default();
        let v = version(
            "ob-1",
            1,
            &json!({"resourceType": "Observation", "id": "ob-1"}),
        );
        let first = cache.resource(&v).unwrap();
        let second = cache.resource(&v).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the same parsed value");
        assert_eq!(cache.counts(), (1, 1));
        assert_eq!(first["id"], "ob-1");
    }

    #[test]
    fn a_new_version_of_a_resource_is_parsed_anew() {
        let cache = ParsedVersions::default();
        let before =
            json!({"resourceType": "Observation", "id": "ob-7", "valueQuantity": {"value": 61.5}});
        let after =
            json!({"resourceType": "Observation", "id": "ob-7", "valueQuantity": {"value": 58.25}});
        assert_eq!(
            cache.resource(&version("ob-7", 1, &before)).unwrap()["valueQuantity"]["value"],
            61.5
        );
        let updated = cache.resource(&version("ob-7", 2, &after)).unwrap();
        assert_eq!(updated["valueQuantity"]["value"], 58.25);
        assert_eq!(cache.counts(), (0, 2));
    }

    #[test]
    fn a_deletion_and_unparsable_text_answer_nothing_and_are_not_kept() {
        let cache = ParsedVersions::default();
        let mut deleted = version("ob-2", 3, &json!({}));
        deleted.content = None;
        assert!(cache.resource(&deleted).is_none());
        let mut broken = version("ob-3", 1, &json!({}));
        broken.content = Some("{\"resourceType\": ".into());
        assert!(cache.resource(&broken).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_budget_bounds_what_is_kept_and_the_least_recently_used_goes_first() {
        let resource =
            |n: usize| json!({"resourceType": "Observation", "id": format!("ob-{n:03}")});
        let size = resource(0).to_string().len();
        // Room for about ten versions: five a generation.
        let cache = ParsedVersions::new(size * 10);
        let hot = version("ob-000", 1, &resource(0));
        cache.resource(&hot);
        for n in 1..100 {
            cache.resource(&version(&format!("ob-{n:03}"), 1, &resource(n)));
            // One version read at every scoring stays.
            cache.resource(&hot);
            assert!(
                cache.bytes() <= size * 10 + size,
                "{} bytes held",
                cache.bytes()
            );
        }
        let (hits, misses) = cache.counts();
        assert_eq!(
            (hits, misses),
            (99, 100),
            "the hot version was never parsed again"
        );
        // An early cold one was dropped: parsed again.
        cache.resource(&version("ob-001", 1, &resource(1)));
        assert_eq!(cache.counts().1, 101);
    }

    #[test]
    fn a_budget_of_nothing_keeps_nothing() {
        let cache = ParsedVersions::new(0);
        let v = version("ob-4", 1, &json!({"resourceType": "Observation"}));
        cache.resource(&v);
        cache.resource(&v);
        assert_eq!(cache.counts(), (0, 2));
        assert_eq!(cache.bytes(), 0);
    }
}
