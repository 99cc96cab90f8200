//! batch: each entry of a `batch` Bundle on its own, in its own store transaction; a failing
//! entry is reported in its `response` (status and OperationOutcome) and the others still apply.
//! Also the GET entries of both batches and transactions.

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::id::new_id;
use crate::http::negotiate::Return;
use crate::interaction::bundle_entry::{self, Action, Entry, Rewrite};
use crate::interaction::transaction::checked_entry;
use crate::interaction::version::Outcome;
use crate::interaction::{create, delete, patch, target_profile, update};
use crate::store::group_commit::{acknowledge_so_far, acknowledged_together};
use crate::store::Tx;
use crate::write::in_transaction;

/// The entries' responses. Their writes are acknowledged together, once all are durable: where
/// the store commits in groups, many entries share one commit (`store::group_commit`).
pub async fn batch(app: &App, raw: &[Value], prefer: Return) -> Result<Vec<Value>, FhirError> {
    let (responses, committed) = acknowledged_together(entries(app, raw, prefer)).await;
    committed?;
    responses
}

async fn entries(app: &App, raw: &[Value], prefer: Return) -> Result<Vec<Value>, FhirError> {
    let mut checked: Vec<Result<Entry, FhirError>> = raw
        .iter()
        .enumerate()
        .map(|(index, raw_entry)| checked_entry(app, &app.validation, index, raw_entry))
        .collect();
    // The targets of references that name profiles, for every entry in one go; an entry whose
    // targets do not conform fails alone.
    let valid: Vec<&Entry> = checked.iter().filter_map(|c| c.as_ref().ok()).collect();
    let mut verdicts = target_profile::check_entries(app, &valid, raw)
        .await?
        .into_iter();
    for c in &mut checked {
        if c.is_ok() {
            if let Some(Err(error)) = verdicts.next() {
                *c = Err(error);
            }
        }
    }
    let mut responses = Vec::with_capacity(raw.len());
    for checked_entry in checked {
        let response = match checked_entry {
            Err(error) => bundle_entry::error_response(&error),
            Ok(entry) if !entry.is_write() => {
                // A read sees the entries written before it.
                acknowledge_so_far().await?;
                read_entry(app, &entry).await
            }
            Ok(entry) => match write_entry(app, &entry).await {
                Ok(outcome) => bundle_entry::write_response(app, &outcome, prefer),
                Err(error) => bundle_entry::error_response(&error),
            },
        };
        responses.push(response);
    }
    Ok(responses)
}

/// A GET entry, through the ordinary read, search and history code.
pub async fn read_entry(app: &App, entry: &Entry) -> Value {
    let request = entry.read_request();
    // Boxed: the router leads back here through POST [base].
    match Box::pin(crate::http::route::dispatch(app, &request)).await {
        Ok(response) => bundle_entry::read_response(response),
        Err(error) => bundle_entry::error_response(&error),
    }
}

/// One write entry in its own transaction, retried on concurrent changes like a single request.
async fn write_entry(app: &App, entry: &Entry) -> Result<Outcome, FhirError> {
    let fresh_id = new_id();
    let fresh_id = &fresh_id;
    in_transaction(app.store.as_ref(), |tx| {
        Box::pin(write_in(tx, app, entry, fresh_id))
    })
    .await
}

async fn write_in(
    tx: &mut dyn Tx,
    app: &App,
    entry: &Entry,
    fresh_id: &str,
) -> Result<Outcome, FhirError> {
    let rtype = entry.rtype.as_str();
    let mut resource = entry.resource.clone().unwrap_or(Value::Null);
    let mut patch = match &entry.action {
        Action::Patch { patch, .. } => Some(patch.clone()),
        _ => None,
    };
    // What references are rewritten in: the resource, or the patch a PATCH entry carries.
    let content = match &mut patch {
        Some(patch) => patch.document_mut(),
        None => &mut resource,
    };
    // Conditional references resolve inside the entry's transaction.
    let mut found = Vec::new();
    bundle_entry::conditional_references(content, &mut found);
    if !found.is_empty() {
        let mut conditional = std::collections::HashMap::new();
        for reference in found {
            let target = bundle_entry::resolve_conditional(tx, app, &reference).await?;
            conditional.insert(reference, target);
        }
        let none = std::collections::HashMap::new();
        Rewrite {
            ids: &none,
            conditional: &conditional,
            bases: vec![],
            strict: false,
        }
        .apply(content, rtype)?;
    }
    match &entry.action {
        Action::Create { condition } => {
            create::create_in(tx, app, rtype, fresh_id, &resource, condition.as_deref()).await
        }
        Action::Update { id } => {
            update::update_in(tx, app, rtype, id, &resource, entry.if_match).await
        }
        Action::ConditionalUpdate { body_id } => {
            let id = update::conditional_target(
                tx,
                app,
                rtype,
                &entry.params,
                body_id.as_deref(),
                fresh_id,
            )
            .await?;
            resource["id"] = Value::String(id.clone());
            update::update_in(tx, app, rtype, &id, &resource, entry.if_match).await
        }
        Action::Delete { id } => delete::delete_in(tx, app, rtype, id, entry.if_match).await,
        Action::ConditionalDelete => {
            delete::conditional_delete_in(tx, app, rtype, &entry.params, entry.if_match).await
        }
        Action::Patch { id, .. } => {
            let id = match id {
                Some(id) => id.clone(),
                None => patch::conditional_target(tx, app, rtype, &entry.params).await?,
            };
            let patch = patch
                .as_ref()
                .ok_or_else(|| FhirError::Internal(format!("{} lost its patch", entry.label())))?;
            let written = patch::patch_in(tx, app, rtype, &id, entry.if_match, patch).await?;
            Ok(patch::outcome(written))
        }
        Action::Read => Err(FhirError::Internal(format!(
            "{} is not a write entry",
            entry.label()
        ))),
    }
}
