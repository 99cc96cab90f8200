//! The `signaal` command: `serve` runs the FHIR server, `client` registers the clients allowed
//! to ask it for access tokens, `score` re-scores patients, `import` loads NDJSON files into a
//! database, `bench` measures a running server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use signaal::auth::AuthSettings;
use signaal::fhir::datetime::format_instant;
use signaal::http::connection;
use signaal::search::budget;
use signaal::server::{self, Settings};

mod clients;
mod database_option;
mod import_cli;
mod users;
use clients::ClientCommand;
use users::UserCommand;

/// mimalloc rather than glibc's malloc: a large body is parsed into hundreds of MB of small
/// allocations spread over per-thread arenas, which glibc keeps after they are freed (644 MB
/// still resident after one 13 MB invalid body, against 216 MB before it:
/// `scripts/bench_memory.sh`); mimalloc returns freed pages to the OS (230 MB after it). Its C
/// source builds with the C compiler that `ring` needs already.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Makes mimalloc return freed pages to the OS at once rather than after 10 ms of further
/// allocation on the same thread (its default): an idle worker thread would otherwise keep the
/// memory of the last large request. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn return_freed_memory_at_once() {
    // mimalloc.h (v2 and v3): `mi_option_purge_delay`, "use 0 for immediate purging".
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores an option value; mimalloc says it is not thread safe,
        // and this runs first in `main`, before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

#[derive(Parser)]
#[command(name = "signaal", version, about = "Signaal, a FHIR R4 (4.0.1) server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Risk scoring options of `serve`.
#[derive(clap::Args)]
struct ScoringOptions {
    /// The share of patients flagged as high utilisers at each full re-score (0.01: top 1%).
    #[arg(long, env = "SIGNAAL_HIGH_UTILISER_FRACTION", default_value_t = 0.01)]
    high_utiliser_fraction: f64,
    /// The time of day (UTC, HH:MM) of the daily full re-score, or `off`.
    #[arg(long, env = "SIGNAAL_DAILY_SCORE_AT", default_value = "02:00")]
    daily_score_at: String,
    /// The most patients a practitioner's `$worklist` returns.
    #[arg(long, env = "SIGNAAL_CASELOAD", default_value_t = 120)]
    caseload: usize,
    /// Do not run the scoring worker (scores change only through `signaal score`).
    #[arg(long, env = "SIGNAAL_NO_SCORING")]
    no_scoring: bool,
    /// Seconds between the scoring worker's fallback looks at the queue: commits wake it at
    /// once (on PostgreSQL also those of other servers), so this bounds only retries and
    /// measurements stamped in the future.
    #[arg(long, env = "SIGNAAL_SCORING_POLL", default_value_t = 5)]
    scoring_poll: u64,
    /// MiB of JSON text of stored versions the scorer keeps parsed for its next scorings of a
    /// patient (a parsed value takes several times its text in memory); 0: none.
    #[arg(long, env = "SIGNAAL_SCORING_CACHE_MB", default_value_t = signaal::scoring::parsed::DEFAULT_BUDGET >> 20)]
    scoring_cache_mb: usize,
}

/// Bulk Data export options of `serve`.
#[derive(clap::Args)]
struct ExportOptions {
    /// Where export files are written (default: `signaal-export` next to a SQLite database,
    /// in the system's temporary directory for PostgreSQL).
    #[arg(long, env = "SIGNAAL_EXPORT_DIR")]
    export_dir: Option<std::path::PathBuf>,
    /// The size in bytes past which an export continues a type in a new file.
    #[arg(long, env = "SIGNAAL_EXPORT_FILE_SIZE", default_value_t = signaal::jobs::DEFAULT_EXPORT_FILE_SIZE)]
    export_file_size: u64,
    /// How long, in seconds, a finished export's manifest and files are kept.
    #[arg(long, env = "SIGNAAL_EXPORT_EXPIRY", default_value_t = signaal::jobs::DEFAULT_EXPORT_EXPIRY)]
    export_expiry: u64,
    /// How many exports may run at once (one more is refused with 429).
    #[arg(long, env = "SIGNAAL_MAX_EXPORTS", default_value_t = signaal::jobs::DEFAULT_MAX_EXPORTS)]
    max_exports: usize,
}

