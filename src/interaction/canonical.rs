//! The shipped canonical resources (`fhir::canonical`) in the store: written at start when
//! missing or different from what this build ships, so they are read, searched (by `url`) and
//! versioned like every resource. Writes by clients are refused in `write::write`.

use serde_json::Value;

use crate::error::FhirError;
use crate::fhir::{canonical, meta};
use crate::store::{Method, Store};
use crate::write::{self, Indexing};

/// Brings the store's copies of the shipped canonical resources up to date with this build.
pub async fn seed(store: &dyn Store, indexing: &Indexing) -> Result<(), FhirError> {
    let mut written = 0;
    for resource in canonical::all() {
        let rtype = resource["resourceType"].as_str().unwrap_or_default();
        let id = resource["id"].as_str().unwrap_or_default();
        let mut expected = resource.clone();
        meta::strip(&mut expected, id);
        let stored = store.read(rtype, id).await?;
        let same = stored
            .as_ref()
            .and_then(|v| v.content.as_deref())
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .is_some_and(|stored| stored == expected);
        if same {
            continue;
        }
        let mut tx = store.begin().await?;
        let current = tx.lock_current(rtype, id).await?;
        write::version::write_unchecked(
            &mut *tx,
            indexing,
            rtype,
            id,
            current,
            Method::Put,
            Some(expected),
        )
        .await?;
        tx.commit().await?;
        written += 1;
    }
    if written > 0 {
        tracing::info!(written, "shipped canonical resources brought up to date");
    }
    Ok(())
}
