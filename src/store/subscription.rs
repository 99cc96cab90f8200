//! Storage of topic-based subscriptions (not FHIR resources): the outbox every write adds to in
//! its own transaction, each subscription's numbered events, and its delivery state. The same
//! SQL on both databases, bound per dialect, and one implementation for every [`Backend`].

use async_trait::async_trait;

use super::backend::{Backend, Column, Columns, Sqlx};
use super::sql::{self, Dialect, Sql};
use super::sql_store::SqlStore;
use super::{Method, NewVersion, StoreError, StoreResult, Tx};

/// A write waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub method: Method,
    /// Who wrote it: the client's URI (`meta.source`), `None` for anonymous and server writes.
    pub source: Option<String>,
    /// When it was written (ms).
    pub at: i64,
}

/// A notification to record for a subscription: its number is the subscription's next.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub subscription: String,
    pub focus_type: String,
    pub focus_id: String,
    pub focus_version: i64,
    pub method: Method,
    pub at: i64,
}

/// A recorded event of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub subscription: String,
    /// Its number among the subscription's events, from 1 (`eventsSinceSubscriptionStart`).
    pub number: i64,
    pub focus_type: String,
    pub focus_id: String,
    pub focus_version: i64,
    pub method: Method,
    pub at: i64,
}

/// The server's state of one subscription.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub subscription: String,
    /// The creating client's URI; `None`: anonymous (an open server).
    pub owner: Option<String>,
    /// Events recorded so far (`eventsSinceSubscriptionStart`).
    pub events: i64,
    /// The highest event number delivered.
    pub delivered: i64,
    /// Failed deliveries in a row.
    pub attempts: i64,
    /// When the next delivery may be tried (ms).
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// The oldest `limit` writes in the outbox.
    async fn outbox(&self, limit: usize) -> StoreResult<Vec<OutboxEntry>>;
    /// In one transaction: numbers and records `events` (each the next of its subscription;
    /// one without a state row is dropped) and removes the outbox entries `done`. Returns the
    /// recorded events.
    async fn record_events(&self, done: &[i64], events: &[NewEvent]) -> StoreResult<Vec<Event>>;
    /// Creates the state of a subscription, or sets the owner of an existing one.
    async fn set_owner(&self, subscription: &str, owner: Option<&str>) -> StoreResult<()>;
    async fn state(&self, subscription: &str) -> StoreResult<Option<State>>;
    /// Events `from..=to` of a subscription (`to`: the newest), oldest first, at most `limit`.
    async fn events(
        &self,
        subscription: &str,
        from: i64,
        to: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<Event>>;
    /// Records that events up to `number` were delivered (resets the retry state).
    async fn delivered(&self, subscription: &str, number: i64) -> StoreResult<()>;
    /// Records a failed delivery: `attempts` in a row, the next try at `retry_at`.
    async fn failed(
        &self,
        subscription: &str,
        attempts: i64,
        retry_at: i64,
        error: &str,
    ) -> StoreResult<()>;
    /// Forgets a deleted subscription: its state and events.
    async fn forget(&self, subscription: &str) -> StoreResult<()>;
}

/// The outbox rows of versions written in a transaction (see `NewVersion::event`), in
/// multi-row statements (`sql::multi_row`).
pub(super) fn insert_outbox(dialect: Dialect, new: &[NewVersion<'_>]) -> Vec<Sql> {
    let mut out = Vec::new();
    sql::multi_row(
        &mut out,
        dialect,
        "INSERT INTO subscription_outbox (rtype, id, version, method, source, at)",
        new,
        "",
        |sql, new| {
            sql.text(new.rtype)
                .push(", ")
                .text(new.id)
                .push(", ")
                .int(new.version)
                .push(", ")
                .text(new.method.as_str())
                .push(", ")
                .opt(new.source)
                .push(", ")
                .int(new.last_updated);
        },
    );
    out
}

fn select_outbox(dialect: Dialect, limit: usize) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "SELECT seq, rtype, id, version, method, source, at FROM subscription_outbox \
         ORDER BY seq LIMIT ",
    )
    .int(limit as i64);
    sql
}

/// Outbox rows removed by one statement at most.
const OUTBOX_ROWS_PER_STATEMENT: usize = 256;

/// Removes the outbox rows `seqs` (at most [`OUTBOX_ROWS_PER_STATEMENT`]), answering the ones
/// that were there.
fn delete_outbox(dialect: Dialect, seqs: &[i64]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM subscription_outbox WHERE seq IN (");
    sql.ints(seqs);
    sql.push(") RETURNING seq");
    sql
}

fn next_number(dialect: Dialect, subscription: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE subscription_state SET events = events + 1 WHERE subscription = ")
        .text(subscription)
        .push(" RETURNING events");
    sql
}

fn insert_event(dialect: Dialect, event: &NewEvent, number: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "INSERT INTO subscription_event \
         (subscription, number, focus_type, focus_id, focus_version, method, at) VALUES (",
    )
    .text(&event.subscription)
    .push(", ")
    .int(number)
    .push(", ")
    .text(&event.focus_type)
    .push(", ")
    .text(&event.focus_id)
    .push(", ")
    .int(event.focus_version)
    .push(", ")
    .text(event.method.as_str())
    .push(", ")
    .int(event.at)
    .push(")");
    sql
}

