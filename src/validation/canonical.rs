//! `canonical(X|Y)`: "a URI that refers to a resource by its canonical URL" of one of the
//! resource types the element's `targetProfile`s name (datatypes.html, canonical; references.html
//! "Canonical URLs"). When the server holds the resource a canonical names (a StructureDefinition,
//! ValueSet, CodeSystem or Questionnaire of the core specification or a loaded package), its type
//! is compared with them: a Questionnaire's url where a ValueSet is expected is an error. A url
//! the server does not hold is not checked.

use serde_json::Value;

use super::outcome::Outcome;
use super::structure_definition::TypeRef;
use super::{Definitions, CORE_PREFIX};

/// Checks the canonical `value` (at `at`) of an element whose canonical type is in `types`.
pub fn check(defs: &Definitions, types: &[TypeRef], value: &Value, at: &str, out: &mut Outcome) {
    let Some(url) = value.as_str() else { return };
    let targets: Vec<&str> = types
        .iter()
        .filter(|t| t.code == "canonical")
        .flat_map(|t| t.target_profiles.iter())
        .map(|p| p.strip_prefix(CORE_PREFIX).unwrap_or(p))
        .collect();
    if targets.is_empty()
        || targets
            .iter()
            .any(|t| matches!(*t, "Resource" | "DomainResource"))
    {
        return;
    }
    let url = url.split('|').next().unwrap_or(url);
    let terminology = defs.terminology();
    let found: Vec<&str> = [
        ("StructureDefinition", defs.get(url).is_some()),
        ("ValueSet", terminology.is_value_set(url)),
        ("CodeSystem", terminology.is_supplement(url).is_some()),
        ("Questionnaire", defs.questionnaire(url).is_some()),
    ]
    .into_iter()
    .filter_map(|(t, held)| held.then_some(t))
    .collect();
    if found.is_empty() || found.iter().any(|t| targets.contains(t)) {
        return;
    }
    out.error(
        "structure",
        at,
        format!(
            "{url} is the canonical URL of a {}, but this element refers to a {}",
            found.join(" and a "),
            targets.join(" or ")
        ),
    );
}
