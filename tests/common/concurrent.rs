//! Requests sent at the same moment, to race each other in the server.

use std::sync::Arc;

use signaal::client::Client;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// Sends `n` requests at once (`request(client, i)`, released together by a barrier); what
/// each gave (its reply), in the order of `i`.
pub async fn all_at_once<F, Fut, T>(client: &Client, n: usize, request: F) -> Vec<T>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (client, barrier, request) = (client.clone(), barrier.clone(), request.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            (i, request(client, i).await)
        });
    }
    let mut replies: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, reply) = joined.expect("a request sent at once does not panic");
        replies[i] = Some(reply);
    }
    replies.into_iter().map(Option::unwrap).collect()
}
