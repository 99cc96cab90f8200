//! A reference's target against the profiles its element names. `Reference(X)` names in
//! `targetProfile` either a core type (checked by [`super::reference`] from the reference's
//! form) or a profile: ElementDefinition.type.targetProfile, "the target resource SHALL conform
//! to at least one profile defined in the list". Whether a target conforms needs the target,
//! which the engine does not have: it stays pure and synchronous (decision 0052). While
//! walking, [`collect`] notes each reference whose element names a profile, as a
//! [`TargetCheck`]; the caller finds the targets (on this server, in the Bundle being written)
//! and [`check`] walks each one found against the element's profiles.
//!
//! One level: a target is walked against the profiles, and the references the target itself
//! makes are not followed (a circle of profiles ends there, and the work stays bounded).
//! A target that is not found is not checked, and said so as information.

use std::collections::HashMap;

use serde_json::Value;

use super::element::Walk;
use super::outcome::Outcome;
use super::Definitions;

/// At most this many references of one request are checked against profiles (each a walk of
/// its target per profile); the rest are said not to be.
pub const MAX_CHECKS: usize = 50;

/// A reference to check against profiles once its target is found.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetCheck {
    /// Where the Reference element is (`Observation.subject`, `Patient.link[0].other`).
    pub at: String,
    /// `Reference.reference` as written.
    pub reference: String,
    /// The element's target profiles, core types among them (`Reference(Patient|MyGroup)`).
    pub profiles: Vec<String>,
}

/// What the caller found for a [`TargetCheck`].
pub enum Target<'a> {
    /// The target resource, as stored or as written in the Bundle.
    Found(&'a Value),
    /// Not checked, and why (the target is not on this server…).
    NotChecked(String),
}

/// Notes the reference `reference` (of the element at `at`, whose target profiles are `urls`,
/// every one known, one at least a profile rather than a core type).
pub fn collect(urls: &[&str], reference: &str, at: &str, out: &mut Outcome) {
    let check = TargetCheck {
        at: at.to_owned(),
        reference: reference.to_owned(),
        profiles: urls.iter().map(|u| (*u).to_owned()).collect(),
    };
    // The core definition and the profiles walk the same element: one check each.
    if out.targets.contains(&check) {
        return;
    }
    if out.targets.len() >= MAX_CHECKS {
        out.not_checked(
            "target profiles: too many".into(),
            at,
            format!(
                "More than {MAX_CHECKS} references to check against profiles: this one and the \
                 ones after it were not checked"
            ),
        );
        return;
    }
    out.targets.push(check);
}

/// Walks each target `find` finds against its element's profiles: an error at the reference
/// when it conforms to none; information when it was not checked. A target is walked once per
/// profile whatever number of references lead to it.
pub fn check<'t>(
    defs: &Definitions,
    checks: &[TargetCheck],
    find: &dyn Fn(&TargetCheck) -> Target<'t>,
    out: &mut Outcome,
) {
    // (target, profile) → the first problem, `None` when it conforms.
    let mut walked: HashMap<(String, String), Option<String>> = HashMap::new();
    for c in checks {
        let listed = c.profiles.join(", ");
        let target = match find(c) {
            Target::Found(target) => target,
            Target::NotChecked(why) => {
                out.push(
                    "information",
                    "informational",
                    &c.at,
                    format!(
                        "The target of {} was not checked against {listed}: {why}",
                        c.reference
                    ),
                );
                continue;
            }
        };
        let Some(rtype) = target.get("resourceType").and_then(Value::as_str) else {
            continue;
        };
        let mut problems = Vec::new();
        let mut conforms = false;
        let mut applies = false;
        for url in &c.profiles {
            let Some(sd) = defs.get(url) else { continue };
            if sd.type_name != rtype {
                continue;
            }
            applies = true;
            if sd.derivation == "specialization" {
                // A core type: its type is all it asks (the type check of `reference`).
                conforms = true;
                break;
            }
            let key = (format!("{rtype}/{}", c.reference), url.clone());
            let problem = walked
                .entry(key)
                .or_insert_with(|| first_problem(defs, target, rtype, sd))
                .clone();
            match problem {
                None => {
                    conforms = true;
                    break;
                }
                Some(p) => problems.push(format!("against {url}: {p}")),
            }
        }
        // A target of a type none of them constrains is the type check's to report.
        if !applies || conforms {
            continue;
        }
        out.error(
            "structure",
            &c.at,
            format!(
                "The target {} conforms to none of the profiles this element requires ({listed}): {}",
                c.reference,
                problems.join("; ")
            ),
        );
    }
}

