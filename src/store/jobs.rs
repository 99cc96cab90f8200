//! Storage of jobs (`crate::jobs`): one row per job that can be polled, so that a restart
//! finds the ones it did not finish. The same SQL on both databases, bound per dialect.

use async_trait::async_trait;

use super::backend::{Backend, Columns, Sqlx};
use super::sql::{Bind, Dialect, Sql};
use super::sql_store::SqlStore;
use super::StoreResult;

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    /// The table of jobs it belongs to (`export`, `reindex`, …).
    pub kind: String,
    /// The client that started it (`Agent::key`).
    pub owner: String,
    /// Done and total, in resources.
    pub done: i64,
    pub total: i64,
    /// Once finished: the HTTP status of its answer and the answer's JSON body.
    pub finished: Option<(i64, String)>,
    /// When it started and when its row last changed (ms).
    pub started: i64,
    pub updated: i64,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records a job that has started.
    async fn insert_job(&self, job: &JobRecord) -> StoreResult<()>;
    /// Records how far a running job has come.
    async fn job_progress(&self, id: &str, done: i64, total: i64, now: i64) -> StoreResult<()>;
    /// Records a job's answer: it is finished.
    async fn finish_job(&self, id: &str, status: i64, answer: &str, now: i64) -> StoreResult<()>;
    /// Forgets a job (cancelled, deleted by its client, or expired).
    async fn remove_job(&self, id: &str) -> StoreResult<()>;
    /// Every job of a kind, oldest first.
    async fn jobs(&self, kind: &str) -> StoreResult<Vec<JobRecord>>;
}

const COLUMNS: &str = "id, kind, owner, done, total, status, answer, started, updated";

fn insert(dialect: Dialect, job: &JobRecord) -> Sql {
    let (status, answer) = match &job.finished {
        Some((status, answer)) => (Some(*status), Some(answer.clone())),
        None => (None, None),
    };
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO job (")
        .push(COLUMNS)
        .push(", state) VALUES (")
        .text(&job.id)
        .push(", ")
        .text(&job.kind)
        .push(", ")
        .text(&job.owner)
        .push(", ")
        .int(job.done)
        .push(", ")
        .int(job.total)
        .push(", ")
        .bind(Bind::OptInt(status))
        .push(", ")
        .opt(answer.as_deref())
        .push(", ")
        .int(job.started)
        .push(", ")
        .int(job.updated)
        .push(", ")
        .text(if job.finished.is_some() {
            "finished"
        } else {
            "running"
        })
        .push(")");
    sql
}

fn progress(dialect: Dialect, id: &str, done: i64, total: i64, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE job SET done = ")
        .int(done)
        .push(", total = ")
        .int(total)
        .push(", updated = ")
        .int(now)
        .push(" WHERE id = ")
        .text(id)
        .push(" AND state = 'running'");
    sql
}

fn finish(dialect: Dialect, id: &str, status: i64, answer: &str, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE job SET state = 'finished', status = ")
        .int(status)
        .push(", answer = ")
        .text(answer)
        .push(", updated = ")
        .int(now)
        .push(" WHERE id = ")
        .text(id);
    sql
}

fn remove(dialect: Dialect, id: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM job WHERE id = ").text(id);
    sql
}

fn select(dialect: Dialect, kind: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM job WHERE kind = ")
        .text(kind)
        .push(" ORDER BY started, id");
    sql
}

#[async_trait]
impl<B: Backend> JobStore for SqlStore<B> {
    async fn insert_job(&self, job: &JobRecord) -> StoreResult<()> {
        B::Db::prepare(&insert(B::DIALECT, job))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn job_progress(&self, id: &str, done: i64, total: i64, now: i64) -> StoreResult<()> {
        B::Db::prepare(&progress(B::DIALECT, id, done, total, now))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn finish_job(&self, id: &str, status: i64, answer: &str, now: i64) -> StoreResult<()> {
        B::Db::prepare(&finish(B::DIALECT, id, status, answer, now))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn remove_job(&self, id: &str) -> StoreResult<()> {
        B::Db::prepare(&remove(B::DIALECT, id))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn jobs(&self, kind: &str) -> StoreResult<Vec<JobRecord>> {
        let rows = B::Db::prepare(&select(B::DIALECT, kind))
            .fetch_all(self.writer())
            .await?;
        rows.iter().map(|r| Ok(record_at(r)?)).collect()
    }
}

fn record_at(row: &impl Columns) -> Result<JobRecord, sqlx::Error> {
    let status: Option<i64> = row.at(5)?;
    let answer: Option<String> = row.at(6)?;
    Ok(JobRecord {
        id: row.at(0)?,
        kind: row.at(1)?,
        owner: row.at(2)?,
        done: row.at(3)?,
        total: row.at(4)?,
        finished: status.zip(answer),
        started: row.at(7)?,
        updated: row.at(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_never_touches_a_finished_job() {
        let sql = progress(Dialect::Postgres, "j", 1, 2, 3);
        assert!(sql.text.ends_with("WHERE id = $4 AND state = 'running'"));
    }
}
