//! The Provenance of every write: which version, by which agent, when, and what was done,
//! written in the same transaction as the version itself.
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

/// `tx`, with a Provenance naming `agent` written after each version it writes (indexed with
/// `indexing`'s search parameters).
pub fn traced(tx: Box<dyn Tx>, agent: Agent, indexing: Arc<Indexing>) -> Box<dyn Tx> {
    Box::new(Traced {
        inner: tx,
        agent,
        indexing,
    })
}

struct Traced {
    inner: Box<dyn Tx>,
    agent: Agent,
    indexing: Arc<Indexing>,
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
        let recorded = new.last_updated;
        self.inner.write(new, previous).await?;
        let provenance = provenance(&self.agent, &target, recorded, activity);
        // Written on the inner transaction: a Provenance has no Provenance of its own.
        write::write(
            &mut *self.inner,
            &self.indexing,
            "Provenance",
            &new_id(),
            None,
            Method::Post,
            Some(provenance),
        )
        .await
        .map_err(|e| StoreError::Database(format!("recording the Provenance failed: {e}")))?;
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
        self.inner.commit().await
    }

    fn source(&self) -> Option<&str> {
        self.agent.source()
    }
}

/// The Provenance of one written version (`activity`: a v3-DataOperation code).
fn provenance(agent: &Agent, target: &str, recorded: i64, activity: &str) -> Value {
    let meta = agent.source().map(|source| json!({"source": source}));
    let mut provenance = json!({"resourceType": "Provenance"});
    if let Some(meta) = meta {
        provenance["meta"] = meta;
    }
    provenance["target"] = json!([{"reference": target}]);
    provenance["recorded"] = json!(format_instant(recorded));
    provenance["activity"] = json!({"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
        "code": activity,
    }]});
    provenance["agent"] = json!([{
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author",
        }]},
        "who": agent.who(),
    }]);
    provenance
}
