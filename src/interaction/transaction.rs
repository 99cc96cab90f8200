//! batch and transaction: `POST [base]` with a Bundle of type `batch` or `transaction`
//! (http page, "batch/transaction"; bundle.html, "transaction processing rules").
//!
//! A transaction runs every write in one store transaction, in the order the specification
//! gives: DELETE, then POST, then PUT, then (after commit) GET. Before anything is written, each
//! POST and PUT entry's identity is settled (server-assigned ids, conditional create and update
//! criteria), so that references to entries' `fullUrl`s and conditional references can be
//! rewritten to `Type/id` in every resource. Any failing entry fails the whole transaction:
//! nothing is written, and the OperationOutcome names the entry. A batch (`batch.rs`) runs each
//! entry on its own.

use std::collections::HashMap;

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::canonical::DEFINITION_TYPES;
use crate::fhir::id::new_id;
use crate::fhir::validate::validate;
use crate::http::negotiate::{prefer_return, Return};
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::bundle_entry::{self, at_entry, Action, Entry, Rewrite};
use crate::interaction::patch::Patch;
use crate::interaction::version::Outcome;
use crate::interaction::{batch, bundle, create, delete, patch, target_profile, update};
use crate::search::conditional::criteria_key;
use crate::store::{Tx, Version};
use crate::validation::Validator;
use crate::write::in_transaction;

/// `POST [base]`: a batch or transaction Bundle.
pub async fn bundle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let bundle = request.json_body()?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::invalid_at(
            "invalid",
            "POST to the base takes a Bundle of type batch or transaction",
            "resourceType",
        ));
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "batch" && kind != "transaction" {
        return Err(FhirError::invalid_at(
            "invalid",
            format!(
                "Bundle.type is '{kind}'; POST to the base takes a batch or transaction Bundle"
            ),
            "Bundle.type",
        ));
    }
    let raw: &[Value] = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    if raw.len() > app.max_bundle_entries {
        return Err(FhirError::TooLarge(format!(
            "The Bundle has {} entries; this server takes at most {} in one batch or transaction",
            raw.len(),
            app.max_bundle_entries
        )));
    }
    // The Bundle itself; each entry's resource is validated as its entry's, so that a batch
    // can report it for that entry alone. The shell copies everything but the resources.
    validate(&shell(&bundle), "Bundle")?;
    let prefer = prefer_return(&request.headers);
    let entries = if kind == "batch" {
        batch::batch(app, raw, prefer).await?
    } else {
        transaction(app, raw, prefer).await?
    };
    Ok(FhirResponse::ok(bundle::bundle(
        &format!("{kind}-response"),
        None,
        Vec::new(),
        entries,
    )))
}

