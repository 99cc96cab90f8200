//! Reference `:below` and `:above` (search page, "Searching Hierarchies"): where a type's
//! references to itself make a strict hierarchy (`Location.partOf`), `Procedure?location:below=42`
//! finds what refers to Location 42 or to any location within it, `:above` to it or to any
//! location it lies within. Before the store runs a search, each such predicate is replaced by
//! plain references to every member of that part of the hierarchy, read level by level through
//! the [`Resolver`] passed in, as the client may see it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use crate::error::FhirError;
use crate::search::definitions::{ParamType, Registry};
use crate::search::param::reference;
use crate::search::query::{Predicate, SearchQuery};
use crate::search::Resolver;

/// The most resources one `:below`/`:above` may stand for.
pub const MAX_MEMBERS: usize = 1000;
/// The most levels followed (a hierarchy deeper than this is cut there).
const MAX_LEVELS: usize = 32;

/// `reference:below=[Type/]id` (`:above`): a reference to the resource or to one below (above)
/// it in a strict hierarchy of its type. The hierarchy is the type's `partOf`
/// (`Location.partOf`, `Organization.partOf`, `Encounter.partOf`, …: a reference parameter of
/// the type to itself); a type without one is a 400.
pub fn value(
    registry: &Registry,
    rtype: &str,
    code: &str,
    above: bool,
    value: &str,
    base: &str,
) -> Result<Predicate, FhirError> {
    let modifier = if above { "above" } else { "below" };
    let targets = registry
        .get(rtype, code)
        .map(|p| p.target.clone())
        .unwrap_or_default();
    let (target_type, id) = match reference::value(code, None, value, base) {
        Predicate::Reference {
            target_type: Some(t),
            target_id: Some(id),
            ..
        } => (t, id),
        Predicate::Reference {
            target_type: None,
            target_id: Some(id),
            url: None,
            ..
        } if targets.len() == 1 => (targets[0].clone(), id),
        _ => {
            return Err(FhirError::invalid(format!(
                "{code}:{modifier}={value}: give the resource of this server as Type/id \
                 (the hierarchy is searched among the resources held here)"
            )))
        }
    };
    if !crate::fhir::id::is_valid(&id) {
        return Err(FhirError::invalid(format!(
            "{code}:{modifier}={value}: '{id}' is not a valid id"
        )));
    }
    let part_of = format!("{target_type}.partOf");
    let via = registry
        .params(&target_type)
        .find(|p| {
            p.kind == ParamType::Reference
                && p.target == [target_type.clone()]
                && p.expression.as_ref().is_some_and(|e| e.source() == part_of)
        })
        .map(|p| p.code.clone())
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "{code}:{modifier}={value}: {target_type} resources form no hierarchy \
                 (:above and :below follow a type's partOf, as Location.partOf)"
            ))
        })?;
    Ok(Predicate::Hierarchy {
        param: code.to_owned(),
        target_type,
        id,
        via,
        above,
    })
}

/// Replaces every hierarchy predicate of a search (also inside chains and `_has`).
pub async fn resolve(resolver: &dyn Resolver, query: &mut SearchQuery) -> Result<(), FhirError> {
    if !uses_hierarchy(&query.filters) {
        return Ok(());
    }
    resolve_filters(resolver, &mut query.filters).await
}

/// Whether a search has a reference `:below` or `:above` anywhere.
pub fn uses_hierarchy(filters: &[Vec<Predicate>]) -> bool {
    filters.iter().flatten().any(|p| match p {
        Predicate::Hierarchy { .. } => true,
        Predicate::Chain { filters, .. } | Predicate::Has { filters, .. } => {
            uses_hierarchy(filters)
        }
        _ => false,
    })
}

type Resolving<'a> = Pin<Box<dyn Future<Output = Result<(), FhirError>> + Send + 'a>>;

fn resolve_filters<'a>(
    resolver: &'a dyn Resolver,
    filters: &'a mut [Vec<Predicate>],
) -> Resolving<'a> {
    Box::pin(async move {
        for group in filters.iter_mut() {
            let mut any_of = Vec::with_capacity(group.len());
            for predicate in std::mem::take(group) {
                match predicate {
                    Predicate::Hierarchy {
                        param,
                        target_type,
                        id,
                        via,
                        above,
                    } => {
                        for member in members(resolver, &target_type, &id, &via, above).await? {
                            any_of.push(Predicate::Reference {
                                param: param.clone(),
                                target_type: Some(target_type.clone()),
                                target_id: Some(member),
                                url: None,
                            });
                        }
                    }
                    Predicate::Chain {
                        param,
                        target_type,
                        mut filters,
                    } => {
                        resolve_filters(resolver, &mut filters).await?;
                        any_of.push(Predicate::Chain {
                            param,
                            target_type,
                            filters,
                        });
                    }
                    Predicate::Has {
                        source_type,
                        param,
                        target_type,
                        mut filters,
                    } => {
                        resolve_filters(resolver, &mut filters).await?;
                        any_of.push(Predicate::Has {
                            source_type,
                            param,
                            target_type,
                            filters,
                        });
                    }
                    other => any_of.push(other),
                }
            }
            *group = any_of;
        }
        Ok(())
    })
}

/// The ids of `rtype/id` and of every resource below it (`above`: above it) along `via`.
async fn members(
    resolver: &dyn Resolver,
    rtype: &str,
    id: &str,
    via: &str,
    above: bool,
) -> Result<Vec<String>, FhirError> {
    let mut found = vec![id.to_owned()];
    let mut seen: HashSet<String> = found.iter().cloned().collect();
    let mut level = vec![id.to_owned()];
    for _ in 0..MAX_LEVELS {
        if level.is_empty() {
            break;
        }
        let next = resolver.next_level(rtype, via, &level, above).await?;
        level = next
            .into_iter()
            .filter(|i| seen.insert(i.clone()))
            .collect();
        found.extend(level.iter().cloned());
        if found.len() > MAX_MEMBERS {
            return Err(FhirError::invalid(format!(
                ":{}={rtype}/{id}: the hierarchy holds more than {MAX_MEMBERS} resources; \
                 search a smaller part of it",
                if above { "above" } else { "below" }
            )));
        }
    }
    Ok(found)
}
