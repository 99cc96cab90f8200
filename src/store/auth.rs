//! Storage of authorization state: registered clients, accepted assertion ids (`jti`) and the
//! server's token signing secret. The same SQL on both databases, bound per dialect.

use async_trait::async_trait;
use sqlx::Row;

use super::sql::{Dialect, Sql};
use super::{postgres::PostgresStore, sqlite::SqliteStore, StoreError, StoreResult};

/// A client registered with `signaal client add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    /// The JWKS document itself (registered from a file).
    pub jwks: Option<String>,
    /// Where to fetch the JWKS (registered with a URL).
    pub jwks_url: Option<String>,
    /// The scopes the client may be granted, space-separated.
    pub scope: String,
    /// The Patient id its tokens are bound to.
    pub patient: Option<String>,
    /// Registration time, ms since the Unix epoch.
    pub created: i64,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Registers a client; `StoreError::Conflict` if the id is taken.
    async fn add_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn clients(&self) -> StoreResult<Vec<ClientRecord>>;
    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Removes a client; false if there was none.
    async fn remove_client(&self, id: &str) -> StoreResult<bool>;
    async fn has_clients(&self) -> StoreResult<bool>;
    /// Records an assertion id until `expires` (ms); false if it was seen before (a replay).
    /// Ids whose assertions expired before `now` are forgotten.
    async fn use_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires: i64,
        now: i64,
    ) -> StoreResult<bool>;
    /// The secret access tokens are signed with: `fresh` is stored if there is none yet, and
    /// the stored one is returned (so every server on the same database agrees).
    async fn signing_secret(&self, fresh: &str) -> StoreResult<String>;
}

const CLIENT_COLUMNS: &str = "id, name, jwks, jwks_url, scope, patient, created";

fn insert_client(dialect: Dialect, c: &ClientRecord) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO auth_client (")
        .push(CLIENT_COLUMNS)
        .push(") VALUES (")
        .text(&c.id)
        .push(", ")
        .text(&c.name)
        .push(", ")
        .opt(&c.jwks)
        .push(", ")
        .opt(&c.jwks_url)
        .push(", ")
        .text(&c.scope)
        .push(", ")
        .opt(&c.patient)
        .push(", ")
        .int(c.created)
        .push(")");
    sql
}

fn select_clients(dialect: Dialect, id: Option<&str>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(CLIENT_COLUMNS)
        .push(" FROM auth_client");
    if let Some(id) = id {
        sql.push(" WHERE id = ").text(id);
    }
    sql.push(" ORDER BY id");
    sql
}

fn delete_client(dialect: Dialect, id: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM auth_client WHERE id = ").text(id);
    sql
}

fn forget_jtis(dialect: Dialect, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM auth_jti WHERE expires < ").int(now);
    sql
}

fn insert_jti(dialect: Dialect, client_id: &str, jti: &str, expires: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO auth_jti (client_id, jti, expires) VALUES (")
        .text(client_id)
        .push(", ")
        .text(jti)
        .push(", ")
        .int(expires)
        .push(")");
    sql
}

const KEY_NAME: &str = "access-token";

fn insert_secret(dialect: Dialect, fresh: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO auth_key (name, secret) VALUES (")
        .text(KEY_NAME)
        .push(", ")
        .text(fresh)
        .push(") ON CONFLICT (name) DO NOTHING");
    sql
}

fn select_secret(dialect: Dialect) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT secret FROM auth_key WHERE name = ")
        .text(KEY_NAME);
    sql
}

/// Implements `AuthStore` for a store given its dialect, `prepare` function and the pools it
/// reads and writes with.
macro_rules! auth_store {
    ($store:ty, $dialect:expr, $prepare:path, |$s:ident| $reader:expr, $writer:expr) => {
        #[async_trait]
        impl AuthStore for $store {
            async fn add_client(&self, client: &ClientRecord) -> StoreResult<()> {
                let $s = self;
                let sql = insert_client($dialect, client);
                $prepare(&sql)
                    .execute($writer)
                    .await
                    .map_err(|e| match StoreError::from(e) {
                        StoreError::Conflict(_) => {
                            StoreError::Conflict(format!("a client with id '{}' exists", client.id))
                        }
                        other => other,
                    })?;
                Ok(())
            }

            async fn clients(&self) -> StoreResult<Vec<ClientRecord>> {
                let $s = self;
                let sql = select_clients($dialect, None);
                let rows = $prepare(&sql).fetch_all($reader).await?;
                rows.iter().map(|r| Ok(client_at(r)?)).collect()
            }

            async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
                let $s = self;
                let sql = select_clients($dialect, Some(id));
                let row = $prepare(&sql).fetch_optional($reader).await?;
                Ok(row.map(|r| client_at(&r)).transpose()?)
            }

            async fn remove_client(&self, id: &str) -> StoreResult<bool> {
                let $s = self;
                let sql = delete_client($dialect, id);
                let done = $prepare(&sql).execute($writer).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn has_clients(&self) -> StoreResult<bool> {
                let $s = self;
                let row = sqlx::query("SELECT COUNT(*) FROM auth_client")
                    .fetch_one($reader)
                    .await?;
                Ok(row.try_get::<i64, _>(0)? > 0)
            }

            async fn use_jti(
                &self,
                client_id: &str,
                jti: &str,
                expires: i64,
                now: i64,
            ) -> StoreResult<bool> {
                let $s = self;
                let forget = forget_jtis($dialect, now);
                $prepare(&forget).execute($writer).await?;
                let insert = insert_jti($dialect, client_id, jti, expires);
                match $prepare(&insert)
                    .execute($writer)
                    .await
                    .map_err(StoreError::from)
                {
                    Ok(_) => Ok(true),
                    Err(StoreError::Conflict(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            }

            async fn signing_secret(&self, fresh: &str) -> StoreResult<String> {
                let $s = self;
                let insert = insert_secret($dialect, fresh);
                $prepare(&insert).execute($writer).await?;
                let select = select_secret($dialect);
                let row = $prepare(&select).fetch_one($writer).await?;
                Ok(row.try_get(0)?)
            }
        }
    };
}

fn client_at<R: Row>(row: &R) -> Result<ClientRecord, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ClientRecord {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        jwks: row.try_get(2)?,
        jwks_url: row.try_get(3)?,
        scope: row.try_get(4)?,
        patient: row.try_get(5)?,
        created: row.try_get(6)?,
    })
}

auth_store!(
    SqliteStore,
    Dialect::Sqlite,
    super::sqlite::prepare,
    |s| &s.reader,
    &s.writer
);
auth_store!(
    PostgresStore,
    Dialect::Postgres,
    super::postgres::prepare,
    |s| &s.pool,
    &s.pool
);
