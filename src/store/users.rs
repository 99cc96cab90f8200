//! Storage of what people log in with (SMART App Launch, decision 0035): user accounts, the
//! apps that launch for them (redirect URIs) and the grants users give those apps — an
//! authorization code that becomes, once redeemed, the grant its access and refresh tokens
//! name. The same SQL on both databases, bound per dialect; codes and refresh tokens are
//! stored as their SHA-256 only.

use async_trait::async_trait;

use super::backend::{Backend, Column, Columns, Sqlx};
use super::sql::{Dialect, Sql};
use super::sql_store::SqlStore;
use super::{StoreError, StoreResult};

/// A person who logs in (`signaal user add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The log-in name.
    pub id: String,
    /// `Practitioner/ID` or `Patient/ID`: the `fhirUser` of their tokens.
    pub fhir_user: String,
    /// Argon2id hash (PHC string).
    pub password: String,
    /// When the account was added or its password last changed (ms): tokens name it, so a
    /// removed, re-added or re-passworded account's earlier tokens end.
    pub since: i64,
}

/// What a user allowed an app: an authorization code, then the grant its tokens name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub user_since: i64,
    pub scope: String,
    pub patient: Option<String>,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub code_hash: String,
    pub code_expires: i64,
    pub refresh_expires: Option<i64>,
    pub created: i64,
    pub revoked: Option<i64>,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The code, unused and unexpired: now used.
    Fresh(GrantRecord),
    /// A code used before (or expired): the grant it made, which the caller revokes.
    Spent(String),
    Unknown,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Adds a user; `StoreError::Conflict` if the name is taken.
    async fn add_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn users(&self) -> StoreResult<Vec<UserRecord>>;
    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// Removes a user and revokes every grant they gave; false if there was none.
    async fn remove_user(&self, id: &str, now: i64) -> StoreResult<bool>;
    /// Sets a new password hash (and `since`), revoking every grant the user gave.
    async fn set_password(&self, id: &str, hash: &str, now: i64) -> StoreResult<bool>;

    /// Registers the redirect URIs of an app (a client that launches for people).
    async fn set_app(&self, client_id: &str, redirect_uris: &str) -> StoreResult<()>;
    /// An app's redirect URIs, space-separated; `None` for a client that is no app.
    async fn app(&self, client_id: &str) -> StoreResult<Option<String>>;

    async fn add_grant(&self, grant: &GrantRecord) -> StoreResult<()>;
    /// Uses an authorization code once: see [`Redeemed`].
    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<Redeemed>;
    async fn grant(&self, id: &str) -> StoreResult<Option<GrantRecord>>;
    /// The live grant whose current refresh token this is (unexpired, unrevoked).
    async fn grant_by_refresh(
        &self,
        refresh_hash: &str,
        now: i64,
    ) -> StoreResult<Option<GrantRecord>>;
    /// Replaces the grant's refresh token (rotation): the previous one stops working.
    async fn set_refresh(
        &self,
        grant_id: &str,
        refresh_hash: &str,
        expires: i64,
    ) -> StoreResult<()>;
    /// Revokes a grant; false if there was none live.
    async fn revoke_grant(&self, id: &str, now: i64) -> StoreResult<bool>;
    /// A named secret of the server: `fresh` is stored if there is none yet, and the stored one
    /// is returned (every server on the same database agrees).
    async fn named_secret(&self, name: &str, fresh: &str) -> StoreResult<String>;
    /// A named secret of the server, if one is stored.
    async fn stored_secret(&self, name: &str) -> StoreResult<Option<String>>;

    /// Links a user to a person of an OpenID Connect provider (their `iss` and `sub`),
    /// replacing an earlier link; false if there is no such user. `StoreError::Conflict` if
    /// another user has that link.
    async fn link_oidc(&self, id: &str, issuer: &str, subject: &str) -> StoreResult<bool>;
    /// The user linked to a provider's subject.
    async fn user_by_oidc(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserRecord>>;
    /// Sets the Argon2id hash of an app's client secret (it then authenticates with it).
    async fn set_app_secret(&self, client_id: &str, hash: &str) -> StoreResult<()>;
    /// The hash of an app's client secret; `None` for an app without one (or no app).
    async fn app_secret(&self, client_id: &str) -> StoreResult<Option<String>>;
}

const USER_COLUMNS: &str = "id, fhir_user, password, since";
const GRANT_COLUMNS: &str = "id, client_id, user_id, user_since, scope, patient, redirect_uri, \
     code_challenge, nonce, code_hash, code_expires, refresh_expires, created, revoked";

fn user_at(row: &impl Columns) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.at(0)?,
        fhir_user: row.at(1)?,
        password: row.at(2)?,
        since: row.at(3)?,
    })
}

