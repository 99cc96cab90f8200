//! Chained parameters and reverse chaining (search page, "Chained parameters" and "Reverse
//! Chaining"): `subject:Patient.name=x`, `_has:Observation:patient:code=y`, and `_list`, which
//! is a `_has` on List entries. What follows the chain is parsed as a parameter of the type
//! chained to, to at most [`MAX_CHAIN_DEPTH`] levels.

use crate::error::FhirError;
use crate::fhir::{id, resource_types};
use crate::search::definitions::{ParamType, Registry};
use crate::search::param::{parameter, Occurrence};
use crate::search::query::Predicate;

/// How deep chains and `_has` may nest.
pub const MAX_CHAIN_DEPTH: usize = 4;

/// A chained parameter `ref[:Type].rest=values`: resources whose reference `ref` points at a
/// resource (of `Type`, or any target type that has the parameter) matching `rest=values`.
pub(crate) fn chain(
    registry: &Registry,
    rtype: &str,
    head: &str,
    tail: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Occurrence, FhirError> {
    let (code, type_modifier) = match head.split_once(':') {
        Some((c, t)) => (c, Some(t)),
        None => (head, None),
    };
    let param = registry
        .get(rtype, code)
        .filter(|p| p.kind == ParamType::Reference)
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "{head}.{tail}: {rtype} has no reference parameter '{code}' to chain from"
            ))
        })?;
    let targets: Vec<String> = match type_modifier {
        Some(t) if resource_types::is_resource_type(t) => vec![t.to_owned()],
        Some(t) => {
            return Err(FhirError::invalid(format!(
                "{head}.{tail}: '{t}' is not a resource type"
            )))
        }
        None => param.target.clone(),
    };
    let tail_code = tail.split(['.', ':']).next().unwrap_or(tail);
    let mut any_of = Vec::new();
    for target in targets {
        let known = tail_code == "_id"
            || tail_code == "_lastUpdated"
            || tail.starts_with("_has:")
            || registry.get(&target, tail_code).is_some();
        if !known {
            continue;
        }
        match parameter(registry, &target, tail, values, base, depth + 1)? {
            Ok(inner) => any_of.push(Predicate::Chain {
                param: code.to_owned(),
                target_type: target,
                filters: inner.into_filters(),
            }),
            Err(reason) => return Err(FhirError::invalid(format!("{head}.{tail}: {reason}"))),
        }
    }
    if any_of.is_empty() {
        return Err(FhirError::invalid(format!(
            "{head}.{tail}: no target of {rtype}.{code} has a search parameter '{tail_code}'"
        )));
    }
    Ok(Occurrence::AnyOf(any_of))
}

/// Reverse chaining `_has:Type:ref:rest=values`: resources referenced through `ref` by a resource
/// of `Type` that matches `rest=values` (which may be another `_has`).
pub(crate) fn has(
    registry: &Registry,
    rtype: &str,
    rest: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Occurrence, FhirError> {
    let mut parts = rest.splitn(3, ':');
    let (source, param, tail) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(p), Some(t)) if !t.is_empty() => (s, p, t),
        _ => {
            return Err(FhirError::invalid(format!(
                "_has:{rest}: expected _has:Type:reference:parameter"
            )))
        }
    };
    if !resource_types::is_resource_type(source) {
        return Err(FhirError::invalid(format!(
            "_has:{rest}: '{source}' is not a resource type"
        )));
    }
    match registry.get(source, param) {
        Some(p) if p.kind == ParamType::Reference => {}
        _ => {
            return Err(FhirError::invalid(format!(
                "_has:{rest}: {source} has no reference parameter '{param}'"
            )))
        }
    }
    let inner = match parameter(registry, source, tail, values, base, depth + 1)? {
        Ok(inner) => Predicate::Has {
            source_type: source.to_owned(),
            param: param.to_owned(),
            target_type: rtype.to_owned(),
            filters: inner.into_filters(),
        },
        Err(reason) => return Err(FhirError::invalid(format!("_has:{rest}: {reason}"))),
    };
    Ok(Occurrence::AnyOf(vec![inner]))
}

