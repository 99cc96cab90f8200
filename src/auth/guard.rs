//! The one place where a grant meets the data: a [`Store`] that answers a request only with
//! what its access token allows.
//!
//! Every interaction reaches data through store calls, so checking those covers reads, searches
//! with their includes, chains and `_has`, history, `$lastn`, conditional interactions and
//! every Bundle entry alike. Scopes map onto the calls: `read`/`vread`/`history` need `r`,
//! `search`/`count`/`lastn` need `s`, and a write needs `c`, `u` or `d`. A patient-bound token
//! is confined to its Patient's compartment: searches get the compartment as an extra filter
//! (also inside chains and `_has`), single resources outside it read as unknown, and writes
//! outside it are refused. Granular scope filters work the same way. Every write is recorded
//! with a Provenance naming the grant's agent in the same transaction (`super::provenance`).
//!
//! An open server's requests come through here too, with the open grant (`Grant::open`): the
//! same store, so the same traces, with everything allowed.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::provenance::traced;
use super::scope::{Perm, ADMIN_ONLY};
use super::{Allowed, Grant};
use crate::search::extract::{index_entries, patient_compartment};
use crate::search::index::IndexEntries;
use crate::search::query::{Contained, Predicate, SearchQuery};
use crate::store::{
    Current, HistoryEntry, HistoryQuery, NewVersion, Queued, SearchHit, Statement, Store,
    StoreError, StoreResult, Tx, Version,
};

pub struct GuardedStore {
    inner: Arc<dyn Store>,
    grant: Arc<Grant>,
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn Store>, grant: Arc<Grant>) -> Self {
        GuardedStore { inner, grant }
    }
}

fn forbidden(grant: &Grant, rtype: &str, perm: Perm) -> StoreError {
    StoreError::Forbidden(format!(
        "The access token of {} does not allow '{}' on {rtype} (scope {}/{rtype}.{})",
        grant.agent.name(),
        perm.letter(),
        if grant.patient.is_some() {
            "patient"
        } else {
            "system"
        },
        perm.letter()
    ))
}

/// What the grant requires of resources of one type for one permission.
struct Rule<'a> {
    allowed: Allowed<'a>,
    patient: Option<&'a str>,
}

impl Rule<'_> {
    /// Whether every resource of the type passes, whatever its content.
    fn unrestricted(&self) -> bool {
        self.patient.is_none() && matches!(self.allowed, Allowed::All)
    }

    /// Whether a resource with this content passes (compartment and granular filter).
    fn admits(&self, rtype: &str, id: &str, entries: &IndexEntries) -> bool {
        if let Some(patient) = self.patient {
            if patient_compartment(rtype, id, entries).as_deref() != Some(patient) {
                return false;
            }
        }
        match &self.allowed {
            Allowed::No => false,
            Allowed::All => true,
            Allowed::Filtered(scopes) => scopes.iter().any(|s| s.matches(entries)),
        }
    }
}

fn entries_of(version: &Version) -> Option<IndexEntries> {
    let content: Value = serde_json::from_str(version.content.as_deref()?).ok()?;
    Some(index_entries(&content, &version.rtype))
}

fn rule<'a>(grant: &'a Grant, rtype: &str, perm: Perm) -> StoreResult<Rule<'a>> {
    let allowed = grant.allowed(rtype, perm);
    if let Allowed::No = allowed {
        return Err(forbidden(grant, rtype, perm));
    }
    Ok(Rule {
        allowed,
        patient: grant.patient.as_deref(),
    })
}

/// Adds the grant's conditions to a search over `rtype`, and to every chain and `_has` in it.
fn restrict(grant: &Grant, rtype: &str, filters: &mut Vec<Vec<Predicate>>) -> StoreResult<()> {
    for filter in filters.iter_mut() {
        for predicate in filter.iter_mut() {
            restrict_predicate(grant, predicate)?;
        }
    }
    match grant.allowed(rtype, Perm::Search) {
        Allowed::No => return Err(forbidden(grant, rtype, Perm::Search)),
        Allowed::All => {}
        Allowed::Filtered(scopes) => {
            if scopes.len() == 1 {
                filters.extend(scopes[0].predicates().into_iter().map(|p| vec![p]));
            } else if scopes.iter().all(|s| s.filter.len() == 1) {
                filters.push(scopes.iter().flat_map(|s| s.predicates()).collect());
            } else {
                return Err(StoreError::Forbidden(format!(
                    "The granular scopes on {rtype} have several parameters each and cannot be \
                     combined in one search"
                )));
            }
        }
    }
    if let Some(patient) = &grant.patient {
        filters.push(vec![Predicate::Compartment(patient.clone())]);
    }
    Ok(())
}

