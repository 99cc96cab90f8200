//! The Provenance of every write transaction: which versions, by which agent, when, and what
//! was done, written in the same transaction as the versions themselves, just before it
//! commits. One Provenance per transaction, whose `target`s are every version it wrote: one
//! per create, update, patch or delete, one per transaction Bundle, one per batch entry (each
//! entry of a batch is its own transaction, and its Provenance commits with it), one per
//! scorer run for a patient.
//!
//! Every writer's transaction goes through [`traced`]: a client's and the open server's
//! (through the authorization guard) and the risk scorer's. Recording it at the `Tx` keeps it
//! in one place for every interaction and every Bundle entry, conditional or not.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::Agent;
use crate::fhir::datetime::format_instant;
use crate::fhir::id::new_id;
use crate::search::index::IndexEntries;
use crate::search::query::SearchQuery;
use crate::store::{Current, Method, NewVersion, SearchHit, StoreError, StoreResult, Tx};
use crate::write::{self, Indexing};

/// `tx`, with one Provenance naming `agent` and every version it wrote written when it
/// commits (indexed with `indexing`'s search parameters).
pub fn traced(tx: Box<dyn Tx>, agent: Agent, indexing: Arc<Indexing>) -> Box<dyn Tx> {
    Box::new(Traced {
        inner: tx,
        agent,
        indexing,
        targets: Vec::new(),
        recorded: 0,
    })
}

struct Traced {
    inner: Box<dyn Tx>,
    agent: Agent,
    indexing: Arc<Indexing>,
    /// The versions written so far (`Type/id/_history/n`) and what was done to each.
    targets: Vec<(String, &'static str)>,
    /// The latest `lastUpdated` of those versions.
    recorded: i64,
}

#[async_trait]
impl Tx for Traced {
    async fn lock_current(&mut self, rtype: &str, id: &str) -> StoreResult<Option<Current>> {
        self.inner.lock_current(rtype, id).await
    }

    async fn lock_all(&mut self, keys: &[(String, String)]) -> StoreResult<()> {
        self.inner.lock_all(keys).await
    }

    async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        self.inner.lock_key(key).await
    }

    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        self.inner.search(query).await
    }

    async fn write(&mut self, new: NewVersion<'_>, previous: Option<i64>) -> StoreResult<()> {
        let activity = match (new.content, previous) {
            (None, _) => "DELETE",
            (Some(_), None) => "CREATE",
            (Some(_), Some(_)) => "UPDATE",
        };
        let target = format!("{}/{}/_history/{}", new.rtype, new.id, new.version);
        self.recorded = self.recorded.max(new.last_updated);
        self.inner.write(new, previous).await?;
        self.targets.push((target, activity));
        Ok(())
    }

    async fn reindex(&mut self, rid: i64, index: &IndexEntries) -> StoreResult<()> {
        self.inner.reindex(rid, index).await
    }

    async fn may_write(&mut self, rtype: &str, method: Method) -> StoreResult<()> {
        self.inner.may_write(rtype, method).await
    }

    async fn queue_compartment(&mut self, rtype: &str, id: &str, at: i64) -> StoreResult<()> {
        self.inner.queue_compartment(rtype, id, at).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let mut this = *self;
        if !this.targets.is_empty() {
            let provenance = provenance(&this.agent, &this.targets, this.recorded);
            // Written on the inner transaction: a Provenance has no Provenance of its own.
            write::write(
                &mut *this.inner,
                &this.indexing,
                "Provenance",
                &new_id(),
                None,
                Method::Post,
                Some(provenance),
            )
            .await
            .map_err(|e| StoreError::Database(format!("recording the Provenance failed: {e}")))?;
        }
        this.inner.commit().await
    }

    fn source(&self) -> Option<&str> {
        self.agent.source()
    }
}

/// The Provenance of the versions one transaction wrote (`targets`, each with its
/// v3-DataOperation code). `activity` is that code when every target shares it; a transaction
/// that did different things to different resources has no single activity, and states none.
fn provenance(agent: &Agent, targets: &[(String, &str)], recorded: i64) -> Value {
    let meta = agent.source().map(|source| json!({"source": source}));
    let mut provenance = json!({"resourceType": "Provenance"});
    if let Some(meta) = meta {
        provenance["meta"] = meta;
    }
    provenance["target"] = targets
        .iter()
        .map(|(target, _)| json!({"reference": target}))
        .collect();
    provenance["recorded"] = json!(format_instant(recorded));
    let first = targets[0].1;
    if targets.iter().all(|(_, activity)| *activity == first) {
        provenance["activity"] = json!({"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": first,
        }]});
    }
    provenance["agent"] = json!([{
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author",
        }]},
        "who": agent.who(),
    }]);
    provenance
}
