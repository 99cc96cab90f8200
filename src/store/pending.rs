//! The writes of a transaction not yet sent to the database: a [`Tx`](super::Tx) of the SQL
//! store keeps the version, outbox and index rows of its writes (and the resource rows of new
//! resources) here and sends them as a few multi-row statements (`sql::write`) when it must:
//! before it commits, searches, reindexes, or reads or writes a resource it holds here, and
//! once [`MAX_PENDING`] writes are waiting. A transaction of a hundred entries or a batch of an
//! import then costs a handful of statements per table instead of a dozen per resource.
//!
//! What the transaction sees is unchanged: every statement that could read a held row runs
//! after the rows are written (see `SqlTx` in `sql_tx`), and a failure of the batch fails the
//! transaction, which is rolled back as any other.

use std::collections::{BTreeMap, HashMap};

use super::{Method, NewVersion};
use crate::search::index::IndexEntries;

/// Writes held before they are sent anyway: bounds the memory a huge transaction holds and
/// the size of one batch.
pub const MAX_PENDING: usize = 512;

/// A version written in a transaction but not yet sent.
pub struct Held {
    /// The row key of the resource row: known for a resource that existed (its row was moved
    /// to the new version when it was written); `None` for a new resource, whose row is
    /// inserted with the batch.
    pub rid: Option<i64>,
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub method: Method,
    pub content: Option<String>,
    pub compartment: Option<String>,
    pub index: IndexEntries,
    pub event: bool,
    pub source: Option<String>,
}

impl Held {
    fn new(new: &NewVersion<'_>, rid: Option<i64>) -> Self {
        Held {
            rid,
            rtype: new.rtype.to_owned(),
            id: new.id.to_owned(),
            version: new.version,
            last_updated: new.last_updated,
            method: new.method,
            content: new.content.map(str::to_owned),
            compartment: new.compartment.map(str::to_owned),
            index: new.index.clone(),
            event: new.event,
            source: new.source.map(str::to_owned),
        }
    }

    /// The version as the SQL builder takes it.
    pub fn as_new(&self) -> NewVersion<'_> {
        NewVersion {
            rtype: &self.rtype,
            id: &self.id,
            version: self.version,
            last_updated: self.last_updated,
            method: self.method,
            content: self.content.as_deref(),
            compartment: self.compartment.as_deref(),
            index: &self.index,
            event: self.event,
            source: self.source.as_deref(),
        }
    }
}

/// A batch taken out to be sent: the writes in the order they were made, and the patients
/// their new resources queue for scoring (each with the earliest time it was queued at).
pub struct Batch {
    pub writes: Vec<Held>,
    pub queue: BTreeMap<String, i64>,
}

/// The writes held by one transaction.
#[derive(Default)]
pub struct Pending {
    writes: Vec<Held>,
    /// For each resource held: whether its row is new (not in the database yet), and then its
    /// compartment.
    keys: HashMap<(String, String), Option<Option<String>>>,
    queue: BTreeMap<String, i64>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.queue.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.writes.len() >= MAX_PENDING
    }

    /// Whether a write of `rtype/id` is held.
    pub fn holds(&self, rtype: &str, id: &str) -> bool {
        !self.keys.is_empty() && self.keys.contains_key(&(rtype.to_owned(), id.to_owned()))
    }

    /// Holds a write; `rid` is the row key of an existing resource's row (already moved to
    /// this version), `None` for a new resource.
    pub fn push(&mut self, new: &NewVersion<'_>, rid: Option<i64>) {
        let created = rid.is_none().then(|| new.compartment.map(str::to_owned));
        self.keys
            .insert((new.rtype.to_owned(), new.id.to_owned()), created);
        self.writes.push(Held::new(new, rid));
    }

    /// Queues for scoring the patient whose compartment holds `rtype/id` when it is a new
    /// resource held here (whose row the database does not have yet): `true` if so, whether
    /// or not it is in a compartment; `false` if the database's row is to be asked.
    pub fn queue_compartment(&mut self, rtype: &str, id: &str, at: i64) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        match self.keys.get(&(rtype.to_owned(), id.to_owned())) {
            Some(Some(compartment)) => {
                if let Some(patient) = compartment {
                    let earliest = self.queue.entry(patient.clone()).or_insert(at);
                    *earliest = (*earliest).min(at);
                }
                true
            }
            _ => false,
        }
    }

    /// Takes everything held out, leaving nothing.
    pub fn take(&mut self) -> Batch {
        self.keys.clear();
        Batch {
            writes: std::mem::take(&mut self.writes),
            queue: std::mem::take(&mut self.queue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_version<'a>(
        id: &'a str,
        compartment: Option<&'a str>,
        index: &'a IndexEntries,
    ) -> NewVersion<'a> {
        NewVersion {
            rtype: "Observation",
            id,
            version: 1,
            last_updated: 1000,
            method: Method::Post,
            content: Some("{}"),
            compartment,
            index,
            event: true,
            source: None,
        }
    }

    #[test]
    fn a_held_new_resource_queues_its_patient_once_at_the_earliest_time() {
        let index = IndexEntries::default();
        let mut pending = Pending::default();
        pending.push(&new_version("o1", Some("p1"), &index), None);
        pending.push(&new_version("o2", Some("p1"), &index), None);
        pending.push(&new_version("o3", None, &index), None);
        assert!(pending.queue_compartment("Observation", "o1", 20));
        assert!(pending.queue_compartment("Observation", "o2", 10));
        assert!(pending.queue_compartment("Observation", "o3", 10));
        let batch = pending.take();
        assert_eq!(batch.writes.len(), 3);
        assert_eq!(batch.queue, BTreeMap::from([("p1".to_owned(), 10)]));
        assert!(pending.is_empty());
    }

    #[test]
    fn an_existing_resource_is_queued_from_its_row() {
        let index = IndexEntries::default();
        let mut pending = Pending::default();
        pending.push(&new_version("o1", Some("p1"), &index), Some(7));
        assert!(pending.holds("Observation", "o1"));
        assert!(!pending.holds("Observation", "o2"));
        assert!(!pending.queue_compartment("Observation", "o1", 10));
        assert!(!pending.queue_compartment("Observation", "o2", 10));
    }
}
