//! The issues one validation finds: severity, an issue-type code, a FHIRPath location and a
//! message a person reads. What could not be checked (a binding to a value set the server cannot
//! expand, an invariant the FHIRPath evaluator cannot evaluate) is said once, as information.

use std::collections::BTreeSet;

use super::target_profile::TargetCheck;
use crate::error::Issue;

fn is_error(severity: &str) -> bool {
    matches!(severity, "error" | "fatal")
}

/// At most this many issues are kept (the limit of the write path's OperationOutcomes).
pub const MAX_ISSUES: usize = crate::fhir::validate::MAX_ISSUES;

#[derive(Default, Debug)]
pub struct Outcome {
    pub issues: Vec<Issue>,
    not_checked: BTreeSet<String>,
    /// References to check against their elements' profiles once their targets are found
    /// (`target_profile`; decision 0052).
    pub targets: Vec<TargetCheck>,
    /// Whether the resource broke R4's own rules (the JSON format, the core definition of its
    /// type, the rules beyond it), as opposed to only the profiles it was checked against
    /// ([`Outcome::core_checked`]).
    breaks_core: bool,
    /// Errors found before [`Outcome::core_checked`] that are a profile's all the same: those
    /// of nested resources against the profiles they claim (`element::Walk::nested`).
    nested_profile_errors: usize,
}

impl Outcome {
    pub fn push(&mut self, severity: &'static str, code: &'static str, at: &str, message: String) {
        if self.issues.len() > MAX_ISSUES && !is_error(severity) {
            return;
        }
        // The core definition and a profile share rules (dom-6, obs-6…): each fault once.
        if self.issues.iter().any(|i| {
            i.severity == severity
                && i.diagnostics == message
                && i.expression.as_deref() == Some(at)
        }) {
            return;
        }
        if self.issues.len() > MAX_ISSUES {
            // Full: an error takes the place of the last warning or note, so that warnings
            // (dom-6 on every entry of a large Bundle) never hide an error — nor let a resource
            // that has one pass.
            let Some(last) = self.issues.iter().rposition(|i| !is_error(i.severity)) else {
                return;
            };
            self.issues.remove(last);
        }
        self.issues.push(Issue {
            severity,
            code,
            diagnostics: message,
            expression: Some(at.to_owned()),
        });
    }

    pub fn error(&mut self, code: &'static str, at: &str, message: String) {
        self.push("error", code, at, message);
    }

    pub fn warning(&mut self, code: &'static str, at: &str, message: String) {
        self.push("warning", code, at, message);
    }

    /// Says once (per `what`) that something was not checked, and why.
    pub fn not_checked(&mut self, what: String, at: &str, message: String) {
        if self.not_checked.insert(what) {
            self.push("information", "not-supported", at, message);
        }
    }

    /// Marks the end of the checks of R4's own rules: errors from here on are a profile's.
    pub fn core_checked(&mut self) {
        self.breaks_core = self.error_count() > self.nested_profile_errors;
    }

    /// Counts the errors added since there were `before` as a profile's (see
    /// `nested_profile_errors`).
    pub fn profile_errors_from(&mut self, before: usize) {
        self.nested_profile_errors += self.error_count().saturating_sub(before);
    }

    /// How many errors there are (the last-stop note of a full outcome aside).
    pub fn error_count(&self) -> usize {
        self.issues.iter().filter(|i| is_error(i.severity)).count()
    }

    /// Whether every error is a profile's (claimed, asked for or required): http.html answers
    /// such a write 422 ("violated applicable FHIR profiles or server business rules") and one
    /// that breaks the base rules 400 ("failed basic FHIR validation rules").
    pub fn breaks_only_profiles(&self) -> bool {
        !self.breaks_core && self.has_errors()
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| is_error(i.severity))
    }

    /// Whether no further issue can be kept: more than [`MAX_ISSUES`], all of them errors
    /// (warnings still give way to errors, see [`Outcome::push`]).
    pub fn full(&self) -> bool {
        self.issues.len() > MAX_ISSUES && self.issues.iter().all(|i| is_error(i.severity))
    }

    /// The issues, with the "stopped" note when there were more than the limit.
    pub fn into_issues(mut self) -> Vec<Issue> {
        if self.issues.len() > MAX_ISSUES {
            // One issue too many is kept (it tells that there were more): the last warning or
            // note goes first, as in `push`.
            match self.issues.iter().rposition(|i| !is_error(i.severity)) {
                Some(last) => {
                    self.issues.remove(last);
                }
                None => self.issues.truncate(MAX_ISSUES),
            }
            self.issues.truncate(MAX_ISSUES);
            self.issues.push(crate::fhir::validate::stopped_issue());
        }
        self.issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_found_after_the_limit_of_warnings_is_kept() {
        let mut out = Outcome::default();
        for i in 0..(MAX_ISSUES + 20) {
            out.warning(
                "invariant",
                &format!("Bundle.entry[{i}].resource"),
                "dom-6".into(),
            );
        }
        assert!(!out.full(), "warnings alone do not stop the walk");
        out.error(
            "required",
            "Bundle.entry[70].resource.status",
            "missing".into(),
        );
        assert!(out.has_errors());
        let issues = out.into_issues();
        assert_eq!(issues.len(), MAX_ISSUES + 1);
        assert!(issues.iter().any(|i| i.severity == "error"));
        assert_eq!(issues.last().unwrap().code, "too-costly");
    }

    #[test]
    fn an_outcome_full_of_errors_keeps_no_more() {
        let mut out = Outcome::default();
        for i in 0..(MAX_ISSUES + 5) {
            out.error("value", &format!("Patient.name[{i}]"), "bad".into());
        }
        assert!(out.full());
        assert_eq!(out.into_issues().len(), MAX_ISSUES + 1);
    }
}