fn upsert_owner(dialect: Dialect, subscription: &str, owner: Option<&str>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO subscription_state (subscription, owner) VALUES (")
        .text(subscription)
        .push(", ")
        .opt(owner)
        .push(") ON CONFLICT (subscription) DO UPDATE SET owner = ")
        .opt(owner);
    sql
}

const STATE_COLUMNS: &str =
    "subscription, owner, events, delivered, attempts, next_attempt_at, last_error";

fn select_state(dialect: Dialect, subscription: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(STATE_COLUMNS)
        .push(" FROM subscription_state WHERE subscription = ")
        .text(subscription);
    sql
}

const EVENT_COLUMNS: &str = "subscription, number, focus_type, focus_id, focus_version, method, at";

fn select_events(
    dialect: Dialect,
    subscription: &str,
    from: i64,
    to: Option<i64>,
    limit: usize,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(EVENT_COLUMNS)
        .push(" FROM subscription_event WHERE subscription = ")
        .text(subscription)
        .push(" AND number >= ")
        .int(from);
    if let Some(to) = to {
        sql.push(" AND number <= ").int(to);
    }
    sql.push(" ORDER BY number LIMIT ").int(limit as i64);
    sql
}

fn update_delivered(dialect: Dialect, subscription: &str, number: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE subscription_state SET delivered = CASE WHEN delivered > ")
        .int(number)
        .push(" THEN delivered ELSE ")
        .int(number)
        .push(" END, attempts = 0, next_attempt_at = 0, last_error = NULL WHERE subscription = ")
        .text(subscription);
    sql
}

fn update_failed(
    dialect: Dialect,
    subscription: &str,
    attempts: i64,
    retry_at: i64,
    error: &str,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE subscription_state SET attempts = ")
        .int(attempts)
        .push(", next_attempt_at = ")
        .int(retry_at)
        .push(", last_error = ")
        .text(error)
        .push(" WHERE subscription = ")
        .text(subscription);
    sql
}

fn delete_from(dialect: Dialect, table: &str, subscription: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ")
        .push(table)
        .push(" WHERE subscription = ")
        .text(subscription);
    sql
}

fn event_at(row: &impl Columns) -> Result<Event, sqlx::Error> {
    let method: String = row.at(5)?;
    Ok(Event {
        subscription: row.at(0)?,
        number: row.at(1)?,
        focus_type: row.at(2)?,
        focus_id: row.at(3)?,
        focus_version: row.at(4)?,
        method: Method::parse(&method),
        at: row.at(6)?,
    })
}

#[async_trait]
impl<B: Backend> SubscriptionStore for SqlStore<B> {
    async fn outbox(&self, limit: usize) -> StoreResult<Vec<OutboxEntry>> {
        let sql = select_outbox(B::DIALECT, limit);
        let rows = B::Db::prepare(&sql).fetch_all(self.writer()).await?;
        rows.iter()
            .map(|row| {
                let method: String = row.at(4)?;
                Ok(OutboxEntry {
                    seq: row.at(0)?,
                    rtype: row.at(1)?,
                    id: row.at(2)?,
                    version: row.at(3)?,
                    method: Method::parse(&method),
                    source: row.at(5)?,
                    at: row.at(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn record_events(&self, done: &[i64], events: &[NewEvent]) -> StoreResult<Vec<Event>> {
        // A write transaction like any other, so that on SQLite it joins the group commit and
        // shares the fsync of the writes around it (decision 0057): while clients write, a
        // round follows every few of their writes.
        self.in_own_transaction(|mut tx| async move {
            // Each row is removed by the round that recorded its events, once: a row already
            // gone was handled by another worker (a server that held the worker lease before
            // this one), and this round's events would repeat its; they are not recorded.
            for seqs in done.chunks(OUTBOX_ROWS_PER_STATEMENT) {
                let removed = tx.fetch_all(&delete_outbox(B::DIALECT, seqs)).await?;
                if removed.len() < seqs.len() {
                    return Err(StoreError::HandledElsewhere(format!(
                        "{} of outbox entries {}..={} were handled by another subscription worker",
                        seqs.len() - removed.len(),
                        seqs[0],
                        seqs[seqs.len() - 1]
                    )));
                }
            }
            let mut recorded = Vec::with_capacity(events.len());
            for event in events {
                let numbered = tx
                    .fetch_all(&next_number(B::DIALECT, &event.subscription))
                    .await?;
                let Some(row) = numbered.first() else {
                    continue;
                };
                let number: i64 = row.at(0)?;
                tx.execute(vec![insert_event(B::DIALECT, event, number)])
                    .await?;
                recorded.push(Event {
                    subscription: event.subscription.clone(),
                    number,
                    focus_type: event.focus_type.clone(),
                    focus_id: event.focus_id.clone(),
                    focus_version: event.focus_version,
                    method: event.method,
                    at: event.at,
                });
            }
            tx.commit().await?;
            Ok(recorded)
        })
        .await
    }

    async fn set_owner(&self, subscription: &str, owner: Option<&str>) -> StoreResult<()> {
        let sql = upsert_owner(B::DIALECT, subscription, owner);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn state(&self, subscription: &str) -> StoreResult<Option<State>> {
        let sql = select_state(B::DIALECT, subscription);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row
            .map(|row| -> Result<State, sqlx::Error> {
                Ok(State {
                    subscription: row.at(0)?,
                    owner: row.at(1)?,
                    events: row.at(2)?,
                    delivered: row.at(3)?,
                    attempts: row.at(4)?,
                    next_attempt_at: row.at(5)?,
                    last_error: row.at(6)?,
                })
            })
            .transpose()?)
    }

    async fn events(
        &self,
        subscription: &str,
        from: i64,
        to: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let sql = select_events(B::DIALECT, subscription, from, to, limit);
        let rows = B::Db::prepare(&sql).fetch_all(self.writer()).await?;
        Ok(rows.iter().map(event_at).collect::<Result<_, _>>()?)
    }

    async fn delivered(&self, subscription: &str, number: i64) -> StoreResult<()> {
        let sql = update_delivered(B::DIALECT, subscription, number);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn failed(
        &self,
        subscription: &str,
        attempts: i64,
        retry_at: i64,
        error: &str,
    ) -> StoreResult<()> {
        let sql = update_failed(B::DIALECT, subscription, attempts, retry_at, error);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn forget(&self, subscription: &str) -> StoreResult<()> {
        let mut tx = self.begin_raw().await?;
        for table in ["subscription_event", "subscription_state"] {
            let sql = delete_from(B::DIALECT, table, subscription);
            B::Db::prepare(&sql)
                .execute(B::Db::connection(&mut tx))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sql::golden::*;
    use super::super::sqlite::Sqlite;
    use super::super::Store;
    use super::*;

    /// Outbox entries another worker already removed: its events are not recorded twice, and
    /// the round is not tried again as if it had lost a race (it would lose again).
    #[tokio::test]
    async fn a_round_whose_entries_another_worker_handled_is_given_up_at_once() {
        let (dir, url) = crate::store::scratch_sqlite("outbox-handled");
        let store = SqlStore::<Sqlite>::open(&url).await.unwrap();
        let answer = store.record_events(&[41, 42], &[]).await;
        assert!(
            matches!(answer, Err(StoreError::HandledElsewhere(_))),
            "{answer:?}"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_rounds_outbox_rows_are_removed_by_one_statement() {
        assert_sql(
            |d| delete_outbox(d, &[7, 8, 12]),
            "DELETE FROM subscription_outbox WHERE seq IN (?, ?, ?) RETURNING seq",
            "DELETE FROM subscription_outbox WHERE seq IN ($1, $2, $3) RETURNING seq",
            "7, 8, 12",
        );
    }

    #[test]
    fn an_event_takes_the_next_number_of_its_subscription() {
        assert_sql(
            |d| next_number(d, "s1"),
            "UPDATE subscription_state SET events = events + 1 WHERE subscription = ? RETURNING events",
            "UPDATE subscription_state SET events = events + 1 WHERE subscription = $1 RETURNING events",
            r#""s1""#,
        );
    }

    #[test]
    fn events_are_read_by_number_range() {
        assert_sql(
            |d| select_events(d, "s1", 3, Some(5), 100),
            "SELECT subscription, number, focus_type, focus_id, focus_version, method, at FROM subscription_event WHERE subscription = ? AND number >= ? AND number <= ? ORDER BY number LIMIT ?",
            "SELECT subscription, number, focus_type, focus_id, focus_version, method, at FROM subscription_event WHERE subscription = $1 AND number >= $2 AND number <= $3 ORDER BY number LIMIT $4",
            r#""s1", 3, 5, 100"#,
        );
    }

    #[test]
    fn delivered_never_goes_back() {
        assert_sql(
            |d| update_delivered(d, "s1", 4),
            "UPDATE subscription_state SET delivered = CASE WHEN delivered > ? THEN delivered ELSE ? END, attempts = 0, next_attempt_at = 0, last_error = NULL WHERE subscription = ?",
            "UPDATE subscription_state SET delivered = CASE WHEN delivered > $1 THEN delivered ELSE $2 END, attempts = 0, next_attempt_at = 0, last_error = NULL WHERE subscription = $3",
            r#"4, 4, "s1""#,
        );
    }
}
