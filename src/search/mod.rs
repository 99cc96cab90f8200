//! FHIR search: the parameter definitions, index extraction on write, query parsing, and the
//! database-independent query model the stores execute.

pub mod definitions;
pub mod extract;
pub mod hierarchy;
pub mod index;
pub mod params;
pub mod query;
pub mod terminology;

use crate::error::FhirError;
use crate::store::Store;
use query::SearchQuery;

/// Replaces what the store cannot evaluate by itself with what it stands for, before the
/// query runs: token `:in`/`:below`/… by codes ([`terminology`]), reference `:below`/`:above`
/// by the hierarchy's members ([`hierarchy`]). Every search that runs a parsed query calls this.
pub async fn resolve(store: &dyn Store, query: &mut SearchQuery) -> Result<(), FhirError> {
    terminology::resolve(store, query).await?;
    hierarchy::resolve(store, query).await
}