fn restrict_predicate(grant: &Grant, predicate: &mut Predicate) -> StoreResult<()> {
    match predicate {
        Predicate::Chain {
            target_type,
            filters,
            ..
        } => restrict(grant, target_type, filters),
        Predicate::Has {
            source_type,
            filters,
            ..
        } => restrict(grant, source_type, filters),
        Predicate::Not(inner) => restrict_predicate(grant, inner),
        _ => Ok(()),
    }
}

impl GuardedStore {
    fn restricted(&self, query: &SearchQuery) -> StoreResult<SearchQuery> {
        // Contained resources are found through their containers, which may be of any type:
        // only a grant that searches every type may look inside them. The compartment filter
        // below then applies to the containers, whose compartment is their contents'.
        if query.contained != Contained::False && !self.grant.allows_everything(Perm::Search) {
            return Err(StoreError::Forbidden(format!(
                "Searching contained resources (_contained) needs search access to every type \
                 ({}/*.s): their containers may be of any type",
                if self.grant.patient.is_some() {
                    "patient"
                } else {
                    "system"
                }
            )));
        }
        let mut query = query.clone();
        restrict(&self.grant, &query.rtype, &mut query.filters)?;
        Ok(query)
    }

    /// Whether the grant may see this version (a deletion: if it could see what was deleted).
    async fn visible(&self, version: &Version, rule: &Rule<'_>) -> StoreResult<bool> {
        if rule.unrestricted() {
            return Ok(true);
        }
        if let Some(entries) = entries_of(version) {
            return Ok(rule.admits(&version.rtype, &version.id, &entries));
        }
        if version.version <= 1 {
            return Ok(false);
        }
        let previous = self
            .inner
            .vread(&version.rtype, &version.id, version.version - 1)
            .await?;
        Ok(previous
            .and_then(|p| entries_of(&p))
            .is_some_and(|entries| rule.admits(&version.rtype, &version.id, &entries)))
    }

    async fn checked(&self, version: Option<Version>) -> StoreResult<Option<Version>> {
        let Some(version) = version else {
            return Ok(None);
        };
        let rule = rule(&self.grant, &version.rtype, Perm::Read)?;
        Ok(self.visible(&version, &rule).await?.then_some(version))
    }
}