/// `_list=id` (search page, "_list"): the resources a List on this server names in its entries,
/// that is `_has:List:item:_id=id`. Functional lists (`$current-problems`, …) need a definition
/// of what is current that this server does not have: refused.
pub(crate) fn list(
    registry: &Registry,
    rtype: &str,
    name: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Occurrence, FhirError> {
    if name != "_list" {
        return Err(FhirError::invalid(format!(
            "{name}: _list takes no modifier"
        )));
    }
    if let Some(functional) = values.iter().find(|v| v.starts_with('$')) {
        return Err(FhirError::invalid(format!(
            "_list={functional}: functional lists are not supported; name a List by its id"
        )));
    }
    if let Some(bad) = values.iter().find(|v| !id::is_valid(v)) {
        return Err(FhirError::invalid(format!("_list={bad}: not a List id")));
    }
    has(registry, rtype, "List:item:_id", values, base, depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::TokenSystem;

    fn filters(parsed: Occurrence) -> Vec<Vec<Predicate>> {
        parsed.into_filters()
    }

    #[test]
    fn a_chain_with_a_type_follows_that_type_only() {
        let parsed = chain(
            &Registry::official(),
            "Observation",
            "subject:Patient",
            "gender",
            &["other".into()],
            "http://h",
            0,
        )
        .unwrap();
        assert_eq!(
            filters(parsed),
            vec![vec![Predicate::Chain {
                param: "subject".into(),
                target_type: "Patient".into(),
                filters: vec![vec![Predicate::Token {
                    param: "gender".into(),
                    system: TokenSystem::Any,
                    code: Some("other".into())
                }]]
            }]]
        );
    }

    #[test]
    fn a_chain_without_a_type_follows_every_target_that_has_the_parameter() {
        let parsed = chain(
            &Registry::official(),
            "Observation",
            "subject",
            "name",
            &["x".into()],
            "http://h",
            0,
        )
        .unwrap();
        let any_of = filters(parsed).remove(0);
        assert!(any_of.len() > 1);
        assert!(chain(
            &Registry::official(),
            "Observation",
            "subject",
            "no-such",
            &["x".into()],
            "http://h",
            0
        )
        .is_err());
        assert!(chain(
            &Registry::official(),
            "Observation",
            "status",
            "name",
            &["x".into()],
            "http://h",
            0
        )
        .is_err());
    }

    #[test]
    fn has_names_the_referring_type_and_its_reference() {
        let parsed = has(
            &Registry::official(),
            "Patient",
            "Observation:subject:code",
            &["c".into()],
            "http://h",
            0,
        )
        .unwrap();
        let Predicate::Has {
            source_type,
            param,
            target_type,
            ..
        } = &filters(parsed)[0][0]
        else {
            panic!("not a _has");
        };
        assert_eq!(
            (source_type.as_str(), param.as_str(), target_type.as_str()),
            ("Observation", "subject", "Patient")
        );
        assert!(has(
            &Registry::official(),
            "Patient",
            "Observation:code",
            &["c".into()],
            "http://h",
            0
        )
        .is_err());
        assert!(has(
            &Registry::official(),
            "Patient",
            "Observation:status:code",
            &["c".into()],
            "http://h",
            0
        )
        .is_err());
    }

    #[test]
    fn chains_nest_only_so_deep() {
        let deep = "_has:Observation:subject:".repeat(MAX_CHAIN_DEPTH + 1) + "code";
        let rest = deep.strip_prefix("_has:").unwrap();
        assert!(has(
            &Registry::official(),
            "Patient",
            rest,
            &["c".into()],
            "http://h",
            0
        )
        .is_err());
    }

    #[test]
    fn a_list_is_a_has_on_its_items_and_functional_lists_are_refused() {
        let parsed = list(
            &Registry::official(),
            "Patient",
            "_list",
            &["l1".into()],
            "http://h",
            0,
        )
        .unwrap();
        assert!(
            matches!(&filters(parsed)[0][0], Predicate::Has { source_type, .. } if source_type == "List")
        );
        assert!(list(
            &Registry::official(),
            "Patient",
            "_list",
            &["$current-problems".into()],
            "http://h",
            0
        )
        .is_err());
        assert!(list(
            &Registry::official(),
            "Patient",
            "_list:x",
            &["l1".into()],
            "http://h",
            0
        )
        .is_err());
    }
}