/// A copy of a Bundle without its entries' resources (which can be most of it).
fn shell(bundle: &Value) -> Value {
    let Some(object) = bundle.as_object() else {
        return bundle.clone();
    };
    let copy_without = |object: &serde_json::Map<String, Value>, left_out: &str| -> Value {
        Value::Object(
            object
                .iter()
                .filter(|(k, _)| k.as_str() != left_out)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    let mut shell = copy_without(object, "entry");
    if let Some(entries) = object.get("entry") {
        let entries = match entries.as_array() {
            Some(items) => Value::Array(
                items
                    .iter()
                    .map(|e| {
                        e.as_object()
                            .map_or_else(|| e.clone(), |o| copy_without(o, "resource"))
                    })
                    .collect(),
            ),
            None => entries.clone(),
        };
        shell["entry"] = entries;
    }
    shell
}

/// Reads and validates one entry (request, resource). A PATCH entry's resource is the patch
/// (Binary or Parameters); the patched result is validated when it is applied. The references
/// whose targets must conform to profiles are kept in `targets`, for
/// `target_profile::check_entries` to check every entry's at once.
pub fn checked_entry(
    app: &App,
    validator: &Validator,
    index: usize,
    raw: &Value,
) -> Result<Entry, FhirError> {
    let mut entry = bundle_entry::parse(app, index, raw)
        .map_err(|e| at_entry(e, &bundle_entry::label(index, full_url(raw))))?;
    let fail = |e| at_entry(e, &entry.label());
    if let (true, Some(resource)) = (entry.is_write(), &entry.resource) {
        match entry.action {
            Action::Delete { .. } | Action::ConditionalDelete => {}
            Action::Patch { .. } => {
                let own_type = resource
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                validate(resource, own_type).map_err(fail)?;
            }
            _ => {
                entry.targets = validator
                    .check_write(resource, &entry.rtype)
                    .map_err(fail)?
                    .0
            }
        }
    }
    Ok(entry)
}

/// The definitions the validator uses (`fhir::canonical::DEFINITION_TYPES`) that entries create
/// or update.
fn definitions_written(raw: &[Value]) -> Vec<Value> {
    raw.iter()
        .filter(|e| {
            matches!(
                e.pointer("/request/method").and_then(Value::as_str),
                Some("POST" | "PUT")
            )
        })
        .filter_map(|e| e.get("resource"))
        .filter(|r| {
            r.get("resourceType")
                .and_then(Value::as_str)
                .is_some_and(|t| DEFINITION_TYPES.contains(&t))
        })
        .cloned()
        .collect()
}

fn full_url(raw: &Value) -> Option<&str> {
    raw.get("fullUrl").and_then(Value::as_str)
}

async fn transaction(app: &App, raw: &[Value], prefer: Return) -> Result<Vec<Value>, FhirError> {
    // The entries are validated with the profiles, value sets and code systems the transaction
    // writes along with them (decision 0051).
    let brought = app.validation.with_resources(definitions_written(raw));
    let validator = brought.as_ref().unwrap_or(&app.validation);
    let entries = raw
        .iter()
        .enumerate()
        .map(|(i, e)| checked_entry(app, validator, i, e))
        .collect::<Result<Vec<_>, _>>()?;
    check_full_urls(&entries)?;
    // The targets of references that name profiles: in this Bundle as written, or stored.
    let all: Vec<&Entry> = entries.iter().collect();
    for checked in target_profile::check_entries(app, &all, raw).await? {
        checked?;
    }
    // Ids for new resources, fixed across retries.
    let new_ids: Vec<String> = entries.iter().map(|_| new_id()).collect();
    let (entries_ref, new_ids) = (&entries, &new_ids);
    let outcomes = in_transaction(app.store.as_ref(), |tx| {
        Box::pin(apply(tx, app, entries_ref, new_ids))
    })
    .await
    .map_err(|e| match e {
        FhirError::Conflict(m) => FhirError::Conflict(format!(
            "{m}; the transaction met concurrent changes on every attempt and was not applied"
        )),
        other => other,
    })?;
    let mut responses = Vec::with_capacity(entries.len());
    for (entry, outcome) in entries.iter().zip(outcomes) {
        responses.push(match outcome {
            Some(outcome) => bundle_entry::write_response(app, &outcome, prefer),
            // GET entries run after the commit, through the ordinary read and search code, and
            // see what the transaction wrote. Their failures cannot undo it; they are reported
            // in their entry.
            None => batch::read_entry(app, entry).await,
        });
    }
    Ok(responses)
}

/// Two entries with the same `fullUrl` would make references ambiguous.
fn check_full_urls(entries: &[Entry]) -> Result<(), FhirError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for entry in entries.iter().filter(|e| e.is_write()) {
        if let Some(url) = &entry.full_url {
            if let Some(first) = seen.insert(url, entry.index) {
                return Err(at_entry(
                    FhirError::invalid(format!(
                        "Bundle.entry[{first}] has the same fullUrl; each entry needs its own"
                    )),
                    &entry.label(),
                ));
            }
        }
    }
    Ok(())
}

/// Which entry touches which resource: two entries may not resolve to the same one.
#[derive(Default)]
struct Claims(HashMap<(String, String), usize>);

impl Claims {
    fn claim(&mut self, entry: &Entry, rtype: &str, id: &str) -> Result<(), FhirError> {
        match self
            .0
            .insert((rtype.to_owned(), id.to_owned()), entry.index)
        {
            Some(first) if first != entry.index => Err(at_entry(
                FhirError::invalid(format!(
                    "Bundle.entry[{first}] and this entry both resolve to {rtype}/{id}; a \
                     transaction may touch each resource only once"
                )),
                &entry.label(),
            )),
            _ => Ok(()),
        }
    }
}

/// What a POST, PUT or PATCH entry will write, settled before anything is written.
enum Plan {
    /// Conditional create that found its match: nothing to write.
    Existing(Version),
    Create(String),
    Update(String),
    Patch(String, Patch),
}

/// Every write entry inside `tx`; `None` for GET entries (run after commit).
async fn apply(
    tx: &mut dyn Tx,
    app: &App,
    entries: &[Entry],
    new_ids: &[String],
) -> Result<Vec<Option<Outcome>>, FhirError> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; entries.len()];
    let mut claims = Claims::default();
    // 0. Lock every resource named by id, all at once in one global order (type, id): two
    // transactions writing the same resources then queue rather than deadlock. (The targets of
    // conditional entries are found by their searches, and locked as they are found.)
    tx.lock_all(&named_targets(entries)).await?;
    // 1. DELETE
    for entry in entries {
        let fail = |e| at_entry(e, &entry.label());
        let outcome = match &entry.action {
            Action::Delete { id } => {
                claims.claim(entry, &entry.rtype, id)?;
                delete::delete_in(tx, app, &entry.rtype, id, entry.if_match).await
            }
            Action::ConditionalDelete => {
                delete::conditional_delete_in(tx, app, &entry.rtype, &entry.params, entry.if_match)
                    .await
            }
            _ => continue,
        }
        .map_err(fail)?;
        if let Some(id) = &outcome.id {
            claims.claim(entry, &entry.rtype, id)?;
        }
        outcomes[entry.index] = Some(outcome);
    }
    // 2. The identity of every POST and PUT entry, so references can be rewritten.
    let mut plans: HashMap<usize, Plan> = HashMap::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut criteria_seen: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let fail = |e| at_entry(e, &entry.label());
        let mut same_criteria = || match criteria_seen.insert(
            criteria_key(&entry.rtype, &entry.params_or_condition()),
            entry.index,
        ) {
            Some(first) => Err(fail(FhirError::invalid(format!(
                "Bundle.entry[{first}] has the same conditional criteria; both would resolve to \
                 the same {}",
                entry.rtype
            )))),
            None => Ok(()),
        };
        let plan = match &entry.action {
            Action::Create { condition: None } => Plan::Create(new_ids[entry.index].clone()),
            Action::Create {
                condition: Some(params),
            } => {
                same_criteria()?;
                match create::find_existing(tx, app, &entry.rtype, params)
                    .await
                    .map_err(fail)?
                {
                    Some(existing) => Plan::Existing(existing),
                    None => Plan::Create(new_ids[entry.index].clone()),
                }
            }
            Action::Update { id } => Plan::Update(id.clone()),
            Action::Patch {
                id: Some(id),
                patch,
            } => Plan::Patch(id.clone(), patch.clone()),
            Action::Patch { id: None, patch } => {
                same_criteria()?;
                let id = patch::conditional_target(tx, app, &entry.rtype, &entry.params)
                    .await
                    .map_err(fail)?;
                Plan::Patch(id, patch.clone())
            }
            Action::ConditionalUpdate { body_id } => {
                same_criteria()?;
                let id = update::conditional_target(
                    tx,
                    app,
                    &entry.rtype,
                    &entry.params,
                    body_id.as_deref(),
                    &new_ids[entry.index],
                )
                .await
                .map_err(fail)?;
                Plan::Update(id)
            }
            _ => continue,
        };
        let id = match &plan {
            Plan::Existing(v) => &v.id,
            Plan::Create(id) | Plan::Update(id) | Plan::Patch(id, _) => id,
        };
        claims.claim(entry, &entry.rtype, id)?;
        if let Some(url) = &entry.full_url {
            ids.insert(url.clone(), format!("{}/{id}", entry.rtype));
        }
        plans.insert(entry.index, plan);
    }
    // 3. Conditional references, resolved once each, before this transaction writes.
    let mut conditional: HashMap<String, String> = HashMap::new();
    for entry in entries.iter().filter(|e| plans.contains_key(&e.index)) {
        let mut found = Vec::new();
        let content = match plans.get(&entry.index) {
            Some(Plan::Patch(_, patch)) => Some(patch.document()),
            _ => entry.resource.as_ref(),
        };
        if let Some(content) = content {
            bundle_entry::conditional_references(content, &mut found);
        }
        for reference in found {
            if let std::collections::hash_map::Entry::Vacant(slot) = conditional.entry(reference) {
                let target = bundle_entry::resolve_conditional(tx, app, slot.key())
                    .await
                    .map_err(|e| at_entry(e, &entry.label()))?;
                slot.insert(target);
            }
        }
    }
    // 4. POST, then PUT and PATCH, with references rewritten.
    for pass in [Method::Post, Method::Put] {
        for entry in entries {
            let Some(plan) = plans.get(&entry.index) else {
                continue;
            };
            let is_post = matches!(entry.action, Action::Create { .. });
            if is_post != (pass == Method::Post) {
                continue;
            }
            let fail = |e| at_entry(e, &entry.label());
            let mut bases: Vec<String> = entry
                .full_url
                .as_deref()
                .and_then(Rewrite::base_of)
                .into_iter()
                .collect();
            bases.push(app.base_url.clone());
            let rewrite = Rewrite {
                ids: &ids,
                conditional: &conditional,
                bases,
                strict: true,
            };
            let outcome = match plan {
                Plan::Existing(existing) => create::existing_outcome(existing.clone()),
                Plan::Patch(id, patch) => {
                    let mut patch = patch.clone();
                    rewrite
                        .apply(patch.document_mut(), "resource")
                        .map_err(fail)?;
                    let written =
                        patch::patch_in(tx, app, &entry.rtype, id, entry.if_match, &patch)
                            .await
                            .map_err(fail)?;
                    patch::outcome(written)
                }
                Plan::Create(id) | Plan::Update(id) => {
                    let mut resource = entry.resource.clone().unwrap_or(Value::Null);
                    rewrite.apply(&mut resource, &entry.rtype).map_err(fail)?;
                    resource["id"] = Value::String(id.clone());
                    if is_post {
                        create::new_in(tx, app, &entry.rtype, id, resource).await
                    } else {
                        update::update_in(tx, app, &entry.rtype, id, &resource, entry.if_match)
                            .await
                    }
                    .map_err(fail)?
                }
            };
            outcomes[entry.index] = Some(outcome);
        }
    }
    Ok(outcomes)
}

/// The resources that DELETE, PUT and PATCH entries name by id, sorted and without duplicates.
fn named_targets(entries: &[Entry]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = entries
        .iter()
        .filter_map(|entry| match &entry.action {
            Action::Delete { id } | Action::Update { id } | Action::Patch { id: Some(id), .. } => {
                Some((entry.rtype.clone(), id.clone()))
            }
            _ => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Method {
    Post,
    Put,
}

impl Entry {
    /// The criteria of a conditional create or update.
    fn params_or_condition(&self) -> Vec<(String, String)> {
        match &self.action {
            Action::Create {
                condition: Some(params),
            } => params.clone(),
            _ => self.params.clone(),
        }
    }
}
