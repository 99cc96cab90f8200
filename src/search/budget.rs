//! The complexity budget of one search: how much work its parameters may ask for, checked
//! while they are parsed, before any SQL runs. A search over the budget is refused with 400
//! naming the limit (rather than running for minutes, or failing in the database: SQLite
//! refuses an expression tree deeper than 1,000, which ~1,000 AND-ed values reach).
//!
//! The defaults are far above what a real client sends; each is a `serve` setting
//! (`docs/operations.md`).

use std::time::Duration;

use crate::error::FhirError;

/// The limits of one search (and of the criteria of a conditional interaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most AND-ed parameters one search combines (`name=a,b&name=c` is 2): each is a level
    /// of the statement's expression tree. OR-ed values are bounded apart, by
    /// `search::params::MAX_VALUES` (a flat list each).
    pub max_terms: usize,
    /// The deepest chain or `_has` (`subject:Patient.organization.name` is 2).
    pub max_chain_depth: usize,
    /// The most `_include` and `_revinclude` parameters of one search.
    pub max_includes: usize,
    /// The most rounds `:iterate` follows references from included resources; when the fixed
    /// point is not reached by then, the result says so in an OperationOutcome entry.
    pub max_iterations: usize,
    /// How long the searches of one request may run in all (`store::time_budget`): the time
    /// of its search statements, summed; a statement still running when it is spent is stopped.
    pub timeout: Duration,
}

/// The default of `max_terms`.
pub const DEFAULT_MAX_TERMS: usize = 200;
/// The default of `max_chain_depth`.
pub const DEFAULT_MAX_CHAIN_DEPTH: usize = 4;
/// The default of `max_includes`.
pub const DEFAULT_MAX_INCLUDES: usize = 20;
/// The default of `max_iterations`.
pub const DEFAULT_MAX_ITERATIONS: usize = 16;
/// The default of `timeout`: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_terms: DEFAULT_MAX_TERMS,
            max_chain_depth: DEFAULT_MAX_CHAIN_DEPTH,
            max_includes: DEFAULT_MAX_INCLUDES,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Budget {
    /// Checks the AND-ed parameters so far (`total`) against `max_terms`.
    pub fn terms(&self, total: usize) -> Result<(), FhirError> {
        if total > self.max_terms {
            return Err(FhirError::invalid(format!(
                "The search is too complex: it combines more than {} parameters (the server's max-search-terms limit)",
                self.max_terms
            )));
        }
        Ok(())
    }

    /// Checks the chain depth of parameter `name` against `max_chain_depth`.
    pub fn chain(&self, name: &str) -> Result<(), FhirError> {
        let depth = chain_depth(name);
        if depth > self.max_chain_depth {
            return Err(FhirError::invalid(format!(
                "{name}: the search is too complex: chains and _has nest at most {} deep (the server's max-chain-depth limit)",
                self.max_chain_depth
            )));
        }
        Ok(())
    }

    /// Checks the number of `_include`/`_revinclude` parameters against `max_includes`.
    pub fn includes(&self, count: usize) -> Result<(), FhirError> {
        if count > self.max_includes {
            return Err(FhirError::invalid(format!(
                "The search is too complex: it has more than {} _include and _revinclude parameters (the server's max-includes limit)",
                self.max_includes
            )));
        }
        Ok(())
    }
}

/// How deep a parameter name chains: one level per `.` (a chain) and per `_has:` (a reverse
/// chain); a plain parameter is 0.
fn chain_depth(name: &str) -> usize {
    name.matches('.').count() + name.matches("_has:").count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depth_counts_chains_and_has() {
        assert_eq!(chain_depth("name"), 0);
        assert_eq!(chain_depth("subject:Patient.name"), 1);
        assert_eq!(chain_depth("subject.organization.name"), 2);
        assert_eq!(chain_depth("_has:Observation:subject:code"), 1);
        assert_eq!(
            chain_depth("_has:Observation:subject:_has:AuditEvent:entity:agent"),
            2
        );
    }

    #[test]
    fn limits_refuse_only_past_the_budget() {
        let budget = Budget {
            max_terms: 2,
            max_chain_depth: 1,
            max_includes: 1,
            max_iterations: 1,
            timeout: DEFAULT_TIMEOUT,
        };
        assert!(budget.terms(2).is_ok());
        assert!(budget.terms(3).is_err());
        assert!(budget.chain("subject.name").is_ok());
        assert!(budget.chain("subject.organization.name").is_err());
        assert!(budget.includes(1).is_ok());
        assert!(budget.includes(2).is_err());
    }
}
