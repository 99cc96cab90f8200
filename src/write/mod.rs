//! The write pipeline: where a resource becomes a stored version, for every writer alike — the
//! interactions (create, update, patch, delete, Bundle entries), the Provenance of each write,
//! the audit trail, the risk scorer and the benchmark.
//!
//! It sits below the interactions and above search and storage: it imports nothing from
//! `interaction`, `http`, `auth`, `scoring` or `app`. What a write needs from the server comes in
//! as arguments: the search parameters it indexes with ([`Indexing`]), and the transaction it
//! writes in ([`in_transaction`]).

pub mod outbox;
pub mod scoring_queue;
pub mod transaction;
pub mod version;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::search::definitions::Registry;

pub use transaction::in_transaction;
pub use version::{prepare, write, write_prepared, Prepared};

/// The search parameters the writes of one request or job index with — the server's registry
/// as it was when the request or job began — and whether one of those writes changed the active
/// SearchParameters: then its caller reloads the server's registry once the writes are
/// committed (search page, "Defining search parameters"). Likewise which definitions the
/// validator uses (`fhir::canonical::DEFINITION_TYPES`, decision 0051) they wrote or deleted:
/// its caller reads those again for the validator.
pub struct Indexing {
    registry: Arc<Registry>,
    search_params_changed: AtomicBool,
    /// The definitions written or deleted (type, id).
    definitions_written: Mutex<HashSet<(String, String)>>,
}

impl Indexing {
    pub fn new(registry: Arc<Registry>) -> Self {
        Indexing {
            registry,
            search_params_changed: AtomicBool::new(false),
            definitions_written: Mutex::new(HashSet::new()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether a write changed the active SearchParameters (wrote an active one, or changed or
    /// deleted one that was active).
    pub fn search_params_changed(&self) -> bool {
        self.search_params_changed.load(Ordering::Relaxed)
    }

    fn note_search_params_changed(&self) {
        self.search_params_changed.store(true, Ordering::Relaxed);
    }

    /// The StructureDefinitions, ValueSets, CodeSystems and Questionnaires (what the validator
    /// uses) the writes stored or deleted, as (type, id), each once.
    pub fn definitions_written(&self) -> Vec<(String, String)> {
        self.definitions_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn note_definition_written(&self, rtype: &str, id: &str) {
        self.definitions_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((rtype.to_owned(), id.to_owned()));
    }
}