#[async_trait]
impl Store for GuardedStore {
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(GuardedTx {
            inner: traced(self.inner.begin().await?, self.grant.agent.clone()),
            grant: self.grant.clone(),
            unseen: HashSet::new(),
        }))
    }

    async fn read(&self, rtype: &str, id: &str) -> StoreResult<Option<Version>> {
        rule(&self.grant, rtype, Perm::Read)?;
        let version = self.inner.read(rtype, id).await?;
        self.checked(version).await
    }

    async fn vread(&self, rtype: &str, id: &str, version: i64) -> StoreResult<Option<Version>> {
        rule(&self.grant, rtype, Perm::Read)?;
        let version = self.inner.vread(rtype, id, version).await?;
        self.checked(version).await
    }

    async fn history(&self, query: &HistoryQuery) -> StoreResult<Vec<HistoryEntry>> {
        match &query.rtype {
            Some(rtype) => {
                rule(&self.grant, rtype, Perm::Read)?;
            }
            None if self.grant.allows_everything(Perm::Read) => {}
            None => {
                return Err(StoreError::Forbidden(format!(
                    "System history needs read access to every type ({}/*.read)",
                    if self.grant.patient.is_some() {
                        "patient"
                    } else {
                        "system"
                    }
                )))
            }
        }
        let mut query = query.clone();
        query.compartment = self.grant.patient.clone();
        let entries = self.inner.history(&query).await?;
        let mut visible = Vec::with_capacity(entries.len());
        for entry in entries {
            let rule = match self.grant.allowed(&entry.version.rtype, Perm::Read) {
                Allowed::No => continue,
                allowed => Rule {
                    allowed,
                    patient: self.grant.patient.as_deref(),
                },
            };
            if self.visible(&entry.version, &rule).await? {
                visible.push(entry);
            }
        }
        Ok(visible)
    }

    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        self.inner.search(&self.restricted(query)?).await
    }

    async fn count(&self, query: &SearchQuery) -> StoreResult<u64> {
        self.inner.count(&self.restricted(query)?).await
    }

    async fn include_targets(
        &self,
        rids: &[i64],
        params: Option<&[String]>,
        target_type: Option<&str>,
    ) -> StoreResult<Vec<(String, String)>> {
        self.inner.include_targets(rids, params, target_type).await
    }

    async fn lastn(
        &self,
        query: &SearchQuery,
        max: usize,
        limit: usize,
    ) -> StoreResult<Vec<SearchHit>> {
        self.inner.lastn(&self.restricted(query)?, max, limit).await
    }

    /// Included resources the grant may not read are left out, silently.
    async fn read_current(&self, keys: &[(String, String)]) -> StoreResult<Vec<SearchHit>> {
        let hits = self.inner.read_current(keys).await?;
        let mut visible = Vec::with_capacity(hits.len());
        for hit in hits {
            let rule = match self.grant.allowed(&hit.version.rtype, Perm::Read) {
                Allowed::No => continue,
                allowed => Rule {
                    allowed,
                    patient: self.grant.patient.as_deref(),
                },
            };
            if self.visible(&hit.version, &rule).await? {
                visible.push(hit);
            }
        }
        Ok(visible)
    }

    /// What the grant may read of a patient's compartment (`$worklist` reads it).
    async fn compartment(&self, patient: &str, types: &[&str]) -> StoreResult<Vec<Version>> {
        let versions = self.inner.compartment(patient, types).await?;
        let mut visible = Vec::with_capacity(versions.len());
        for version in versions {
            let rule = match self.grant.allowed(&version.rtype, Perm::Read) {
                Allowed::No => continue,
                allowed => Rule {
                    allowed,
                    patient: self.grant.patient.as_deref(),
                },
            };
            if self.visible(&version, &rule).await? {
                visible.push(version);
            }
        }
        Ok(visible)
    }

    async fn compartments(&self) -> StoreResult<Vec<String>> {
        if !self.grant.allows_everything(Perm::Read) {
            return Err(StoreError::Forbidden(
                "Listing every patient needs read access to every type".into(),
            ));
        }
        self.inner.compartments().await
    }

    // The scoring queue belongs to the server's own worker, never to a client's request.
    async fn queued(&self, _limit: usize, _now: i64) -> StoreResult<Vec<Queued>> {
        Err(scoring_queue_is_the_servers())
    }

    async fn defer(
        &self,
        _patient: &str,
        _generation: i64,
        _retry_at: Option<i64>,
        _error: &str,
    ) -> StoreResult<()> {
        Err(scoring_queue_is_the_servers())
    }

    async fn scoring_failures(&self) -> StoreResult<Vec<Queued>> {
        Err(scoring_queue_is_the_servers())
    }

    async fn dequeue(&self, _patient: &str, _generation: i64) -> StoreResult<()> {
        Err(scoring_queue_is_the_servers())
    }

    async fn reschedule(&self, _patient: &str, _generation: i64, _at: i64) -> StoreResult<()> {
        Err(scoring_queue_is_the_servers())
    }

    async fn queue_patient(&self, _patient: &str, _at: i64) -> StoreResult<()> {
        Err(scoring_queue_is_the_servers())
    }

    /// Query plans are for the operator (`signaal bench --explain`), never for a client.
    async fn explain(&self, _statement: Statement<'_>) -> StoreResult<Vec<String>> {
        Err(StoreError::Forbidden(
            "Query plans are not available to clients".into(),
        ))
    }

    async fn may_reindex(&self) -> StoreResult<()> {
        may_reindex(&self.grant)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn close(&self) {}
}

fn scoring_queue_is_the_servers() -> StoreError {
    StoreError::Forbidden("The scoring queue is the server's own".into())
}

pub struct GuardedTx {
    inner: Box<dyn Tx>,
    grant: Arc<Grant>,
    /// Resources locked in this transaction that a patient-bound grant cannot see (outside
    /// its compartment, deleted or unknown): never written, and answered alike.
    unseen: HashSet<(String, String)>,
}

impl GuardedTx {
    /// The current content of a resource inside the transaction, if it exists and is not deleted.
    async fn current_entries(
        &mut self,
        rtype: &str,
        id: &str,
    ) -> StoreResult<Option<IndexEntries>> {
        let query = SearchQuery {
            rtype: rtype.to_owned(),
            filters: vec![vec![Predicate::Id(id.to_owned())]],
            count: 1,
            ..Default::default()
        };
        let hits = self.inner.search(&query).await?;
        Ok(hits.first().and_then(|h| entries_of(&h.version)))
    }
}

