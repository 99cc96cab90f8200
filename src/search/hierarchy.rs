//! Reference `:below` and `:above` (search page, "Searching Hierarchies"): where a type's
//! references to itself make a strict hierarchy (`Location.partOf`), `Procedure?location:below=42`
//! finds what refers to Location 42 or to any location within it, `:above` to it or to any
//! location it lies within. Before the store runs a search, each such predicate is replaced by
//! plain references to every member of that part of the hierarchy, read level by level from the
//! store as the client may see it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use crate::error::FhirError;
use crate::search::query::{Predicate, SearchQuery};
use crate::store::Store;

/// The most resources one `:below`/`:above` may stand for.
pub const MAX_MEMBERS: usize = 1000;
/// The most levels followed (a hierarchy deeper than this is cut there).
const MAX_LEVELS: usize = 32;

/// Replaces every hierarchy predicate of a search (also inside chains and `_has`).
pub async fn resolve(store: &dyn Store, query: &mut SearchQuery) -> Result<(), FhirError> {
    if !uses_hierarchy(&query.filters) {
        return Ok(());
    }
    resolve_filters(store, &mut query.filters).await
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

fn resolve_filters<'a>(store: &'a dyn Store, filters: &'a mut [Vec<Predicate>]) -> Resolving<'a> {
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
                        for member in members(store, &target_type, &id, &via, above).await? {
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
                        resolve_filters(store, &mut filters).await?;
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
                        resolve_filters(store, &mut filters).await?;
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
    store: &dyn Store,
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
        let next: Vec<String> = if above {
            // The parents: what this level's resources refer to through `via`.
            let query = SearchQuery {
                rtype: rtype.to_owned(),
                filters: vec![level.iter().cloned().map(Predicate::Id).collect()],
                count: MAX_MEMBERS,
                ..Default::default()
            };
            let rids: Vec<i64> = store.search(&query).await?.iter().map(|h| h.rid).collect();
            if rids.is_empty() {
                Vec::new()
            } else {
                store
                    .include_targets(&rids, Some(&[via.to_owned()]), Some(rtype))
                    .await?
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect()
            }
        } else {
            // The children: what refers to this level's resources through `via`.
            let query = SearchQuery {
                rtype: rtype.to_owned(),
                filters: vec![level
                    .iter()
                    .map(|id| Predicate::Reference {
                        param: via.to_owned(),
                        target_type: Some(rtype.to_owned()),
                        target_id: Some(id.clone()),
                        url: None,
                    })
                    .collect()],
                count: MAX_MEMBERS,
                ..Default::default()
            };
            store
                .search(&query)
                .await?
                .into_iter()
                .map(|h| h.version.id)
                .collect()
        };
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