impl ExportOptions {
    fn settings(self) -> signaal::jobs::Settings {
        signaal::jobs::Settings {
            export_dir: self.export_dir,
            export_file_size: self.export_file_size.max(1),
            export_expiry: std::time::Duration::from_secs(self.export_expiry),
            max_exports: self.max_exports.max(1),
        }
    }
}

impl ScoringOptions {
    fn config(&self) -> Result<signaal::scoring::run::Config, String> {
        let daily_at = match self.daily_score_at.as_str() {
            "off" => None,
            at => Some(chrono::NaiveTime::parse_from_str(at, "%H:%M").map_err(|_| {
                format!("--daily-score-at '{at}' is not a time of day HH:MM (UTC) or 'off'")
            })?),
        };
        if !(0.0..=1.0).contains(&self.high_utiliser_fraction) {
            return Err("--high-utiliser-fraction must be between 0 and 1".into());
        }
        Ok(signaal::scoring::run::Config {
            high_utiliser_fraction: self.high_utiliser_fraction,
            daily_at,
            caseload: self.caseload,
            worker: !self.no_scoring,
            poll: std::time::Duration::from_secs(self.scoring_poll.max(1)),
            parsed_budget: self.scoring_cache_mb.saturating_mul(1 << 20),
        })
    }
}

/// Connection options of `serve` (seconds, but for the connection limit).
#[derive(clap::Args)]
struct ConnectionOptions {
    /// Seconds a request's head (request line and headers) may take to arrive.
    #[arg(long, env = "SIGNAAL_HEADER_READ_TIMEOUT", default_value_t = connection::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
    header_read_timeout: f64,
    /// Seconds a request's body may take to arrive (then 408).
    #[arg(long, env = "SIGNAAL_BODY_READ_TIMEOUT", default_value_t = connection::DEFAULT_BODY_READ_TIMEOUT.as_secs_f64())]
    body_read_timeout: f64,
    /// Seconds a connection may wait idle for its next request.
    #[arg(long, env = "SIGNAAL_KEEP_ALIVE_TIMEOUT", default_value_t = connection::DEFAULT_KEEP_ALIVE_TIMEOUT.as_secs_f64())]
    keep_alive_timeout: f64,
    /// The most connections open at once (more wait to be accepted).
    #[arg(long, env = "SIGNAAL_MAX_CONNECTIONS", default_value_t = connection::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds requests in progress may take to finish after SIGTERM before the server exits
    /// anyway (unfinished writes roll back).
    #[arg(long, env = "SIGNAAL_SHUTDOWN_TIMEOUT", default_value_t = connection::DEFAULT_SHUTDOWN_TIMEOUT.as_secs_f64())]
    shutdown_timeout: f64,
}

impl ConnectionOptions {
    fn limits(&self) -> Result<connection::Limits, String> {
        Ok(connection::Limits {
            header_read_timeout: seconds("--header-read-timeout", self.header_read_timeout)?,
            body_read_timeout: seconds("--body-read-timeout", self.body_read_timeout)?,
            keep_alive_timeout: seconds("--keep-alive-timeout", self.keep_alive_timeout)?,
            max_connections: self.max_connections.max(1),
            shutdown_timeout: seconds("--shutdown-timeout", self.shutdown_timeout)?,
        })
    }
}

