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
use super::scope::{Context, Perm, ADMIN_ONLY};
use super::{Agent, Allowed, Grant, CLIENT_SYSTEM};
use crate::fhir::compartment;
use crate::search::definitions::Registry;
use crate::search::extract::index_entries;
use crate::search::index::IndexEntries;
use crate::search::query::{Contained, Predicate, SearchQuery};
use crate::store::{
    Current, HistoryEntry, HistoryQuery, Method, NewVersion, Queued, SearchHit, Statement, Store,
    StoreError, StoreResult, Tx, Version,
};
use crate::write::Indexing;

/// The audit trail's types: what the server records of every request and every write. Once
/// recorded, nobody changes or deletes them through the API.
const TRAIL: [&str; 2] = ["Provenance", ADMIN_ONLY];

fn trail_is_immutable(rtype: &str) -> StoreError {
    StoreError::Forbidden(format!(
        "{rtype} resources are the audit trail: once recorded they are never changed or \
         deleted (record a new {rtype} instead)"
    ))
}

pub struct GuardedStore {
    inner: Arc<dyn Store>,
    grant: Arc<Grant>,
    /// The request's search parameters: what a resource's scope filters and compartment are
    /// read with, and what the Provenance of each write is indexed with.
    indexing: Arc<Indexing>,
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn Store>, grant: Arc<Grant>, indexing: Arc<Indexing>) -> Self {
        GuardedStore {
            inner,
            grant,
            indexing,
        }
    }
}

fn forbidden(grant: &Grant, rtype: &str, perm: Perm) -> StoreError {
    StoreError::Forbidden(format!(
        "The access token of {} does not allow '{}' on {rtype} (scope {}/{rtype}.{})",
        grant.agent.name(),
        perm.letter(),
        context_word(grant),
        perm.letter()
    ))
}

/// How a scope of the grant's context begins: `patient`, `user` or `system`.
fn context_word(grant: &Grant) -> &'static str {
    match grant.context() {
        Context::Patient => "patient",
        Context::User => "user",
        Context::System => "system",
    }
}

/// The patients whose compartments a grant is confined to.
#[derive(Clone, Copy)]
enum Within<'a> {
    /// Any resource (a system grant).
    Any,
    /// This Patient's compartment only (a patient-bound token).
    Patient(&'a str),
    /// These patients' compartments, and resources of types in no patient's compartment (a
    /// person's `user/` grant: a practitioner's caseload).
    Caseload(&'a [String]),
}

impl<'a> Within<'a> {
    fn of(grant: &'a Grant) -> Within<'a> {
        match (&grant.patient, &grant.caseload) {
            (Some(p), _) => Within::Patient(p),
            (None, Some(c)) => Within::Caseload(c),
            (None, None) => Within::Any,
        }
    }

    fn admits(&self, rtype: &str, id: &str, entries: &IndexEntries) -> bool {
        match self {
            Within::Any => true,
            Within::Patient(p) => entries.patient_compartment(rtype, id).as_deref() == Some(*p),
            Within::Caseload(patients) => {
                if !in_patient_compartments(rtype) {
                    return true;
                }
                entries
                    .patient_compartment(rtype, id)
                    .is_some_and(|p| patients.contains(&p))
            }
        }
    }
}

/// Whether resources of a type can be in a Patient's compartment.
fn in_patient_compartments(rtype: &str) -> bool {
    compartment::is_the_patient(rtype) || !compartment::patient_params(rtype).is_empty()
}

/// What the grant requires of resources of one type for one permission.
struct Rule<'a> {
    allowed: Allowed<'a>,
    within: Within<'a>,
}

impl Rule<'_> {
    /// Whether every resource of the type passes, whatever its content.
    fn unrestricted(&self) -> bool {
        matches!(self.within, Within::Any) && matches!(self.allowed, Allowed::All)
    }

    /// Whether a resource with this content passes (compartment and granular filter).
    fn admits(&self, rtype: &str, id: &str, entries: &IndexEntries) -> bool {
        if !self.within.admits(rtype, id, entries) {
            return false;
        }
        match &self.allowed {
            Allowed::No => false,
            Allowed::All => true,
            Allowed::Filtered(scopes) => scopes.iter().any(|s| s.matches(entries)),
        }
    }
}

