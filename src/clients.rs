//! `signaal client add|list|remove`: the client registry, edited in the database directly (so
//! it works while the server runs; a running open server starts requiring tokens within a
//! second of the first registration).

use clap::Subcommand;

use signaal::auth::{jwks, scope};
use signaal::fhir::id;
use signaal::store::auth::ClientRecord;

use crate::database_option::Database;

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
            required_unless_present_any = ["jwks_url", "public", "secret_file"]
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
        /// An app that people launch (SMART App Launch): a redirect URI registered for it,
        /// matched exactly (repeat for several). Its scopes are user/… and patient/… ones
        /// (plus openid, fhirUser, launch, launch/patient, offline_access).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public app (a browser or phone app that cannot keep a key): no keys; PKCE alone
        /// binds its codes. A confidential app authenticates with its JWKS (private_key_jwt).
        #[arg(long, conflicts_with_all = ["jwks", "jwks_url"], requires = "redirect_uris")]
        public: bool,
        /// A confidential app that authenticates with a client secret (client_secret_basic or
        /// client_secret_post): a file whose first line is the secret (at least 32 characters,
        /// e.g. `openssl rand -base64 32`). Stored as its Argon2id hash.
        #[arg(
            long,
            conflicts_with_all = ["jwks", "jwks_url", "public"],
            requires = "redirect_uris"
        )]
        secret_file: Option<String>,
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
            redirect_uris,
            public: _,
            secret_file,
        } => {
            let app = !redirect_uris.is_empty();
            let record = record(id, name, jwks, jwks_url, scope, patient, app)?;
            let redirects = redirect_uris_of(&redirect_uris)?;
            let secret = secret_file.as_deref().map(secret_hash).transpose()?;
            let clients = database.open().await?;
            clients
                .add_client(&record)
                .await
                .map_err(|e| e.to_string())?;
            if app {
                clients
                    .set_app(&record.id, &redirects)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Some(hash) = &secret {
                clients
                    .set_app_secret(&record.id, hash)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            println!("registered client {}", record.id);
            Ok(())
        }
        ClientCommand::List { database } => {
            let clients = database.open().await?;
            for c in clients.clients().await.map_err(|e| e.to_string())? {
                let secret = clients
                    .app_secret(&c.id)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some();
                let keys = match (&c.jwks, &c.jwks_url) {
                    (_, Some(url)) => url.clone(),
                    (Some(_), None) => "JWKS stored".into(),
                    (None, None) if secret => "client secret".into(),
                    (None, None) => "public".into(),
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
            let clients = database.open().await?;
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

/// Redirect URIs are absolute `https://` URLs, or `http://` ones on a loopback host (a native
/// app's, RFC 8252 7.3), without a fragment (RFC 6749 3.1.2).
fn redirect_uris_of(uris: &[String]) -> Result<String, String> {
    for uri in uris {
        let parsed = url::Url::parse(uri).map_err(|e| format!("--redirect-uri {uri}: {e}"))?;
        let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let scheme_ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
        if !scheme_ok || parsed.fragment().is_some() || uri.contains(char::is_whitespace) {
            return Err(format!(
                "--redirect-uri {uri}: an https:// URL (http:// on a loopback host) without a \
                 fragment is needed"
            ));
        }
    }
    Ok(uris.join(" "))
}

/// The shortest client secret accepted.
const MIN_SECRET: usize = 32;

/// The Argon2id hash of the secret on the first line of `path`.
fn secret_hash(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let secret = text.lines().next().unwrap_or("");
    if secret.chars().count() < MIN_SECRET {
        return Err(format!(
            "{path}: a client secret needs at least {MIN_SECRET} characters (openssl rand -base64 32)"
        ));
    }
    signaal::auth::password::hash(secret)
}

/// Checks a registration before it is stored.
fn record(
    id: String,
    name: String,
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    scope_text: String,
    patient: Option<String>,
    app: bool,
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
    if app {
        if patient.is_some() {
            return Err("an app's patient comes from its launch, not --patient".into());
        }
        if scopes.is_empty() || scopes.iter().any(|s| s.context == scope::Context::System) {
            return Err("an app (--redirect-uri) gets user/… and patient/… scopes only".into());
        }
    }
    let context = if patient.is_some() {
        scope::Context::Patient
    } else {
        scope::Context::System
    };
    if !app && (scopes.is_empty() || scopes.iter().any(|s| s.context != context)) {
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
