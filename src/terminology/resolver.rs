//! What a search asks of the server before its query runs ([`Resolver`]), answered over the
//! store: codes from the terminology (token `:in`, `:not-in`, `:below`, `:above`), members of a
//! hierarchy one level at a time (reference `:below`, `:above`), as the client may see them.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::FhirError;
use crate::search::hierarchy::MAX_MEMBERS;
use crate::search::query::{Predicate, SearchQuery, TerminologyOp};
use crate::search::Resolver;
use crate::store::Store;
use crate::terminology::{Terminology, TerminologyError};

/// The resolver of searches on `store`.
pub struct StoreResolver<'a> {
    store: &'a dyn Store,
}

impl<'a> StoreResolver<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        StoreResolver { store }
    }
}

#[async_trait]
impl Resolver for StoreResolver<'_> {
    async fn codes(
        &self,
        ops: &[TerminologyOp],
    ) -> Result<HashMap<TerminologyOp, Vec<(String, Vec<String>)>>, FhirError> {
        // One terminology for the whole search: what it read is read once.
        let mut terminology = Terminology::new(self.store);
        let mut resolved = HashMap::new();
        for op in ops {
            if resolved.contains_key(op) {
                continue;
            }
            let codes = match op {
                TerminologyOp::In(url) => terminology.expand(url).await,
                TerminologyOp::Below { system, code } => {
                    terminology.subsumed(system, code, false).await
                }
                TerminologyOp::Above { system, code } => {
                    terminology.subsumed(system, code, true).await
                }
            };
            let codes = codes.map_err(|e| match e {
                TerminologyError::Store(e) => e,
                other => FhirError::invalid(format!("{}: {other}", op.describe())),
            })?;
            let codes = codes
                .into_iter()
                .map(|(system, codes)| (system, codes.into_iter().collect()))
                .collect();
            resolved.insert(op.clone(), codes);
        }
        Ok(resolved)
    }

    async fn next_level(
        &self,
        rtype: &str,
        via: &str,
        ids: &[String],
        above: bool,
    ) -> Result<Vec<String>, FhirError> {
        if above {
            // The parents: what this level's resources refer to through `via`.
            let query = SearchQuery {
                rtype: rtype.to_owned(),
                filters: vec![ids.iter().cloned().map(Predicate::Id).collect()],
                count: MAX_MEMBERS,
                ..Default::default()
            };
            let rids: Vec<i64> = self
                .store
                .search(&query)
                .await?
                .iter()
                .map(|h| h.rid)
                .collect();
            if rids.is_empty() {
                return Ok(Vec::new());
            }
            Ok(self
                .store
                .include_targets(&rids, Some(&[via.to_owned()]), Some(rtype))
                .await?
                .into_iter()
                .map(|(_, id)| id)
                .collect())
        } else {
            // The children: what refers to this level's resources through `via`.
            let query = SearchQuery {
                rtype: rtype.to_owned(),
                filters: vec![ids
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
            Ok(self
                .store
                .search(&query)
                .await?
                .into_iter()
                .map(|h| h.version.id)
                .collect())
        }
    }
}
