//! `_include` and `_revinclude` (search page, "Including other resources in result"): the
//! resources a search page refers to, or that refer to it, added with `search.mode = include`.

use std::collections::HashSet;

use crate::app::App;
use crate::error::FhirError;
use crate::search::include::Include;
use crate::search::query::{Predicate, SearchQuery};
use crate::store::SearchHit;

/// The most resources one page includes; past it the page says so (`truncated`).
pub const MAX_INCLUDED: usize = 1000;
/// What a page includes, and whether a limit cut it short.
#[derive(Debug, Default)]
pub struct Included {
    pub hits: Vec<SearchHit>,
    /// `MAX_INCLUDED` cut the list short.
    pub truncated: bool,
    /// `:iterate` still found new resources after the budget's `max_iterations` rounds.
    pub iterations_exhausted: bool,
}

/// Resources to include for a page of `matches`, without duplicates or the matches themselves:
/// `:iterate` follows references from included resources until no new ones come (the fixed
/// point), within the search budget's `max_iterations` rounds.
pub async fn included(
    app: &App,
    includes: &[Include],
    matches: &[SearchHit],
) -> Result<Included, FhirError> {
    let mut seen: HashSet<(String, String)> = matches
        .iter()
        .map(|h| (h.version.rtype.clone(), h.version.id.clone()))
        .collect();
    let mut out = Included::default();
    let iterates = includes.iter().any(|i| i.iterate);
    let mut frontier: Vec<SearchHit> = matches.to_vec();
    let mut round = 0;
    loop {
        let mut found = Vec::new();
        for include in includes.iter().filter(|i| round == 0 || i.iterate) {
            let hits = if include.rev {
                reverse(app, include, &frontier).await?
            } else {
                forward(app, include, &frontier).await?
            };
            found.extend(hits);
        }
        let mut next = Vec::new();
        for hit in found {
            if seen.insert((hit.version.rtype.clone(), hit.version.id.clone())) {
                if out.hits.len() >= MAX_INCLUDED {
                    out.truncated = true;
                    return Ok(out);
                }
                out.hits.push(hit.clone());
                next.push(hit);
            }
        }
        if next.is_empty() || !iterates {
            return Ok(out);
        }
        if round >= app.search_budget.max_iterations {
            out.iterations_exhausted = true;
            return Ok(out);
        }
        round += 1;
        frontier = next;
    }
}

/// `_include=Source:param[:Target]`: what the frontier's resources of type `Source` reference.
async fn forward(
    app: &App,
    include: &Include,
    frontier: &[SearchHit],
) -> Result<Vec<SearchHit>, FhirError> {
    let rids: Vec<i64> = frontier
        .iter()
        .filter(|h| h.version.rtype == include.source)
        .map(|h| h.rid)
        .collect();
    if rids.is_empty() {
        return Ok(Vec::new());
    }
    let params = include.param.as_ref().map(std::slice::from_ref);
    let targets = app
        .store
        .include_targets(&rids, params, include.target.as_deref())
        .await?;
    let targets: Vec<(String, String)> = targets.into_iter().take(MAX_INCLUDED + 1).collect();
    Ok(app.store.read_current(&targets).await?)
}

/// `_revinclude=Source:param[:Target]`: resources of type `Source` whose `param` references one
/// of the frontier's resources.
async fn reverse(
    app: &App,
    include: &Include,
    frontier: &[SearchHit],
) -> Result<Vec<SearchHit>, FhirError> {
    let Some(param) = &include.param else {
        return Err(FhirError::invalid(
            "_revinclude needs a source type and a parameter, not *",
        ));
    };
    let any_of: Vec<Predicate> = frontier
        .iter()
        .filter(|h| {
            include
                .target
                .as_ref()
                .is_none_or(|t| *t == h.version.rtype)
        })
        .map(|h| Predicate::Reference {
            param: param.clone(),
            target_type: Some(h.version.rtype.clone()),
            target_id: Some(h.version.id.clone()),
            url: None,
        })
        .collect();
    if any_of.is_empty() {
        return Ok(Vec::new());
    }
    let query = SearchQuery {
        rtype: include.source.clone(),
        filters: vec![any_of],
        count: MAX_INCLUDED,
        ..Default::default()
    };
    Ok(app.store.search(&query).await?)
}
