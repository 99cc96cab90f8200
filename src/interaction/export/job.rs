//! The export job: reads the store page by page as of the kick-off's `transactionTime` and
//! hands each resource to its [`Output`] file; deletions since `_since` as transaction Bundles.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::FhirError;
use crate::fhir::compartment::is_the_patient;
use crate::fhir::datetime::format_instant;
use crate::fhir::id::new_id;
use crate::jobs::Job;
use crate::search::extract::index_entries;
use crate::search::query::{Cursor, Predicate, SearchQuery};
use crate::store::{HistoryQuery, Method as WriteMethod, Store, Version};
use crate::write::Indexing;

use super::output::{io, Output};
use super::parameters::Request;
use super::BATCH;

/// Deleted resources per line (transaction Bundle) of a `deleted` file.
const DELETED_PER_BUNDLE: usize = 500;

/// One page of current resources of a type, in row order, after a row.
pub(super) fn page(rtype: &str, after: Option<i64>, count: usize) -> SearchQuery {
    paged(
        SearchQuery {
            rtype: rtype.to_owned(),
            ..Default::default()
        },
        after,
        count,
    )
}

/// `query`'s page after a row.
pub(super) fn paged(mut query: SearchQuery, after: Option<i64>, count: usize) -> SearchQuery {
    query.count = count;
    query.after = after.map(|rid| Cursor {
        keys: Vec::new(),
        rid,
    });
    query.before = None;
    query
}

/// An export job's work.
pub(super) struct Export {
    pub(super) store: Arc<dyn Store>,
    pub(super) indexing: Arc<Indexing>,
    pub(super) dir: PathBuf,
    pub(super) files_url: String,
    pub(super) file_size: u64,
    pub(super) transaction_time: i64,
    pub(super) asked: Request,
    /// Group members or the POST's `patient` list: only their compartments.
    pub(super) members: Option<Vec<String>>,
}

