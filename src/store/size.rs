//! How much storage a database uses, for the benchmark's bytes per request: on SQLite the
//! pages in use (not free) of the database file and of its audit log file (`{path}-audit`),
//! as a reader sees them (the write-ahead log included); on PostgreSQL the size of the
//! database's files (`pg_database_size`, the WAL not included).

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row};

use super::{StoreError, StoreResult};

/// The bytes the database named by `url` uses (see the module documentation).
pub async fn used_bytes(url: &str) -> StoreResult<u64> {
    if url.starts_with("sqlite:") {
        let mut total = 0;
        for file in [url.to_owned(), super::audit::sqlite_audit_url(url)] {
            total += sqlite_used_bytes(&file).await?;
        }
        Ok(total)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let row = sqlx::query("SELECT pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await?;
        let bytes: i64 = row.try_get(0)?;
        let _ = conn.close().await;
        Ok(bytes as u64)
    }
}

/// The pages in use of one SQLite file (0 when there is no such file).
async fn sqlite_used_bytes(url: &str) -> StoreResult<u64> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid SQLite URL: {e}")))?
        .read_only(true);
    if !std::path::Path::new(options.get_filename()).exists() {
        return Ok(0);
    }
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let mut pragma = async |name: &str| -> StoreResult<i64> {
        let row = sqlx::query(&format!("PRAGMA {name}"))
            .fetch_one(&mut conn)
            .await?;
        Ok(row.try_get(0)?)
    };
    let pages = pragma("page_count").await?;
    let free = pragma("freelist_count").await?;
    let size = pragma("page_size").await?;
    let _ = conn.close().await;
    Ok(((pages - free) * size) as u64)
}