/// A setting in seconds as a duration: positive and finite.
fn seconds(name: &str, value: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{name} must be a positive number of seconds"))
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
        /// Serve GET /metrics (Prometheus text format) on this address and port, apart from the
        /// FHIR API; off when not given. It has no authorization: keep it on loopback or an
        /// operations network (e.g. 127.0.0.1:9464).
        #[arg(long, env = "SIGNAAL_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// The largest request body accepted, in bytes.
        #[arg(long, env = "SIGNAAL_BODY_LIMIT", default_value_t = signaal::app::DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// The most entries a batch or transaction Bundle may have (more get 413).
        #[arg(long, env = "SIGNAAL_MAX_BUNDLE_ENTRIES", default_value_t = signaal::app::DEFAULT_MAX_BUNDLE_ENTRIES)]
        max_bundle_entries: usize,
        /// The most values one search (or conditional criteria) combines, AND-ed and OR-ed.
        #[arg(long, env = "SIGNAAL_MAX_SEARCH_TERMS", default_value_t = budget::DEFAULT_MAX_TERMS)]
        max_search_terms: usize,
        /// The deepest chain or _has of a search (at most 4).
        #[arg(long, env = "SIGNAAL_MAX_CHAIN_DEPTH", default_value_t = budget::DEFAULT_MAX_CHAIN_DEPTH)]
        max_chain_depth: usize,
        /// The most _include and _revinclude parameters of one search.
        #[arg(long, env = "SIGNAAL_MAX_INCLUDES", default_value_t = budget::DEFAULT_MAX_INCLUDES)]
        max_includes: usize,
        /// The most rounds _include:iterate / _revinclude:iterate follow.
        #[arg(long, env = "SIGNAAL_MAX_INCLUDE_ITERATIONS", default_value_t = budget::DEFAULT_MAX_ITERATIONS)]
        max_include_iterations: usize,
        /// Seconds the searches of one request may run in all (conditional interactions'
        /// searches, includes, $everything included); a search past it is stopped (400).
        #[arg(long, env = "SIGNAAL_SEARCH_TIMEOUT", default_value_t = budget::DEFAULT_TIMEOUT.as_secs_f64())]
        search_timeout: f64,
        #[command(flatten)]
        connections: ConnectionOptions,
        #[command(flatten)]
        scoring: ScoringOptions,
        #[command(flatten)]
        export: ExportOptions,
        /// `auto`: tokens are required once a client is registered or an issuer is trusted (a
        /// loopback server without either runs open); `required`: always.
        #[arg(long, env = "SIGNAAL_AUTH", default_value = "auto", value_parser = ["auto", "required"])]
        auth: String,
        /// An external authorization server whose access tokens are honoured (their `iss`).
        #[arg(long, env = "SIGNAAL_TRUSTED_ISSUER", requires = "trusted_jwks")]
        trusted_issuer: Option<String>,
        /// The trusted issuer's JWKS: an http:// or https:// URL, or a file.
        #[arg(long, env = "SIGNAAL_TRUSTED_JWKS", requires = "trusted_issuer")]
        trusted_jwks: Option<String>,
        /// CA certificates (PEM file) trusted for https:// JWKS URLs besides the public web
        /// roots (keys served under an organisation's own CA).
        #[arg(long, env = "SIGNAAL_JWKS_CA")]
        jwks_ca: Option<String>,
        /// Run without authorization (no client registered, no trusted issuer) although the
        /// public base URL (--base-url) is not a loopback address. Without it such a server
        /// refuses to start: a reverse proxy would publish an API that asks for no token.
        #[arg(long, env = "SIGNAAL_ALLOW_OPEN_ON_PUBLIC_BASE")]
        allow_open_on_public_base: bool,
        /// An OpenID Connect provider (a hospital's identity provider) people may log in
        /// through: its issuer URL; its metadata is read from
        /// {issuer}/.well-known/openid-configuration. None by default.
        #[arg(long, env = "SIGNAAL_OIDC_ISSUER", requires = "oidc_client_id")]
        oidc_issuer: Option<String>,
        /// Signaal's client id at the OpenID Connect provider.
        #[arg(long, env = "SIGNAAL_OIDC_CLIENT_ID", requires = "oidc_issuer")]
        oidc_client_id: Option<String>,
        /// A file whose first line is Signaal's client secret at the provider
        /// (client_secret_basic); without it Signaal is a public client there (PKCE).
        #[arg(
            long,
            env = "SIGNAAL_OIDC_CLIENT_SECRET_FILE",
            requires = "oidc_issuer"
        )]
        oidc_client_secret_file: Option<String>,
        /// The provider's name on the log-in page ("Log in with NAME"); default: the
        /// issuer's host name.
        #[arg(long, env = "SIGNAAL_OIDC_NAME", requires = "oidc_issuer")]
        oidc_name: Option<String>,
        /// Remove audit log entries older than DAYS (checked every hour); kept for ever if
        /// not given.
        #[arg(long, env = "SIGNAAL_AUDIT_RETENTION", value_name = "DAYS")]
        audit_retention: Option<u32>,
        /// Also append every audit log entry, as one AuditEvent per line (NDJSON), to FILE
        /// for a SIEM's collector to ship.
        #[arg(long, env = "SIGNAAL_AUDIT_FORWARD", value_name = "FILE")]
        audit_forward: Option<std::path::PathBuf>,
        /// Log one compact line per request at info level (method, path, status, time,
        /// request id); without it these lines are at debug level.
        #[arg(long, env = "SIGNAAL_ACCESS_LOG")]
        access_log: bool,
        /// Let rest-hook subscriptions notify `http://` endpoints on any host (without it only
        /// `https://`, or `http://` on a loopback address).
        #[arg(long, env = "SIGNAAL_SUBSCRIPTION_ALLOW_HTTP")]
        subscription_allow_http: bool,
        /// A FHIR package (`.tgz`, NPM format) whose StructureDefinitions, ValueSets and
        /// CodeSystems the validator loads at start; repeatable. Its dependencies must be
        /// loaded too (the core R4 package is built in).
        #[arg(long = "package", value_name = "FILE")]
        packages: Vec<std::path::PathBuf>,
        /// A folder whose `.tgz` FHIR packages are all loaded (like --package).
        #[arg(long, env = "SIGNAAL_PACKAGE_DIR", value_name = "DIR")]
        package_dir: Option<std::path::PathBuf>,
        /// A profile claimed in meta.profile (or required) that the server does not know:
        /// `warning` (stored, the profile not checked) or `error` (refused).
        #[arg(long, env = "SIGNAAL_UNKNOWN_PROFILE", default_value = "warning", value_parser = ["warning", "error"])]
        unknown_profile: String,
        /// `Type=url`: every resource of the type must conform to the profile (repeatable),
        /// e.g. Observation=http://hl7.org/fhir/StructureDefinition/vitalsigns.
        #[arg(long = "require-profile", value_name = "TYPE=URL")]
        require_profile: Vec<String>,
    },
    /// Re-score patients now (progress on stderr): every patient with --all.
    Score {
        /// sqlite://PATH or postgres://USER@HOST:PORT/DB.
        #[arg(
            long,
            env = "SIGNAAL_DATABASE_URL",
            default_value = "sqlite://signaal.db"
        )]
        database: String,
        /// Re-score every patient (and rank the population for high utilisers).
        #[arg(long)]
        all: bool,
        /// List the queued patients whose scoring failed (waiting for a retry, or parked).
        #[arg(long, conflicts_with = "all")]
        failed: bool,
        /// The share of patients flagged as high utilisers.
        #[arg(long, env = "SIGNAAL_HIGH_UTILISER_FRACTION", default_value_t = 0.01)]
        high_utiliser_fraction: f64,
    },
    /// Register, list and remove the clients allowed to get access tokens (SMART Backend
    /// Services). Works while the server runs.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Add, list and remove the people who log in (SMART App Launch: practitioners and
    /// patients), and set their passwords. Works while the server runs.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Import NDJSON files (one resource a line; a directory: its *.ndjson files) into a
    /// database, each line validated and written as a PUT with its own id. Exits non-zero when
    /// any line failed.
    Import(import_cli::ImportOptions),
    /// Measure a running server over loopback (create, read, update), and optionally the raw
    /// insert rate of a store.
    Bench(signaal::bench::Options),
}

