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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::search::definitions::Registry;

pub use transaction::in_transaction;
pub use version::{prepare, write, write_prepared, Prepared};

/// The search parameters the writes of one request or job index with — the server's registry
/// as it was when the request or job began — and whether one of those writes changed the active
/// SearchParameters: then its caller reloads the server's registry once the writes are
/// committed (search page, "Defining search parameters"). Likewise whether one wrote or deleted
/// a definition the validator uses (`fhir::canonical::DEFINITION_TYPES`, decision 0051): then
/// its caller reloads the stored definitions.
pub struct Indexing {
    registry: Arc<Registry>,
    search_params_changed: AtomicBool,
    definitions_changed: AtomicBool,
}

impl Indexing {
    pub fn new(registry: Arc<Registry>) -> Self {
        Indexing {
            registry,
            search_params_changed: AtomicBool::new(false),
            definitions_changed: AtomicBool::new(false),
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

    /// Whether a write stored or deleted a StructureDefinition, ValueSet, CodeSystem or
    /// Questionnaire (what the validator uses).
    pub fn definitions_changed(&self) -> bool {
        self.definitions_changed.load(Ordering::Relaxed)
    }

    fn note_definitions_changed(&self) {
        self.definitions_changed.store(true, Ordering::Relaxed);
    }
}
