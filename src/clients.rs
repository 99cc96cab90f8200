//! `signaal client add|list|remove`: the client registry, edited in the database directly (so
//! it works while the server runs; a running open server starts requiring tokens within a
//! second of the first registration).

use clap::{Args, Subcommand};

use signaal::auth::{jwks, scope};
use signaal::fhir::id;
use signaal::store::auth::ClientRecord;

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

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client.
    Add {
        #[command(flatten)]
        database: Database,
        /// The client id: the `iss` and `sub` of its assertions.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A file with the client's public keys (JWKS); stored in the database.
        #[arg(
            long,
            conflicts_with = "jwks_url",
            required_unless_present = "jwks_url"
        )]
        jwks: Option<String>,
        /// Where the client publishes its JWKS (http:// or https://); fetched and cached by kid.
        #[arg(long)]
        jwks_url: Option<String>,
        /// The scopes it may be granted, space-separated (`system/Observation.rs`, or
        /// `patient/…` with --patient).
        #[arg(long)]
        scope: String,
        /// Bind its tokens to this patient (`Patient/ID`): they see only its compartment.
        #[arg(long)]
        patient: Option<String>,
    },
    /// List the registered clients.
    List {
        #[command(flatten)]
        database: Database,
    },
    /// Remove a client: it gets no new tokens.
    Remove {
        #[command(flatten)]
        database: Database,
        id: String,
    },
}

pub async fn run(command: ClientCommand) -> Result<(), String> {
    match command {
        ClientCommand::Add {
            database,
            id,
            name,
            jwks,
            jwks_url,
            scope,
            patient,
        } => {
            let record = record(id, name, jwks, jwks_url, scope, patient)?;
            let (_, clients) = open(&database).await?;
            clients
                .add_client(&record)
                .await
                .map_err(|e| e.to_string())?;
            println!("registered client {}", record.id);
            Ok(())
        }
        ClientCommand::List { database } => {
            let (_, clients) = open(&database).await?;
            for c in clients.clients().await.map_err(|e| e.to_string())? {
                let keys = match (&c.jwks, &c.jwks_url) {
                    (_, Some(url)) => url.clone(),
                    _ => "JWKS stored".into(),
                };
                let patient = c
                    .patient
                    .map(|p| format!("Patient/{p}"))
                    .unwrap_or_else(|| "-".into());
                println!("{}\t{}\t{}\t{}\t{}", c.id, c.name, patient, c.scope, keys);
            }
            Ok(())
        }
        ClientCommand::Remove { database, id } => {
            let (_, clients) = open(&database).await?;
            if clients
                .remove_client(&id)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("removed client {id}");
                Ok(())
            } else {
                Err(format!("no client '{id}' is registered"))
            }
        }
    }
}

async fn open(
    database: &Database,
) -> Result<
    (
        std::sync::Arc<dyn signaal::store::Store>,
        std::sync::Arc<dyn signaal::store::auth::AuthStore>,
    ),
    String,
> {
    signaal::store::open_with_auth(&database.database)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))
}

/// Checks a registration before it is stored.
fn record(
    id: String,
    name: String,
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    scope_text: String,
    patient: Option<String>,
) -> Result<ClientRecord, String> {
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("--id must be non-empty without spaces".into());
    }
    let patient = match patient {
        None => None,
        Some(p) => {
            let pid = p.strip_prefix("Patient/").unwrap_or(&p).to_owned();
            if !id::is_valid(&pid) {
                return Err(format!("--patient '{p}' is not Patient/ID"));
            }
            Some(pid)
        }
    };
    let scopes = scope::parse_all(&scope_text)?;
    let context = if patient.is_some() {
        scope::Context::Patient
    } else {
        scope::Context::System
    };
    if scopes.is_empty() || scopes.iter().any(|s| s.context != context) {
        return Err(if patient.is_some() {
            "a client bound to a patient gets patient/… scopes only".into()
        } else {
            "--scope needs system/… resource scopes (patient/… ones go with --patient)".into()
        });
    }
    let jwks = match jwks_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let set = jwks::parse(&text)?;
            if set.keys.is_empty() || set.keys.iter().any(|k| k.common.key_id.is_none()) {
                return Err(format!("{path}: every key needs a kid"));
            }
            Some(text)
        }
        None => None,
    };
    if let Some(url) = &jwks_url {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!(
                "--jwks-url {url}: an http:// or https:// URL is needed"
            ));
        }
    }
    Ok(ClientRecord {
        id,
        name,
        jwks,
        jwks_url,
        scope: scope_text,
        patient,
        created: signaal::fhir::datetime::now_ms(),
    })
}
