//! FHIR search (http://hl7.org/fhir/R4/search.html), cut along the search page's own sections:
//!
//! - [`budget`]: how much work one search may ask for (checked while parsing);
//! - [`params`]: a request's parameters into a [`query::SearchQuery`] (the driver);
//! - [`param`]: one file per parameter type (modifiers, prefixes, values into
//!   [`query::Predicate`]s, index values extracted on write);
//! - [`chain`] (chains, `_has`, `_list`), [`contained`], [`hierarchy`] (reference
//!   `:below`/`:above`), [`sort`] (and paging), [`include`], [`result`] (`_count`, `_total`,
//!   `_summary`, `_elements`), [`conditional`] (criteria of conditional interactions);
//! - [`definitions`]: the parameters the server knows; [`extract`]: a resource's index entries
//!   ([`index`]) on write; [`query`]: the database-independent query model the store executes.
//!
//! Search does not read the store: what a query needs from the server before it runs (codes
//! of the terminology, members of a hierarchy) it asks through a [`Resolver`] passed in.

pub mod budget;
pub mod chain;
pub mod conditional;
pub mod contained;
pub mod definitions;
pub mod extract;
pub mod hierarchy;
pub mod include;
pub mod index;
pub mod param;
pub mod params;
pub mod query;
pub mod result;
pub mod sort;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::FhirError;
use query::{SearchQuery, TerminologyOp};

/// What search asks of the server before a query runs, for what the store cannot evaluate by
/// itself. Implemented over the store and the terminology by the interaction that searches.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// The codes each terminology modifier stands for, as `(system, codes)` pairs; an error
    /// (a 400 naming the modifier) when one cannot be given exactly.
    async fn codes(
        &self,
        ops: &[TerminologyOp],
    ) -> Result<HashMap<TerminologyOp, Vec<(String, Vec<String>)>>, FhirError>;

    /// One level of the hierarchy that the reference parameter `via` of `rtype` (to itself)
    /// makes: the ids of the resources that refer to one of `ids` (their children), or with
    /// `above` those that they refer to (their parents), at most [`hierarchy::MAX_MEMBERS`].
    async fn next_level(
        &self,
        rtype: &str,
        via: &str,
        ids: &[String],
        above: bool,
    ) -> Result<Vec<String>, FhirError>;
}

/// Replaces what the store cannot evaluate by itself with what it stands for, before the
/// query runs: token `:in`/`:below`/… by codes ([`param::token`]), reference `:below`/`:above`
/// by the hierarchy's members ([`hierarchy`]). Every search that runs a parsed query calls this.
pub async fn resolve(resolver: &dyn Resolver, query: &mut SearchQuery) -> Result<(), FhirError> {
    param::token::resolve(resolver, query).await?;
    hierarchy::resolve(resolver, query).await
}