fn entries_of(registry: &Registry, version: &Version) -> Option<IndexEntries> {
    let content: Value = serde_json::from_str(version.content.as_deref()?).ok()?;
    Some(index_entries(registry, &content, &version.rtype))
}

fn rule<'a>(grant: &'a Grant, rtype: &str, perm: Perm) -> StoreResult<Rule<'a>> {
    let allowed = grant.allowed(rtype, perm);
    if let Allowed::No = allowed {
        return Err(forbidden(grant, rtype, perm));
    }
    Ok(Rule {
        allowed,
        within: Within::of(grant),
    })
}

/// Adds the grant's conditions to a search over `rtype`, and to every chain and `_has` in it.
/// A patient-bound grant's compartment comes first: it is the filter the search starts from
/// (the store drives a query from a compartment before any reference or token), so what a
/// search costs depends only on the compartment the token sees, never on how much data of
/// another patient a reference or token in it would find.
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
    match Within::of(grant) {
        Within::Any => {}
        Within::Patient(patient) => {
            filters.insert(0, vec![Predicate::Compartment(patient.to_owned())]);
        }
        Within::Caseload(_) if !in_patient_compartments(rtype) => {}
        Within::Caseload([]) => {
            // No patient at all: no resource of a type that belongs to patients.
            filters.insert(
                0,
                vec![Predicate::Not(Box::new(Predicate::Type(rtype.to_owned())))],
            );
        }
        Within::Caseload(patients) => {
            filters.insert(
                0,
                patients
                    .iter()
                    .map(|p| Predicate::Compartment(p.clone()))
                    .collect(),
            );
        }
    }
    Ok(())
}