/// The first error of `target` against `sd` (its own references' targets are not followed, nor
/// the profiles its nested resources claim).
fn first_problem(
    defs: &Definitions,
    target: &Value,
    rtype: &str,
    sd: &super::StructureDefinition,
) -> Option<String> {
    let mut inner = Outcome::default();
    let mut walk = Walk::new(defs, target, &mut inner);
    walk.claims = false;
    walk.resource_against(sd, rtype);
    inner
        .issues
        .into_iter()
        .find(|i| matches!(i.severity, "error" | "fatal"))
        .map(|i| match i.expression {
            Some(at) => format!("{} ({at})", i.diagnostics),
            None => i.diagnostics,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VITAL_SIGNS: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";
    const PATIENT: &str = "http://hl7.org/fhir/StructureDefinition/Patient";

    fn checked(profiles: &[&str], target: Option<&Value>) -> Outcome {
        let defs = Definitions::built_in();
        let mut out = Outcome::default();
        collect(
            profiles,
            "Observation/m1",
            "Observation.hasMember[0]",
            &mut out,
        );
        let checks = std::mem::take(&mut out.targets);
        let find = |_: &TargetCheck| match target {
            Some(t) => Target::Found(t),
            None => Target::NotChecked("the target is not on this server".into()),
        };
        check(&defs, &checks, &find, &mut out);
        out
    }

    #[test]
    fn a_target_conforming_to_none_of_the_profiles_is_an_error_at_the_reference() {
        let member =
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        let out = checked(&[VITAL_SIGNS], Some(&member));
        let errors: Vec<_> = out
            .issues
            .iter()
            .filter(|i| i.severity == "error")
            .collect();
        assert_eq!(errors.len(), 1, "{:?}", out.issues);
        assert_eq!(
            errors[0].expression.as_deref(),
            Some("Observation.hasMember[0]")
        );
        assert!(
            errors[0].diagnostics.contains(VITAL_SIGNS),
            "{:?}",
            errors[0]
        );
    }

    #[test]
    fn a_core_type_in_the_list_is_conformed_to_by_its_type() {
        let patient = json!({"resourceType": "Patient"});
        let out = checked(&[PATIENT, VITAL_SIGNS], Some(&patient));
        assert!(out.issues.is_empty(), "{:?}", out.issues);
    }

    #[test]
    fn at_most_max_checks_references_are_noted() {
        let mut out = Outcome::default();
        for i in 0..=MAX_CHECKS {
            let at = format!("Observation.hasMember[{i}]");
            collect(&[VITAL_SIGNS], &format!("Observation/m{i}"), &at, &mut out);
        }
        assert_eq!(out.targets.len(), MAX_CHECKS);
        assert_eq!(out.issues.len(), 1, "{:?}", out.issues);
        assert_eq!(out.issues[0].severity, "information");
    }

    #[test]
    fn a_target_not_found_is_said_to_be_not_checked() {
        let out = checked(&[VITAL_SIGNS], None);
        assert_eq!(out.issues.len(), 1);
        assert_eq!(out.issues[0].severity, "information");
        assert!(out.issues[0].diagnostics.contains("not checked"));
    }
}
