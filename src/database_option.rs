//! The `--database` option of the commands that edit the database directly (`signaal client`,
//! `signaal user`), and opening the registry of clients and users there.

use std::sync::Arc;

use clap::Args;

use signaal::store::auth::AuthStore;

#[derive(Args)]
pub struct Database {
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB (the server's --database).
    #[arg(
        long,
        env = "SIGNAAL_DATABASE_URL",
        default_value = "sqlite://signaal.db"
    )]
    database: String,
}

impl Database {
    /// Opens (and migrates) the database, for its registry of clients and users.
    pub async fn open(&self) -> Result<Arc<dyn AuthStore>, String> {
        signaal::store::open_with_auth(&self.database)
            .await
            .map(|(_, auth)| auth)
            .map_err(|e| format!("cannot open the database: {e}"))
    }
}