fn grant_at(row: &impl Columns) -> Result<GrantRecord, sqlx::Error> {
    Ok(GrantRecord {
        id: row.at(0)?,
        client_id: row.at(1)?,
        user_id: row.at(2)?,
        user_since: row.at(3)?,
        scope: row.at(4)?,
        patient: row.at(5)?,
        redirect_uri: row.at(6)?,
        code_challenge: row.at(7)?,
        nonce: row.at(8)?,
        code_hash: row.at(9)?,
        code_expires: row.at(10)?,
        refresh_expires: row.at(11)?,
        created: row.at(12)?,
        revoked: row.at(13)?,
    })
}

fn revoke_user_grants(dialect: Dialect, user: &str, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE auth_grant SET revoked = ")
        .int(now)
        .push(" WHERE revoked IS NULL AND user_id = ")
        .text(user);
    sql
}

fn select_grant(dialect: Dialect, column: &str, value: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(GRANT_COLUMNS)
        .push(" FROM auth_grant WHERE ")
        .push(column)
        .push(" = ")
        .text(value);
    sql
}

#[async_trait]
impl<B: Backend> UserStore for SqlStore<B> {
    async fn add_user(&self, user: &UserRecord) -> StoreResult<()> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("INSERT INTO auth_user (")
            .push(USER_COLUMNS)
            .push(") VALUES (")
            .text(&user.id)
            .push(", ")
            .text(&user.fhir_user)
            .push(", ")
            .text(&user.password)
            .push(", ")
            .int(user.since)
            .push(")");
        B::Db::prepare(&sql)
            .execute(self.writer())
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("a user named '{}' exists", user.id))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn users(&self) -> StoreResult<Vec<UserRecord>> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT ")
            .push(USER_COLUMNS)
            .push(" FROM auth_user ORDER BY id");
        let rows = B::Db::prepare(&sql).fetch_all(self.reader()).await?;
        rows.iter().map(|r| Ok(user_at(r)?)).collect()
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT ")
            .push(USER_COLUMNS)
            .push(" FROM auth_user WHERE id = ")
            .text(id);
        // From the writer: a removal or a new password counts at once.
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.map(|r| user_at(&r)).transpose()?)
    }

    async fn remove_user(&self, id: &str, now: i64) -> StoreResult<bool> {
        let revoke = revoke_user_grants(B::DIALECT, id, now);
        B::Db::prepare(&revoke).execute(self.writer()).await?;
        let mut sql = Sql::new(B::DIALECT);
        sql.push("DELETE FROM auth_user WHERE id = ")
            .text(id)
            .push(" RETURNING id");
        let removed = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(removed.is_some())
    }

    async fn set_password(&self, id: &str, hash: &str, now: i64) -> StoreResult<bool> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("UPDATE auth_user SET password = ")
            .text(hash)
            .push(", since = ")
            .int(now)
            .push(" WHERE id = ")
            .text(id)
            .push(" RETURNING id");
        let changed = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        let revoke = revoke_user_grants(B::DIALECT, id, now);
        B::Db::prepare(&revoke).execute(self.writer()).await?;
        Ok(changed.is_some())
    }

    async fn set_app(&self, client_id: &str, redirect_uris: &str) -> StoreResult<()> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("INSERT INTO auth_app (client_id, redirect_uris) VALUES (")
            .text(client_id)
            .push(", ")
            .text(redirect_uris)
            .push(") ON CONFLICT (client_id) DO UPDATE SET redirect_uris = ")
            .text(redirect_uris);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn app(&self, client_id: &str) -> StoreResult<Option<String>> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT a.redirect_uris FROM auth_app a JOIN auth_client c ON c.id = a.client_id WHERE a.client_id = ")
            .text(client_id);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.map(|r| Column::<String>::at(&r, 0)).transpose()?)
    }

    async fn add_grant(&self, g: &GrantRecord) -> StoreResult<()> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("INSERT INTO auth_grant (")
            .push(GRANT_COLUMNS)
            .push(") VALUES (")
            .text(&g.id)
            .push(", ")
            .text(&g.client_id)
            .push(", ")
            .text(&g.user_id)
            .push(", ")
            .int(g.user_since)
            .push(", ")
            .text(&g.scope)
            .push(", ")
            .opt(g.patient.as_deref())
            .push(", ")
            .text(&g.redirect_uri)
            .push(", ")
            .text(&g.code_challenge)
            .push(", ")
            .opt(g.nonce.as_deref())
            .push(", ")
            .text(&g.code_hash)
            .push(", ")
            .int(g.code_expires)
            .push(", ");
        match g.refresh_expires {
            Some(t) => sql.int(t),
            None => sql.push("NULL"),
        };
        sql.push(", ").int(g.created).push(", ");
        match g.revoked {
            Some(t) => sql.int(t),
            None => sql.push("NULL"),
        };
        sql.push(")");
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<Redeemed> {
        // One statement marks the code used: of two concurrent redemptions only one gets it.
        let mut sql = Sql::new(B::DIALECT);
        sql.push("UPDATE auth_grant SET code_used = 1 WHERE code_used = 0 AND revoked IS NULL AND code_hash = ")
            .text(code_hash)
            .push(" AND code_expires >= ")
            .int(now)
            .push(" RETURNING ")
            .push(GRANT_COLUMNS);
        if let Some(row) = B::Db::prepare(&sql).fetch_optional(self.writer()).await? {
            return Ok(Redeemed::Fresh(grant_at(&row)?));
        }
        let sql = select_grant(B::DIALECT, "code_hash", code_hash);
        Ok(
            match B::Db::prepare(&sql).fetch_optional(self.writer()).await? {
                Some(row) => Redeemed::Spent(grant_at(&row)?.id),
                None => Redeemed::Unknown,
            },
        )
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        let sql = select_grant(B::DIALECT, "id", id);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.map(|r| grant_at(&r)).transpose()?)
    }

    async fn grant_by_refresh(
        &self,
        refresh_hash: &str,
        now: i64,
    ) -> StoreResult<Option<GrantRecord>> {
        let mut sql = select_grant(B::DIALECT, "refresh_hash", refresh_hash);
        sql.push(" AND revoked IS NULL AND refresh_expires >= ")
            .int(now);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.map(|r| grant_at(&r)).transpose()?)
    }

    async fn set_refresh(
        &self,
        grant_id: &str,
        refresh_hash: &str,
        expires: i64,
    ) -> StoreResult<()> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("UPDATE auth_grant SET refresh_hash = ")
            .text(refresh_hash)
            .push(", refresh_expires = ")
            .int(expires)
            .push(" WHERE id = ")
            .text(grant_id);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn revoke_grant(&self, id: &str, now: i64) -> StoreResult<bool> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("UPDATE auth_grant SET revoked = ")
            .int(now)
            .push(" WHERE revoked IS NULL AND id = ")
            .text(id)
            .push(" RETURNING id");
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.is_some())
    }

    async fn named_secret(&self, name: &str, fresh: &str) -> StoreResult<String> {
        let mut insert = Sql::new(B::DIALECT);
        insert
            .push("INSERT INTO auth_key (name, secret) VALUES (")
            .text(name)
            .push(", ")
            .text(fresh)
            .push(") ON CONFLICT (name) DO NOTHING");
        B::Db::prepare(&insert).execute(self.writer()).await?;
        let mut select = Sql::new(B::DIALECT);
        select
            .push("SELECT secret FROM auth_key WHERE name = ")
            .text(name);
        let row = B::Db::prepare(&select).fetch_one(self.writer()).await?;
        Ok(Column::<String>::at(&row, 0)?)
    }

    async fn stored_secret(&self, name: &str) -> StoreResult<Option<String>> {
        let mut select = Sql::new(B::DIALECT);
        select
            .push("SELECT secret FROM auth_key WHERE name = ")
            .text(name);
        let row = B::Db::prepare(&select)
            .fetch_optional(self.writer())
            .await?;
        Ok(row.map(|r| Column::<String>::at(&r, 0)).transpose()?)
    }

    async fn link_oidc(&self, id: &str, issuer: &str, subject: &str) -> StoreResult<bool> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("UPDATE auth_user SET oidc_issuer = ")
            .text(issuer)
            .push(", oidc_subject = ")
            .text(subject)
            .push(" WHERE id = ")
            .text(id)
            .push(" RETURNING id");
        let row = B::Db::prepare(&sql)
            .fetch_optional(self.writer())
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "another user is linked to subject '{subject}' of {issuer}"
                )),
                other => other,
            })?;
        Ok(row.is_some())
    }

    async fn user_by_oidc(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserRecord>> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT ")
            .push(USER_COLUMNS)
            .push(" FROM auth_user WHERE oidc_issuer = ")
            .text(issuer)
            .push(" AND oidc_subject = ")
            .text(subject);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row.map(|r| user_at(&r)).transpose()?)
    }

    async fn set_app_secret(&self, client_id: &str, hash: &str) -> StoreResult<()> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("UPDATE auth_app SET secret = ")
            .text(hash)
            .push(" WHERE client_id = ")
            .text(client_id);
        B::Db::prepare(&sql).execute(self.writer()).await?;
        Ok(())
    }

    async fn app_secret(&self, client_id: &str) -> StoreResult<Option<String>> {
        let mut sql = Sql::new(B::DIALECT);
        sql.push("SELECT a.secret FROM auth_app a JOIN auth_client c ON c.id = a.client_id WHERE a.client_id = ")
            .text(client_id);
        let row = B::Db::prepare(&sql).fetch_optional(self.writer()).await?;
        Ok(row
            .map(|r| Column::<Option<String>>::at(&r, 0))
            .transpose()?
            .flatten())
    }
}
