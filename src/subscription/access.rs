//! What a subscription may be told: what its creator may read. The creator is the client whose
//! write requested the subscription (recorded from the outbox, never from the resource's own
//! `meta.source`); its grant is rebuilt from the client's registration at every match and every
//! delivery, so narrowed scopes narrow the notifications and a removed client's subscriptions
//! stop. A subscription made anonymously on an open server runs only while the server is open.

use std::sync::Arc;

use serde_json::Value;

use crate::app::App;
use crate::auth::guard::GuardedStore;
use crate::auth::{token, Agent, Grant, CLIENT_SYSTEM};
use crate::store::subscription::Event;
use crate::store::{Method, Store};
use crate::write::Indexing;

/// The grant of a subscription's creator now; `Err`: it no longer has one (the reason).
pub async fn owner_grant(app: &App, owner: Option<&str>) -> Result<Arc<Grant>, String> {
    let Some(uri) = owner else {
        return if app.auth.enforced() {
            Err(
                "the subscription was made anonymously while the server was open; it now \
                 requires access tokens"
                    .into(),
            )
        } else {
            Ok(Grant::open())
        };
    };
    let prefix = token::client_uri("");
    let Some(client) = uri.strip_prefix(&prefix) else {
        return Err(format!(
            "the subscription's creator {uri} is not a client registered here, so its access \
             cannot be checked at delivery"
        ));
    };
    let registration = app
        .auth
        .registration(client)
        .await
        .map_err(|e| format!("reading the registration of client '{client}' failed: {e}"))?
        .ok_or_else(|| {
            format!("client '{client}' that created the subscription is no longer registered")
        })?;
    Ok(Arc::new(Grant {
        agent: Agent::Client {
            id: client.to_owned(),
            system: CLIENT_SYSTEM.to_owned(),
            uri: uri.to_owned(),
        },
        scopes: registration.scopes,
        patient: registration.patient,
        user: None,
        caseload: None,
    }))
}

/// The store as `grant` sees it.
pub fn guarded(app: &App, grant: Arc<Grant>) -> GuardedStore {
    GuardedStore::new(
        app.store.clone(),
        grant,
        Arc::new(Indexing::new(app.search_params.current())),
    )
}

/// The event's focus as `store` (a guarded one) may read it: the version the event is about
/// (for a deletion, the version before), with its `meta`; `None` when it may not.
pub async fn readable(store: &dyn Store, event: &Event) -> Option<Value> {
    let version = if event.method == Method::Delete {
        event.focus_version - 1
    } else {
        event.focus_version
    };
    match store
        .vread(&event.focus_type, &event.focus_id, version)
        .await
    {
        Ok(Some(v)) if !v.deleted() => crate::fhir::meta::stamp(&v),
        _ => None,
    }
}
