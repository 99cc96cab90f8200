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

/// A page size read from `_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The page size used: what was asked for, at most [`MAX_COUNT`].
    pub size: usize,
    /// What was asked for when it was above [`MAX_COUNT`] (saturated at `u64::MAX`).
    pub capped_from: Option<u64>,
}

impl Count {
    /// The informational message of a capped `_count`, for the page's OperationOutcome entry.
    pub fn note(&self) -> Option<String> {
        self.capped_from.map(|asked| {
            format!(
                "_count={asked} is above this server's maximum page size: pages hold at most {} resources (the self link says the _count used)",
                self.size
            )
        })
    }
}

/// Reads `_count`: a page size from 0 (the total only) up; a larger one than [`MAX_COUNT`] is
/// capped to it (the search page lets a server return fewer than asked), only a value that is
/// not a whole number is refused. Search, history and `$everything` read it here.
pub fn count(value: &str) -> Result<Count, FhirError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FhirError::invalid(format!(
            "_count must be a whole number from 0 up (pages hold at most {MAX_COUNT}), not '{value}'"
        )));
    }
    // Only digits: a parse failure is an overflow, a number above any maximum.
    let asked = value.parse::<u64>().unwrap_or(u64::MAX);
    Ok(match usize::try_from(asked) {
        Ok(size) if size <= MAX_COUNT => Count {
            size,
            capped_from: None,
        },
        _ => Count {
            size: MAX_COUNT,
            capped_from: Some(asked),
        },
    })
}

/// The request's parameters for a page's links, each `_count` saying the page size used.
pub fn with_count_used(params: &[(String, String)], size: usize) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(name, value)| match name.as_str() {
            "_count" => (name.clone(), size.to_string()),
            _ => (name.clone(), value.clone()),
        })
        .collect()
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
    fn count_is_a_whole_number_capped_at_the_maximum() {
        assert_eq!(count("0").unwrap().size, 0);
        assert_eq!(
            count("1000").unwrap(),
            Count {
                size: MAX_COUNT,
                capped_from: None
            }
        );
        assert_eq!(
            count("5000").unwrap(),
            Count {
                size: MAX_COUNT,
                capped_from: Some(5000)
            }
        );
        let huge = count("123456789012345678901234567890").unwrap();
        assert_eq!((huge.size, huge.capped_from), (MAX_COUNT, Some(u64::MAX)));
        assert!(count("5000").unwrap().note().unwrap().contains("5000"));
        assert!(count("10").unwrap().note().is_none());
        for malformed in ["-1", "ten", "", "1.5", " 5", "+5"] {
            assert!(count(malformed).is_err(), "{malformed}");
        }
    }

    #[test]
    fn links_say_the_count_used() {
        let params = [
            ("name".to_owned(), "x".to_owned()),
            ("_count".to_owned(), "5000".to_owned()),
        ];
        assert_eq!(
            with_count_used(&params, MAX_COUNT)[1],
            ("_count".to_owned(), "1000".to_owned())
        );
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