#[async_trait]
impl Tx for GuardedTx {
    /// For a patient-bound grant, a resource outside its compartment is locked as if it did not
    /// exist: deleting it changes nothing (204), patching it is 404, an If-Match update 412 —
    /// exactly the answers for an unknown id, so no answer reveals that the id is taken. A deleted
    /// resource locks as unknown too, whoever's it was, so deleted ids are not told apart either.
    async fn lock_current(&mut self, rtype: &str, id: &str) -> StoreResult<Option<Current>> {
        let current = self.inner.lock_current(rtype, id).await?;
        if let Some(patient) = self.grant.patient.clone() {
            let key = (rtype.to_owned(), id.to_owned());
            match current {
                Some(c) if !c.deleted => {
                    let entries = self.current_entries(rtype, id).await?;
                    let inside = entries.is_some_and(|e| {
                        patient_compartment(rtype, id, &e).as_deref() == Some(patient.as_str())
                    });
                    if inside {
                        return Ok(current);
                    }
                }
                // Unknown or deleted: an update here would be a create.
                _ => {}
            }
            self.unseen.insert(key);
            return Ok(None);
        }
        Ok(current)
    }

    async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        self.inner.lock_key(key).await
    }

    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let mut query = query.clone();
        restrict(&self.grant, &query.rtype, &mut query.filters)?;
        self.inner.search(&query).await
    }

    async fn write(&mut self, new: NewVersion<'_>, previous: Option<i64>) -> StoreResult<()> {
        let (rtype, id) = (new.rtype, new.id);
        if rtype == ADMIN_ONLY && !self.grant.writes_audit_trail() {
            return Err(StoreError::Forbidden(format!(
                "{ADMIN_ONLY} resources are written by the server only"
            )));
        }
        // A patient-bound grant never writes an id it could not see: update-as-create of an
        // unknown or deleted id is refused like that of another patient's resource (405), since
        // any other answer would tell the two apart. It creates with POST.
        if self.unseen.contains(&(rtype.to_owned(), id.to_owned())) {
            return Err(StoreError::ClientIdNotAllowed(format!("{rtype}/{id}")));
        }
        let perm = match (new.content, previous) {
            (None, _) => Perm::Delete,
            (Some(_), None) => Perm::Create,
            (Some(_), Some(_)) => Perm::Update,
        };
        let grant = self.grant.clone();
        let rule = rule(&grant, rtype, perm)?;
        // What is replaced or deleted must be the grant's to change…
        if previous.is_some() && !rule.unrestricted() {
            if let Some(existing) = self.current_entries(rtype, id).await? {
                if !rule.admits(rtype, id, &existing) {
                    return Err(StoreError::Forbidden(format!(
                        "The access token does not allow changing {rtype}/{id}"
                    )));
                }
            }
        }
        // …and what is written must stay within the grant.
        if new.content.is_some() && !rule.admits(rtype, id, new.index) {
            return Err(StoreError::Forbidden(match &grant.patient {
                Some(p) => format!(
                    "The access token allows writing {rtype} only in the compartment of \
                     Patient/{p} and within its scope filters"
                ),
                None => format!("The resource does not match the scope filter on {rtype}"),
            }));
        }
        // (The traced inner transaction records its Provenance.)
        self.inner.write(new, previous).await
    }

    async fn reindex(&mut self, rid: i64, index: &IndexEntries) -> StoreResult<()> {
        may_reindex(&self.grant)?;
        self.inner.reindex(rid, index).await
    }

    /// Writes were checked in `write`; queueing their patient for re-scoring follows them.
    async fn queue_compartment(&mut self, rtype: &str, id: &str, at: i64) -> StoreResult<()> {
        self.inner.queue_compartment(rtype, id, at).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.inner.commit().await
    }

    fn source(&self) -> Option<&str> {
        self.inner.source()
    }
}

/// `$reindex` rewrites every resource's index: only for a grant that may change everything.
fn may_reindex(grant: &Grant) -> StoreResult<()> {
    if grant.allows_everything(Perm::Update) {
        Ok(())
    } else {
        Err(StoreError::Forbidden(
            "$reindex needs write access to every type (system/*.write)".into(),
        ))
    }
}
