//! Running the server: open the store, bind, serve until SIGTERM/SIGINT, drain, close.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::App;
use crate::auth::Auth;
use crate::fhir::validate;
use crate::store;

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
    /// When requests need an access token, and which external issuer is trusted.
    pub auth: crate::auth::AuthSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthStartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the store and binds the listener; the server is ready when this returns.
pub async fn start(settings: &Settings) -> Result<(TcpListener, Arc<App>), StartError> {
    let (store, clients) = store::open_with_auth(&settings.database_url).await?;
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
    let auth = Auth::start(&settings.auth, clients, store.clone(), local, &base_url).await?;
    let app = Arc::new(App {
        store,
        auth,
        base_url,
        body_limit: settings.body_limit,
        max_bundle_entries: settings.max_bundle_entries,
    });
    // Compile the validation schemas now rather than in the first requests, but only while the
    // server lives: the runtime waits for blocking tasks when it shuts down, so a warm-up still
    // running would hold up a SIGTERM that comes early (by 20 s in a debug build).
    let alive = Arc::downgrade(&app);
    tokio::task::spawn_blocking(move || validate::warm_up(|| alive.strong_count() > 0));
    Ok((listener, app))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish and closes the store.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::http::router(app.clone());
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    app.auth.audit.close().await;
    app.store.close().await;
    result
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
