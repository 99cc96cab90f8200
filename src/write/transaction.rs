//! The transaction shell every writer runs its writes in: begin, write, commit, and start over
//! when a concurrent writer got to the same resource first.

use std::future::Future;
use std::pin::Pin;

use crate::error::FhirError;
use crate::store::{Store, StoreResult, Tx};

/// A boxed future borrowing for `'a`: what the work given to [`in_transaction`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How often a transaction is tried when a concurrent writer got to the same resource first.
const ATTEMPTS: usize = 5;

/// Runs `work` in a transaction of `store` and commits it. When the store reports a concurrent
/// change (`FhirError::Conflict`, from the work or the commit), the transaction is dropped
/// (rolled back) and `work` runs again in a new one, up to five times in all: the loser of a
/// race re-reads the current version and writes after the winner, so no version is lost.
///
/// `work` borrows the transaction for the future it returns:
/// `in_transaction(store, |tx| Box::pin(async move { … tx … }))`. Whatever it captures
/// outlives the transaction (the `'env` bound).
pub async fn in_transaction<'env, T, F>(store: &'env dyn Store, work: F) -> Result<T, FhirError>
where
    F: for<'a> FnMut(&'a mut (dyn Tx + 'env)) -> BoxFuture<'a, Result<T, FhirError>>,
{
    in_transaction_begun_by(|| store.begin(), work).await
}

/// [`in_transaction`] with transactions from `begin` (e.g. a store's transaction that records
/// the Provenance of each write).
pub async fn in_transaction_begun_by<'env, T, B, BFut, F>(
    begin: B,
    mut work: F,
) -> Result<T, FhirError>
where
    B: Fn() -> BFut,
    BFut: Future<Output = StoreResult<Box<dyn Tx>>>,
    F: for<'a> FnMut(&'a mut (dyn Tx + 'env)) -> BoxFuture<'a, Result<T, FhirError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = async {
            let mut tx = begin().await?;
            let output = work(&mut *tx).await?;
            tx.commit().await?;
            Ok(output)
        };
        match attempt.await {
            Err(FhirError::Conflict(_)) if tries < ATTEMPTS => continue,
            result => return result,
        }
    }
}