impl Export {
    /// Writes the files and returns the manifest.
    pub(super) async fn run(&self, job: &Job, mut manifest: Value) -> Result<Value, FhirError> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        let mut outputs: Vec<Output> = self
            .asked
            .types
            .iter()
            .map(|rtype| Output::new(self, rtype, rtype))
            .collect();
        match &self.members {
            Some(members) => self.compartments(job, members, &mut outputs).await?,
            None => {
                let mut total = 0;
                for rtype in &self.asked.types {
                    total += self.store.count(&page(rtype, None, BATCH)).await?;
                }
                job.progress.set_total(total);
                for out in outputs.iter_mut() {
                    if job.cancelled() {
                        break;
                    }
                    self.every(job, out).await?;
                }
            }
        }
        let mut output = Vec::new();
        for out in outputs.iter_mut() {
            out.close().await?;
            output.append(&mut out.done);
        }
        let mut deleted = Output::new(self, "Bundle", "deleted");
        if self.asked.since.is_some() && !job.cancelled() {
            self.deleted(&mut deleted).await?;
        }
        deleted.close().await?;
        if job.cancelled() {
            let _ = tokio::fs::remove_dir_all(&self.dir).await;
        }
        manifest["output"] = json!(output);
        manifest["deleted"] = json!(deleted.done);
        manifest["error"] = json!([]);
        Ok(manifest)
    }

    /// Whether a version as of the transaction time is exported under `_since`.
    pub(super) fn fresh(&self, version: &Version) -> bool {
        self.asked
            .since
            .is_none_or(|since| version.last_updated > since)
    }

    /// The version of `version`'s resource current at the transaction time (`None`: it did
    /// not exist then, or was deleted).
    pub(super) async fn as_of(&self, version: Version) -> Result<Option<Version>, FhirError> {
        if version.last_updated <= self.transaction_time {
            return Ok(Some(version));
        }
        let t = self.transaction_time;
        let then = self
            .store
            .history(&HistoryQuery {
                rtype: Some(version.rtype.clone()),
                id: Some(version.id.clone()),
                at: Some((t, t + 1)),
                count: 1,
                ..Default::default()
            })
            .await?;
        Ok(then
            .into_iter()
            .next()
            .map(|entry| entry.version)
            .filter(|v| !v.deleted()))
    }

    /// Every resource of `out`'s type (matching one of its `_typeFilter` queries), page by
    /// page, then those deleted since the transaction time that existed at it.
    pub(super) async fn every(&self, job: &Job, out: &mut Output) -> Result<(), FhirError> {
        let plain = [page(&out.rtype, None, BATCH)];
        let queries = self
            .asked
            .filters
            .get(&out.rtype)
            .map(Vec::as_slice)
            .unwrap_or(&plain[..]);
        for (k, query) in queries.iter().enumerate() {
            let mut after = None;
            loop {
                if job.cancelled() {
                    return Ok(());
                }
                let mut hits = self
                    .store
                    .search(&paged(query.clone(), after, BATCH))
                    .await?;
                let more = hits.len() > BATCH;
                hits.truncate(BATCH);
                after = hits.last().map(|hit| hit.rid);
                // A resource an earlier query of the type matched is written already.
                let ids: Vec<String> = hits.iter().map(|h| h.version.id.clone()).collect();
                let earlier = self.matching(&queries[..k], &ids).await?;
                job.progress.add_done(hits.len() as u64);
                for hit in hits {
                    if earlier.contains(&hit.version.id) {
                        continue;
                    }
                    if let Some(version) = self.as_of(hit.version).await? {
                        if self.fresh(&version) {
                            out.write(&version).await?;
                        }
                    }
                }
                if !more {
                    break;
                }
            }
        }
        if !self.asked.filters.contains_key(&out.rtype) {
            self.deleted_since_transaction(job, out).await?;
        }
        Ok(())
    }

    /// The ids among `ids` that one of `queries` matches.
    pub(super) async fn matching(
        &self,
        queries: &[SearchQuery],
        ids: &[String],
    ) -> Result<HashSet<String>, FhirError> {
        let mut found = HashSet::new();
        if ids.is_empty() {
            return Ok(found);
        }
        for query in queries {
            let mut query = paged(query.clone(), None, ids.len());
            query
                .filters
                .push(ids.iter().map(|id| Predicate::Id(id.clone())).collect());
            for hit in self.store.search(&query).await? {
                found.insert(hit.version.id);
            }
        }
        Ok(found)
    }

    /// Resources of `out`'s type deleted after the transaction time: exported as they were
    /// at it, if they existed then. One deleted while the pages were read may have been
    /// written from its page already: those are looked up in the files (deletions during an
    /// export are few, and the files are read only when there are some).
    pub(super) async fn deleted_since_transaction(
        &self,
        job: &Job,
        out: &mut Output,
    ) -> Result<(), FhirError> {
        let mut seen = HashSet::new();
        let mut missing: Vec<Version> = Vec::new();
        let mut before = None;
        loop {
            if job.cancelled() {
                return Ok(());
            }
            let mut entries = self
                .store
                .history(&HistoryQuery {
                    rtype: Some(out.rtype.clone()),
                    since: Some(self.transaction_time + 1),
                    before_seq: before,
                    count: BATCH,
                    ..Default::default()
                })
                .await?;
            let more = entries.len() > BATCH;
            entries.truncate(BATCH);
            before = entries.last().map(|e| e.seq);
            for entry in entries {
                let version = entry.version;
                if version.method != WriteMethod::Delete || !seen.insert(version.id.clone()) {
                    continue;
                }
                let current = self.store.read(&version.rtype, &version.id).await?;
                if current.is_some_and(|c| !c.deleted()) {
                    // Written again since: the pages had it.
                    continue;
                }
                if let Some(then) = self.as_of(version).await? {
                    if self.fresh(&then) {
                        missing.push(then);
                    }
                }
            }
            if !more {
                break;
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<String> = missing.iter().map(|v| v.id.clone()).collect();
        let written = out.written(&wanted).await?;
        for version in missing {
            if !written.contains(&version.id) {
                out.write(&version).await?;
            }
        }
        Ok(())
    }

    /// Each member's compartment in turn (one patient's data at a time).
    pub(super) async fn compartments(
        &self,
        job: &Job,
        members: &[String],
        outputs: &mut [Output],
    ) -> Result<(), FhirError> {
        let types: Vec<&str> = self.asked.types.iter().map(String::as_str).collect();
        job.progress.set_total(members.len() as u64);
        for patient in members {
            if job.cancelled() {
                break;
            }
            let mut versions = Vec::new();
            for version in self.store.compartment(patient, &types).await? {
                if let Some(version) = self.as_of(version).await? {
                    if self.fresh(&version) {
                        versions.push(version);
                    }
                }
            }
            // `_typeFilter`: per type, only the resources one of its queries matches.
            for (rtype, queries) in &self.asked.filters {
                let ids: Vec<String> = versions
                    .iter()
                    .filter(|v| &v.rtype == rtype)
                    .map(|v| v.id.clone())
                    .collect();
                let matched = self.matching(queries, &ids).await?;
                versions.retain(|v| &v.rtype != rtype || matched.contains(&v.id));
            }
            for version in &versions {
                if let Some(out) = outputs.iter_mut().find(|o| o.rtype == version.rtype) {
                    out.write(version).await?;
                }
            }
            job.progress.add_done(1);
        }
        Ok(())
    }

    /// The manifest's `deleted`: resources of the exported types deleted after `_since` and
    /// still deleted at the transaction time, in transaction Bundles of `DELETE` entries.
    pub(super) async fn deleted(&self, out: &mut Output) -> Result<(), FhirError> {
        let Some(since) = self.asked.since else {
            return Ok(());
        };
        let mut entries: Vec<Value> = Vec::new();
        for rtype in &self.asked.types {
            let mut seen = HashSet::new();
            let mut before = None;
            loop {
                let mut found = self
                    .store
                    .history(&HistoryQuery {
                        rtype: Some(rtype.clone()),
                        since: Some(since + 1),
                        before_seq: before,
                        count: BATCH,
                        ..Default::default()
                    })
                    .await?;
                let more = found.len() > BATCH;
                found.truncate(BATCH);
                before = found.last().map(|e| e.seq);
                for entry in found {
                    let version = entry.version;
                    if version.method != WriteMethod::Delete
                        || version.last_updated > self.transaction_time
                        || !seen.insert(version.id.clone())
                    {
                        continue;
                    }
                    // Deleted as of the transaction time (not written again before it), and
                    // for a patient list, in one of its compartments before it was deleted.
                    let (rtype, id) = (version.rtype.clone(), version.id.clone());
                    let at_transaction = self
                        .store
                        .history(&HistoryQuery {
                            rtype: Some(rtype.clone()),
                            id: Some(id.clone()),
                            at: Some((self.transaction_time, self.transaction_time + 1)),
                            count: 1,
                            ..Default::default()
                        })
                        .await?;
                    if at_transaction.first().is_some_and(|e| !e.version.deleted()) {
                        continue;
                    }
                    if !self.in_members(&version).await? {
                        continue;
                    }
                    entries.push(json!({
                        "request": {"method": "DELETE", "url": format!("{rtype}/{id}")},
                    }));
                    if entries.len() >= DELETED_PER_BUNDLE {
                        out.line(&self.deletion_bundle(std::mem::take(&mut entries)))
                            .await?;
                    }
                }
                if !more {
                    break;
                }
            }
        }
        if !entries.is_empty() {
            out.line(&self.deletion_bundle(entries)).await?;
        }
        Ok(())
    }

    pub(super) fn deletion_bundle(&self, entries: Vec<Value>) -> Value {
        json!({
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": format_instant(self.transaction_time)},
            "type": "transaction",
            "entry": entries,
        })
    }

    /// Whether a deleted resource was, before its deletion, in the compartment of one of the
    /// export's patients (always, without a patient list).
    pub(super) async fn in_members(&self, deletion: &Version) -> Result<bool, FhirError> {
        let Some(members) = &self.members else {
            return Ok(true);
        };
        if is_the_patient(&deletion.rtype) {
            return Ok(members.contains(&deletion.id));
        }
        let before = match deletion.version {
            1 => None,
            v => {
                self.store
                    .vread(&deletion.rtype, &deletion.id, v - 1)
                    .await?
            }
        };
        let Some(resource) = before
            .and_then(|b| b.content)
            .and_then(|c| serde_json::from_str::<Value>(&c).ok())
        else {
            return Ok(false);
        };
        let entries = index_entries(self.indexing.registry(), &resource, &deletion.rtype);
        let patient = crate::fhir::compartment::patient(&deletion.rtype, &deletion.id, |param| {
            entries
                .references
                .iter()
                .find(|r| r.param == param && r.target_type.as_deref() == Some("Patient"))
                .and_then(|r| r.target_id.clone())
        });
        Ok(patient.is_some_and(|p| members.contains(&p)))
    }
}