fn main() -> ExitCode {
    // Parsing the command line starts no thread: the allocator option is still set first.
    let cli = Cli::parse();
    // `signaal import` is one load in a process of its own: each batch reuses the memory of the
    // one before, where returning it at once made every batch fault in and zero fresh pages
    // (9% of the import's CPU).
    if !matches!(cli.command, Command::Import(_)) {
        return_freed_memory_at_once();
    }
    let filter = EnvFilter::try_from_env("SIGNAAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // SIGNAAL_LOG_FORMAT=json: one JSON object a line, with the request span (its id) in each.
    match std::env::var("SIGNAAL_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().with_current_span(true).init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            tracing::warn!("SIGNAAL_LOG_FORMAT={other} is not text or json: logging text");
        }
    }
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
                metrics_listen,
                body_limit,
                max_bundle_entries,
                max_search_terms,
                max_chain_depth,
                max_includes,
                max_include_iterations,
                search_timeout,
                connections,
                scoring,
                export,
                auth,
                trusted_issuer,
                trusted_jwks,
                jwks_ca,
                allow_open_on_public_base,
                oidc_issuer,
                oidc_client_id,
                oidc_client_secret_file,
                oidc_name,
                audit_retention,
                audit_forward,
                access_log,
                subscription_allow_http,
                packages,
                package_dir,
                unknown_profile,
                require_profile,
            } => {
                let mut required = Vec::new();
                for policy in &require_profile {
                    match policy.split_once('=') {
                        Some((t, url)) if !t.is_empty() && !url.is_empty() => {
                            required.push((t.to_owned(), url.to_owned()))
                        }
                        _ => {
                            eprintln!("signaal: --require-profile {policy}: expected Type=url");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                let scoring = match scoring.config() {
                    Ok(config) => config,
                    Err(e) => {
                        eprintln!("signaal: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let (search_timeout, connections) = match (
                    seconds("--search-timeout", search_timeout),
                    connections.limits(),
                ) {
                    (Ok(timeout), Ok(limits)) => (timeout, limits),
                    (Err(e), _) | (_, Err(e)) => {
                        eprintln!("signaal: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let oidc = match oidc_settings(
                    oidc_issuer,
                    oidc_client_id,
                    oidc_client_secret_file,
                    oidc_name,
                ) {
                    Ok(oidc) => oidc,
                    Err(e) => {
                        eprintln!("signaal: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let settings = Settings {
                    listen,
                    database_url: database,
                    base_url,
                    body_limit,
                    max_bundle_entries,
                    search_budget: budget::Budget {
                        max_terms: max_search_terms,
                        max_chain_depth,
                        max_includes,
                        max_iterations: max_include_iterations,
                        timeout: search_timeout,
                    },
                    connections,
                    scoring,
                    auth: AuthSettings {
                        required: auth == "required",
                        trusted_issuer,
                        trusted_jwks,
                        jwks_ca,
                        allow_open_on_public_base,
                        oidc,
                    },
                    audit: signaal::auth::audit::AuditSettings {
                        retention_days: audit_retention,
                        forward: audit_forward,
                    },
                    access_log,
                    subscriptions: signaal::subscription::Settings {
                        allow_http: subscription_allow_http,
                        ..Default::default()
                    },
                    metrics_listen,
                    jobs: export.settings(),
                    validation: signaal::validation::Settings {
                        packages,
                        package_dir,
                        unknown_profile: if unknown_profile == "error" {
                            signaal::validation::UnknownProfile::Error
                        } else {
                            signaal::validation::UnknownProfile::Warning
                        },
                        required,
                    },
                };
                serve(settings).await
            }
            Command::Score {
                database,
                all,
                failed,
                high_utiliser_fraction,
            } => {
                if failed {
                    score_failures(&database).await
                } else {
                    score(&database, all, high_utiliser_fraction).await
                }
            }
            Command::User { command } => match users::run(command).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("signaal user: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Client { command } => match clients::run(command).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("signaal client: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Import(options) => import_cli::run(options).await,
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

/// `signaal score --all`: re-scores every patient with a progress bar on stderr.
async fn score(database: &str, all: bool, high_utiliser_fraction: f64) -> ExitCode {
    use std::io::Write;
    if !all {
        eprintln!(
            "signaal score: say --all to re-score every patient, or --failed to list failures"
        );
        return ExitCode::FAILURE;
    }
    let store = match signaal::store::open(database).await {
        Ok(store) => store,
        Err(e) => {
            tracing::error!("cannot open the database: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scoring = signaal::scoring::run::Scoring::new(signaal::scoring::run::Config {
        high_utiliser_fraction,
        worker: false,
        ..Default::default()
    });
    // What is written is indexed with the search parameters the database holds.
    let registry = match signaal::interaction::search_parameters::load(&*store).await {
        Ok(registry) => std::sync::Arc::new(registry),
        Err(e) => {
            tracing::error!("cannot read the search parameters: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let result = signaal::scoring::run::score_all(&*store, registry, &scoring, |done, total| {
        let width = 40;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        eprint!(
            "\rscoring [{}{}] {done}/{total}",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let _ = std::io::stderr().flush();
    })
    .await;
    eprintln!();
    store.close().await;
    match result {
        Ok(run) => {
            let n = run.total();
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "scored {n} patients in {seconds:.1} s ({:.1} patients/s)",
                n as f64 / seconds.max(1e-9)
            );
            if run.failed > 0 {
                eprintln!(
                    "{} failed and are queued for the server's worker to retry (see --failed)",
                    run.failed
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signaal score: {}", e.into_outcome());
            ExitCode::FAILURE
        }
    }
}

/// `signaal score --failed`: the queued patients whose scoring failed, one a line on stdout.
async fn score_failures(database: &str) -> ExitCode {
    let store = match signaal::store::open(database).await {
        Ok(store) => store,
        Err(e) => {
            tracing::error!("cannot open the database: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failures = store.scoring_failures().await;
    store.close().await;
    match failures {
        Ok(failures) => {
            if failures.is_empty() {
                eprintln!("no patient's scoring is failing");
            }
            for f in failures {
                let next = match f.next_attempt_at {
                    Some(at) => format!("next attempt {}", format_instant(at)),
                    None => "parked until the patient's data changes".to_owned(),
                };
                println!(
                    "Patient/{}\t{} failed attempt(s)\t{next}\t{}",
                    f.patient,
                    f.attempts,
                    f.last_error.as_deref().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signaal score: {e}");
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

/// The OpenID Connect provider of `--oidc-issuer` and its client.
fn oidc_settings(
    issuer: Option<String>,
    client_id: Option<String>,
    secret_file: Option<String>,
    name: Option<String>,
) -> Result<Option<signaal::auth::oidc::Settings>, String> {
    let (Some(issuer), Some(client_id)) = (issuer, client_id) else {
        return Ok(None);
    };
    let client_secret = match secret_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {path}: {e}"))?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        ),
        None => None,
    };
    let name = name.unwrap_or_else(|| {
        url::Url::parse(&issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| issuer.clone())
    });
    let settings = signaal::auth::oidc::Settings {
        issuer,
        client_id,
        client_secret,
        name,
    };
    settings.check()?;
    Ok(Some(settings))
}