/// A search confined to what `grant` may see: its scopes' filters and its compartment, in
/// every chain and `_has` too, and with `_contained` no container of a type it may not search.
/// (Public so that the shape of the confined query can be checked; requests get it through
/// [`GuardedStore`].)
pub fn confine(grant: &Grant, query: &SearchQuery) -> StoreResult<SearchQuery> {
    // Contained resources are found through their containers, which may be of any type:
    // only a grant that searches every type may look inside them. The compartment filter
    // then applies to the containers, whose compartment is their contents'.
    if query.contained != Contained::False && !grant.allows_everything(Perm::Search) {
        return Err(StoreError::Forbidden(format!(
            "Searching contained resources (_contained) needs search access to every type \
             ({}/*.s): their containers may be of any type",
            context_word(grant)
        )));
    }
    let mut query = query.clone();
    restrict(grant, &query.rtype, &mut query.filters)?;
    if query.contained != Contained::False {
        // A `*` scope reaches every type but the audit trail: containers of the types the grant
        // may not search are no hits, nor are the resources they contain.
        for rtype in crate::fhir::resource_types::all() {
            if let Allowed::No = grant.allowed(rtype, Perm::Search) {
                query
                    .filters
                    .push(vec![Predicate::Not(Box::new(Predicate::Type(
                        (*rtype).to_owned(),
                    )))]);
            }
        }
    }
    Ok(query)
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
        confine(&self.grant, query)
    }

    /// Whether the grant may see this version (a deletion: if it could see what was deleted).
    async fn visible(&self, version: &Version, rule: &Rule<'_>) -> StoreResult<bool> {
        if rule.unrestricted() {
            return Ok(true);
        }
        if let Some(entries) = entries_of(self.indexing.registry(), version) {
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
            .and_then(|p| entries_of(self.indexing.registry(), &p))
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
            inner: traced(
                self.inner.begin().await?,
                self.grant.agent.clone(),
                self.indexing.clone(),
            ),
            grant: self.grant.clone(),
            indexing: self.indexing.clone(),
            unseen: HashSet::new(),
            intent: None,
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
                    context_word(&self.grant)
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
                    within: Within::of(&self.grant),
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
                    within: Within::of(&self.grant),
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
                    within: Within::of(&self.grant),
                },
            };
            if self.visible(&version, &rule).await? {
                visible.push(version);
            }
        }
        Ok(visible)
    }

    async fn compartments(&self) -> StoreResult<Vec<String>> {
        if self.grant.confined() || !self.grant.allows_everything(Perm::Read) {
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

    async fn claim(&self, _limit: usize, _now: i64, _until: i64) -> StoreResult<Vec<Queued>> {
        Err(scoring_queue_is_the_servers())
    }

    async fn take_lease(&self, _: &str, _: &str, _: i64, _: i64) -> StoreResult<bool> {
        Err(StoreError::Forbidden(
            "Worker leases are the server's own".into(),
        ))
    }

    async fn release_lease(&self, _: &str, _: &str) -> StoreResult<()> {
        Err(StoreError::Forbidden(
            "Worker leases are the server's own".into(),
        ))
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

    async fn settle_scored(&self, _scored: &[(String, i64, Option<i64>)]) -> StoreResult<()> {
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
    indexing: Arc<Indexing>,
    /// Resources locked in this transaction that a grant restricted by content (a patient's
    /// compartment, granular scope filters) cannot see (outside them, deleted or unknown):
    /// never written, and answered alike.
    unseen: HashSet<(String, String)>,
    /// What the interaction in progress means to do (`Tx::may_write`): the permission whose
    /// scope filters decide which resources it sees when it locks one.
    intent: Option<Perm>,
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
        Ok(hits
            .first()
            .and_then(|h| entries_of(self.indexing.registry(), &h.version)))
    }
}

#[async_trait]
impl Tx for GuardedTx {
    /// For a grant restricted by content (a patient-bound one, or one whose scopes for the
    /// type have granular filters), a resource it can neither read nor change is locked as if it
    /// did not exist: deleting it changes nothing (204), patching it is 404, an If-Match update
    /// 412 — exactly the answers for an unknown id, so no answer reveals that the id is taken. A
    /// deleted resource locks as unknown too, whoever's it was, so deleted ids are not told apart
    /// either. (Whether the grant may write the type at all was decided before, from the token
    /// alone: `may_write`.)
    async fn lock_current(&mut self, rtype: &str, id: &str) -> StoreResult<Option<Current>> {
        let current = self.inner.lock_current(rtype, id).await?;
        let grant = self.grant.clone();
        let write = Rule {
            allowed: grant.allowed(rtype, self.intent.unwrap_or(Perm::Update)),
            within: Within::of(&grant),
        };
        if write.unrestricted() {
            return Ok(current);
        }
        let read = Rule {
            allowed: grant.allowed(rtype, Perm::Read),
            within: Within::of(&grant),
        };
        if let Some(c) = &current {
            if !c.deleted {
                let seen = self
                    .current_entries(rtype, id)
                    .await?
                    .is_some_and(|e| read.admits(rtype, id, &e) || write.admits(rtype, id, &e));
                if seen {
                    return Ok(current);
                }
            }
        }
        // Unknown, deleted or unseen: an update here would be a create with the client's id.
        self.unseen.insert((rtype.to_owned(), id.to_owned()));
        Ok(None)
    }

    /// Decided from the access token alone, before anything is looked up: the same answer for
    /// an id that exists and one that does not. DELETE needs `d`, PATCH `u`, PUT `u` or `c`
    /// (update or update-as-create), POST `c`; the audit trail is never changed or deleted.
    async fn may_write(&mut self, rtype: &str, method: Method) -> StoreResult<()> {
        let perms: &[Perm] = match method {
            Method::Post => &[Perm::Create],
            Method::Put => &[Perm::Update, Perm::Create],
            Method::Patch => &[Perm::Update],
            Method::Delete => &[Perm::Delete],
        };
        if TRAIL.contains(&rtype) && matches!(method, Method::Patch | Method::Delete) {
            return Err(trail_is_immutable(rtype));
        }
        let Some(perm) = perms
            .iter()
            .copied()
            .find(|p| !matches!(self.grant.allowed(rtype, *p), Allowed::No))
        else {
            return Err(forbidden(&self.grant, rtype, perms[0]));
        };
        self.intent = Some(perm);
        self.inner.may_write(rtype, method).await
    }

    async fn lock_all(&mut self, keys: &[(String, String)]) -> StoreResult<()> {
        self.inner.lock_all(keys).await
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
        if rtype == ADMIN_ONLY {
            return Err(StoreError::Forbidden(format!(
                "{ADMIN_ONLY} resources are written by the server only"
            )));
        }
        if TRAIL.contains(&rtype) && previous.is_some() {
            return Err(trail_is_immutable(rtype));
        }
        if rtype == "Provenance" {
            if let Some(content) = new.content {
                names_its_writer(&self.grant.agent, content)?;
            }
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
                None if grant.caseload.is_some() => format!(
                    "The access token of {} allows writing {rtype} only in the compartments \
                     of the patients in the user's care teams and within its scope filters",
                    grant.agent.name()
                ),
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

/// `$reindex` rewrites every resource's index (and its jobs are polled and cancelled with the
/// same right): only for a grant that may change everything, which a patient-bound one never
/// does, whatever its `patient/*` scopes say.
fn may_reindex(grant: &Grant) -> StoreResult<()> {
    let everything = [Perm::Create, Perm::Update, Perm::Delete]
        .into_iter()
        .all(|perm| grant.allows_everything(perm));
    if !grant.confined() && everything {
        Ok(())
    } else {
        Err(StoreError::Forbidden(
            "$reindex needs write access to every type (system/*.write)".into(),
        ))
    }
}

/// A Provenance a client writes names that client among its agents (`agent.who` or
/// `agent.onBehalfOf` with its identifier), and no agent names another client of this server or
/// of the writer's issuer: nobody records the trail in someone else's name. On an open server
/// there is nobody to name, so no agent may name a client at all.
fn names_its_writer(agent: &Agent, content: &str) -> StoreResult<()> {
    let resource: Value = serde_json::from_str(content)
        .map_err(|e| StoreError::Database(format!("the Provenance to write is not JSON: {e}")))?;
    let (writer_system, writer_id) = match agent {
        Agent::Client { id, system, .. } => (Some(system.as_str()), Some(id.as_str())),
        Agent::Anonymous | Agent::Scorer | Agent::Operator => (None, None),
    };
    let mut named = false;
    let agents = resource.get("agent").and_then(Value::as_array);
    for party in agents.into_iter().flatten() {
        for role in ["who", "onBehalfOf"] {
            let identifier = &party[role]["identifier"];
            let Some(system) = identifier.get("system").and_then(Value::as_str) else {
                continue;
            };
            if system != CLIENT_SYSTEM && Some(system) != writer_system {
                continue;
            }
            let value = identifier.get("value").and_then(Value::as_str);
            if Some(system) == writer_system && value == writer_id {
                named = true;
            } else {
                return Err(StoreError::Forbidden(format!(
                    "A Provenance written by {} cannot name {}|{} as an agent: the trail names \
                     who actually wrote",
                    agent.name(),
                    system,
                    value.unwrap_or("")
                )));
            }
        }
    }
    match (writer_system, writer_id) {
        (Some(system), Some(id)) if !named => Err(StoreError::Forbidden(format!(
            "A Provenance written by {} must name it as an agent (agent.who.identifier \
             {system}|{id})",
            agent.name()
        ))),
        _ => Ok(()),
    }
}
