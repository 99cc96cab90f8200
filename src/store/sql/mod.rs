//! SQL text shared by both stores: the statements are the same on SQLite and PostgreSQL apart
//! from placeholder syntax, so they are built once here with a [`Dialect`] and bound by each
//! store with [`Bind`] values.
//!
//! Search (https://hl7.org/fhir/R4/search.html) is cut as the search page is: the statement
//! (`search`), its filters (`filter`), one file per parameter type for the condition on its
//! index rows (`token`, `string`, `date`, `reference`, `number`, `quantity`, `uri`,
//! `composite`), and one per feature (`chain` and `_has`, `contained`, sorting and paging in
//! `page`, `include`). Apart from search: the writes, history, reads, the scoring queue, worker
//! leases and `EXPLAIN`. The builder (`builder`) is at the bottom; every file has golden SQL tests for both
//! dialects.

mod builder;
mod chain;
mod composite;
mod contained;
mod date;
mod explain;
mod filter;
mod history;
mod include;
mod lease;
mod number;
mod page;
mod quantity;
mod queue;
mod read;
mod reference;
mod search;
mod string;
mod token;
mod uri;
mod write;

#[cfg(test)]
pub(crate) mod golden;

pub use builder::{check, Bind, Dialect, Sql, MAX_BINDS};
pub use explain::{explain, statement};
pub use history::history;
pub use include::include_targets;
pub use lease::{release_lease, take_lease};
pub use queue::{
    claim, defer, dequeue, queue_compartment, queue_patient, queue_stats, queued, release,
    reschedule, scoring_failures, QUEUED_COLUMNS,
};
pub use read::{compartment, compartments, current_versions, read_version, VERSION_COLUMNS};
pub use search::{count, lastn, search};
pub use write::{
    delete_index, insert_index, insert_resources, insert_versions, lock_rows, multi_row,
    update_resource, IndexRows, INDEX_TABLES,
};
