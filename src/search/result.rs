//! Result parameters (search page, "Modifying Search Results"): `_count`, `_total`, and
//! `_summary`/`_elements`, which choose a [`Subset`] of each resource returned (the subsets
//! themselves are in [`crate::fhir::subset`]). `_sort` is in [`crate::search::sort`],
//! `_include`/`_revinclude` in [`crate::search::include`], `_contained` in
//! [`crate::search::contained`].

use crate::error::FhirError;
use crate::fhir::subset::Subset;
use crate::search::include::Include;

/// The page size when a search or history gives no `_count`.
pub const DEFAULT_COUNT: usize = 50;
/// The largest `_count` (and page) the server gives.
pub const MAX_COUNT: usize = 1000;

/// Reads `_count`: a page size from 0 (the total only) to [`MAX_COUNT`]. Search and history
/// read it here.
pub fn count(value: &str) -> Result<usize, FhirError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_COUNT)
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "_count must be a whole number from 0 to {MAX_COUNT}, not '{value}'"
            ))
        })
}

/// `_total`: whether a search reports the number of matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Accurate,
}

/// Reads `_total`.
pub fn total(value: &str) -> Result<Total, FhirError> {
    Ok(match value {
        "none" => Total::None,
        // The exact count is as cheap as any estimate this server could make.
        "estimate" | "accurate" => Total::Accurate,
        other => {
            return Err(FhirError::invalid(format!(
                "_total must be none, estimate or accurate, not '{other}'"
            )))
        }
    })
}

/// What the subset cannot be combined with: `_summary=text` with `_include`/`_revinclude`.
pub fn check(subset: &Subset, includes: &[Include]) -> Result<(), FhirError> {
    if *subset == Subset::Text && !includes.is_empty() {
        return Err(FhirError::invalid(
            "_summary=text cannot be combined with _include or _revinclude (search page, Summary)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_is_a_whole_number_up_to_the_maximum() {
        assert_eq!(count("0").unwrap(), 0);
        assert_eq!(count("1000").unwrap(), MAX_COUNT);
        assert!(count("1001").is_err());
        assert!(count("-1").is_err());
        assert!(count("ten").is_err());
    }

    #[test]
    fn an_estimate_is_the_accurate_total() {
        assert_eq!(total("estimate").unwrap(), Total::Accurate);
        assert_eq!(total("none").unwrap(), Total::None);
        assert!(total("some").is_err());
    }

    #[test]
    fn text_cannot_come_with_includes() {
        let include = crate::search::include::include(
            &crate::search::definitions::Registry::official(),
            "_include",
            "Observation:subject",
            "Observation",
        )
        .unwrap();
        let includes = [include];
        assert!(check(&Subset::Text, &includes).is_err());
        assert!(check(&Subset::Summary, &includes).is_ok());
        assert!(check(&Subset::Text, &[]).is_ok());
    }
}
