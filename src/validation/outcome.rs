//! The issues one validation finds: severity, an issue-type code, a FHIRPath location and a
//! message a person reads. What could not be checked (a binding to a value set the server cannot
//! expand, an invariant the FHIRPath evaluator cannot evaluate) is said once, as information.

use std::collections::BTreeSet;

use super::target_profile::TargetCheck;
use crate::error::Issue;

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
}

impl Outcome {
    pub fn push(&mut self, severity: &'static str, code: &'static str, at: &str, message: String) {
        if self.issues.len() > MAX_ISSUES {
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
        self.breaks_core = self.has_errors();
    }

    /// Whether every error is a profile's (claimed, asked for or required): http.html answers
    /// such a write 422 ("violated applicable FHIR profiles or server business rules") and one
    /// that breaks the base rules 400 ("failed basic FHIR validation rules").
    pub fn breaks_only_profiles(&self) -> bool {
        !self.breaks_core && self.has_errors()
    }

    pub fn has_errors(&self) -> bool {
        self.issues
            .iter()
            .any(|i| matches!(i.severity, "error" | "fatal"))
    }

    pub fn full(&self) -> bool {
        self.issues.len() > MAX_ISSUES
    }

    /// The issues, with the "stopped" note when there were more than the limit.
    pub fn into_issues(mut self) -> Vec<Issue> {
        if self.issues.len() > MAX_ISSUES {
            self.issues.truncate(MAX_ISSUES);
            self.issues.push(crate::fhir::validate::stopped_issue());
        }
        self.issues
    }
}
