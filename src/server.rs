//! Running the server: open the store, bind, serve until SIGTERM/SIGINT, drain, close.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::App;
use crate::auth::Auth;
use crate::fhir::validate;
use crate::interaction::{search_parameters, stored_definitions};
use crate::jobs::Jobs;
use crate::search::definitions::ServerRegistry;
use crate::store;
use crate::write::Indexing;

/// What `signaal serve` needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Public FHIR base URL; defaults to `http://{listen}/fhir`.
    pub base_url: Option<String>,
    pub body_limit: usize,
    /// The most entries a batch or transaction Bundle may have.
    pub max_bundle_entries: usize,
    /// The complexity budget of every search and conditional interaction.
    pub search_budget: crate::search::budget::Budget,
    /// Risk scoring (worker, daily re-score, high-utiliser share, worklist caseload).
    pub scoring: crate::scoring::run::Config,
    /// When requests need an access token, and which external issuer is trusted.
    pub auth: crate::auth::AuthSettings,
    /// Audit log retention and forwarding.
    pub audit: crate::auth::audit::AuditSettings,
    /// `--access-log`: one compact line per request at info level (otherwise at debug).
    pub access_log: bool,
    /// Topic-based subscriptions (worker, `--subscription-allow-http`).
    pub subscriptions: crate::subscription::Settings,
    /// Connection timeouts and limits, and the shutdown deadline.
    pub connections: crate::http::connection::Limits,
    /// Where `/metrics` is served (Prometheus text format), if anywhere: never on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Jobs: where exports are written, file size, expiry, how many run at once.
    pub jobs: crate::jobs::Settings,
    /// FHIR packages, the unknown-profile policy and the profiles required per type.
    pub validation: crate::validation::Settings,
}

impl Settings {
    /// The defaults of `signaal serve` for everything but where to listen and which database
    /// (for tests and tools that start a server in-process).
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        Settings {
            listen,
            database_url: database_url.into(),
            base_url: None,
            body_limit: crate::app::DEFAULT_BODY_LIMIT,
            max_bundle_entries: crate::app::DEFAULT_MAX_BUNDLE_ENTRIES,
            search_budget: Default::default(),
            scoring: Default::default(),
            auth: Default::default(),
            audit: Default::default(),
            access_log: false,
            subscriptions: Default::default(),
            connections: Default::default(),
            metrics_listen: None,
            jobs: Default::default(),
            validation: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthStartError),
    #[error("{0}")]
    Validation(#[from] crate::validation::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the store and binds the listener; the server is ready when this returns.
pub async fn start(settings: &Settings) -> Result<(TcpListener, Arc<App>), StartError> {
    // Packages first: a missing dependency stops the start before anything is opened. The
    // policy (`--require-profile`) is checked once the stored definitions are in.
    let validation = Arc::new(crate::validation::Validator::start(
        settings.validation.clone(),
    )?);
    let (store, clients, subscription_store, job_records) =
        store::open_all(&settings.database_url).await?;
    let listen_error = |source| StartError::Listen {
        addr: settings.listen,
        source,
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    let base_url = settings
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}/fhir"))
        .trim_end_matches('/')
        .to_owned();
    let registry = search_parameters::load(store.as_ref())
        .await
        .map_err(|e| StartError::Store(store::StoreError::Database(e.to_string())))?;
    let search_params = Arc::new(ServerRegistry::new(registry));
    // Stored profiles, value sets and code systems next, before the policy names one.
    stored_definitions::apply(store.as_ref(), &validation)
        .await
        .map_err(|e| StartError::Store(store::StoreError::Database(e.to_string())))?;
    validation.check_policy()?;
    crate::interaction::canonical::seed(store.as_ref(), &Indexing::new(search_params.current()))
        .await
        .map_err(|e| StartError::Store(store::StoreError::Database(e.to_string())))?;
    let audit_log = store::audit::open(&settings.database_url).await?;
    let audit = crate::auth::audit::Sink::start(audit_log, &settings.audit);
    let auth = Auth::start(&settings.auth, clients, audit, local, &base_url).await?;
    let jobs = Jobs::open(
        store.clone(),
        job_records,
        settings.jobs.clone(),
        &settings.database_url,
    )
    .await?;
    let app = Arc::new(App {
        indexing: Arc::new(Indexing::new(search_params.current())),
        search_params,
        jobs: Arc::new(jobs),
        store,
        auth,
        access: crate::auth::Access::Unauthenticated,
        access_log: settings.access_log,
        base_url,
        body_limit: settings.body_limit,
        max_bundle_entries: settings.max_bundle_entries,
        search_budget: settings.search_budget,
        scoring: Arc::new(crate::scoring::run::Scoring::new(settings.scoring.clone())),
        subscriptions: Arc::new(crate::subscription::Subscriptions::new(
            subscription_store,
            settings.subscriptions.clone(),
        )),
        connections: settings.connections,
        metrics: Default::default(),
        validation,
        workers: Default::default(),
    });
    if let Some(addr) = settings.metrics_listen {
        crate::http::metrics::listen(&app, addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
    }
    if settings.subscriptions.worker {
        crate::subscription::spawn(&app);
    }
    follow_registry(&app);
    if settings.scoring.worker {
        crate::scoring::worker::spawn(&app);
    }
    // Compile the validation schemas now rather than in the first requests, but only while the
    // server lives: the runtime waits for blocking tasks when it shuts down, so a warm-up still
    // running would hold up a SIGTERM that comes early (by 20 s in a debug build).
    let alive = Arc::downgrade(&app);
    tokio::task::spawn_blocking(move || {
        validate::warm_up(|| alive.strong_count() > 0);
        if alive.strong_count() > 0 {
            crate::validation::warm_up();
        }
    });
    Ok((listener, app))
}

/// How long a stopping server waits for its background workers to end their rounds.
const WORKERS_STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves, then lets in-flight requests finish (for up to the
/// shutdown timeout: then their connections are closed and their transactions roll back), stops
/// the background workers and closes the store.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::http::router(app.clone());
    let result = crate::http::connection::serve(listener, router, app.connections, shutdown).await;
    app.workers.stop(WORKERS_STOP).await;
    app.metrics.stop();
    app.auth.audit.close().await;
    crate::subscription::release(&app).await;
    app.store.close().await;
    result
}

/// Keeps this server's search parameters, subscription topics and stored definitions (decision
/// 0051) up to date with what the
/// other servers on the database write (PostgreSQL `NOTIFY`; `Store::registry_signal`): they
/// are reloaded within milliseconds of such a commit. (Its own writes reload them already; the
/// server running the subscription worker takes topics from the outbox, in order.)
fn follow_registry(app: &Arc<App>) {
    let Some(signal) = app.store.registry_signal() else {
        return;
    };
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
                    if weak.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            }
            let Some(app) = weak.upgrade() else { return };
            if let Err(e) = search_parameters::reload(&app).await {
                tracing::warn!(error = %e, "reloading the search parameters failed");
            }
            if let Err(e) = stored_definitions::reload(&app).await {
                tracing::warn!(error = %e, "reloading the stored definitions failed");
            }
            if !app.subscriptions.leading() {
                if let Err(e) = crate::subscription::outbox::load_topics(&app).await {
                    tracing::warn!(error = %e, "reloading the subscription topics failed");
                }
            }
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
