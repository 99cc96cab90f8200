//! Storage of authorization state: registered clients, accepted assertion ids (`jti`) and the
//! server's token signing secret. The same SQL on both databases, bound per dialect, and one
//! implementation for every [`Backend`].

use async_trait::async_trait;

use super::backend::{Backend, Column, Columns, Sqlx};
use super::sql::{Dialect, Sql};
use super::sql_store::SqlStore;
use super::{StoreError, StoreResult};

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
pub trait AuthStore: super::users::UserStore + Send + Sync {
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
        .opt(c.jwks.as_deref())
        .push(", ")
        .opt(c.jwks_url.as_deref())
        .push(", ")
        .text(&c.scope)
        .push(", ")
        .opt(c.patient.as_deref())
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
    sql.push("DELETE FROM auth_client WHERE id = ")
        .text(id)
        .push(" RETURNING id");
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

#[async_trait]
impl<B: Backend> AuthStore for SqlStore<B> {
    async fn add_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let sql = insert_client(B::DIALECT, client);
        B::Db::prepare(&sql)
            .execute(self.writer())
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
        let sql = select_clients(B::DIALECT, None);
        let rows = B::Db::prepare(&sql).fetch_all(self.reader()).await?;
        rows.iter().map(|r| Ok(client_at(r)?)).collect()
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        let sql = select_clients(B::DIALECT, Some(id));
        let row = B::Db::prepare(&sql).fetch_optional(self.reader()).await?;
        Ok(row.map(|r| client_at(&r)).transpose()?)
    }

    async fn remove_client(&self, id: &str) -> StoreResult<bool> {
        // An app's redirect URIs go with it (a client registered again under the id is new).
        B::Db::prepare(
            Sql::new(B::DIALECT)
                .push("DELETE FROM auth_app WHERE client_id = ")
                .text(id),
        )
        .execute(self.writer())
        .await?;
        let sql = delete_client(B::DIALECT, id);
        let removed = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(removed.is_some())
    }

    async fn has_clients(&self) -> StoreResult<bool> {
        let row = B::Db::query("SELECT COUNT(*) FROM auth_client")
            .fetch_one(self.reader())
            .await?;
        Ok(Column::<i64>::at(&row, 0)? > 0)
    }

    async fn use_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let forget = forget_jtis(B::DIALECT, now);
        B::Db::prepare(&forget).execute(self.writer()).await?;
        let insert = insert_jti(B::DIALECT, client_id, jti, expires);
        match B::Db::prepare(&insert)
            .execute(self.writer())
            .await
            .map_err(StoreError::from)
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn signing_secret(&self, fresh: &str) -> StoreResult<String> {
        let insert = insert_secret(B::DIALECT, fresh);
        B::Db::prepare(&insert).execute(self.writer()).await?;
        let select = select_secret(B::DIALECT);
        let row = B::Db::prepare(&select).fetch_one(self.writer()).await?;
        Ok(row.at(0)?)
    }
}

fn client_at(row: &impl Columns) -> Result<ClientRecord, sqlx::Error> {
    Ok(ClientRecord {
        id: row.at(0)?,
        name: row.at(1)?,
        jwks: row.at(2)?,
        jwks_url: row.at(3)?,
        scope: row.at(4)?,
        patient: row.at(5)?,
        created: row.at(6)?,
    })
}
