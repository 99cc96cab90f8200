//! The `signaal` command: `serve` runs the FHIR server, `client` registers the clients allowed
//! to ask it for access tokens, `bench` measures a running one.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use signaal::auth::AuthSettings;
use signaal::server::{self, Settings};

mod clients;
use clients::ClientCommand;

#[derive(Parser)]
#[command(name = "signaal", version, about = "Signaal, a FHIR R4 (4.0.1) server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API at http://LISTEN/fhir.
    Serve {
        /// Address and port to listen on.
        #[arg(long, env = "SIGNAAL_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// sqlite://PATH (created if missing) or postgres://USER@HOST:PORT/DB.
        #[arg(
            long,
            env = "SIGNAAL_DATABASE_URL",
            default_value = "sqlite://signaal.db"
        )]
        database: String,
        /// The public FHIR base URL, when clients reach the server through a proxy.
        #[arg(long, env = "SIGNAAL_BASE_URL")]
        base_url: Option<String>,
        /// The largest request body accepted, in bytes.
        #[arg(long, env = "SIGNAAL_BODY_LIMIT", default_value_t = 16 * 1024 * 1024)]
        body_limit: usize,
        /// The most entries a batch or transaction Bundle may have (more get 413).
        #[arg(long, env = "SIGNAAL_MAX_BUNDLE_ENTRIES", default_value_t = signaal::app::DEFAULT_MAX_BUNDLE_ENTRIES)]
        max_bundle_entries: usize,
        /// `auto`: tokens are required once a client is registered or an issuer is trusted (a
        /// loopback server without either runs open); `required`: always.
        #[arg(long, env = "SIGNAAL_AUTH", default_value = "auto", value_parser = ["auto", "required"])]
        auth: String,
        /// An external authorization server whose access tokens are honoured (their `iss`).
        #[arg(long, env = "SIGNAAL_TRUSTED_ISSUER", requires = "trusted_jwks")]
        trusted_issuer: Option<String>,
        /// The trusted issuer's JWKS: an http:// URL or a file.
        #[arg(long, env = "SIGNAAL_TRUSTED_JWKS", requires = "trusted_issuer")]
        trusted_jwks: Option<String>,
    },
    /// Register, list and remove the clients allowed to get access tokens (SMART Backend
    /// Services). Works while the server runs.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Measure a running server over loopback (create, read, update), and optionally the raw
    /// insert rate of a store.
    Bench(signaal::bench::Options),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SIGNAAL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signaal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve {
                listen,
                database,
                base_url,
                body_limit,
                max_bundle_entries,
                auth,
                trusted_issuer,
                trusted_jwks,
            } => {
                let settings = Settings {
                    listen,
                    database_url: database,
                    base_url,
                    body_limit,
                    max_bundle_entries,
                    auth: AuthSettings {
                        required: auth == "required",
                        trusted_issuer,
                        trusted_jwks,
                    },
                };
                serve(settings).await
            }
            Command::Client { command } => match clients::run(command).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("signaal client: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Bench(options) => signaal::bench::run(options).await,
        }
    })
}

async fn serve(settings: Settings) -> ExitCode {
    let (listener, app) = match server::start(&settings).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(base = app.base_url, database = %redact(&settings.database_url), "Signaal is ready");
    match server::serve(listener, app, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A database URL without its password, for the log.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
