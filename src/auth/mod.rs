//! Authorization: SMART Backend Services clients and tokens, the scopes and patient a request
//! may act for, and the traces every access leaves (Provenance, AuditEvent).
//!
//! A request is authenticated once in the HTTP layer ([`Auth::authenticate`]); everything it
//! then does goes through a [`guard::GuardedStore`] built for its grant (on an open server,
//! [`Grant::open`]: everything allowed, traced as the anonymous agent), so reads, searches
//! (includes, chains, `_has`), history, operations and every Bundle entry meet the same checks
//! in one place: the store calls they make.

pub mod audit;
pub mod discovery;
pub mod guard;
pub mod jwks;
pub mod provenance;
pub mod scope;
pub mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use axum::http::HeaderMap;

use crate::error::FhirError;
use crate::store::auth::AuthStore;
use crate::store::{Store, StoreError};
use scope::{Perm, Scope};

/// How `signaal serve` decides whether requests need a token.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `--auth required`: always, even with no client registered yet.
    pub required: bool,
    /// An external authorization server whose access tokens are honoured (`iss` claim).
    pub trusted_issuer: Option<String>,
    /// Its JWKS: an `http://` URL or a file.
    pub trusted_jwks: Option<String>,
    /// `--jwks-ca`: CA certificates (PEM) trusted for `https://` JWKS URLs besides the public
    /// web roots.
    pub jwks_ca: Option<String>,
}

/// Who acts: the agent a Provenance and an AuditEvent name.
#[derive(Debug, Clone)]
pub enum Agent {
    /// A client with an access token.
    Client {
        id: String,
        /// The client's URI: `meta.source` of what it writes.
        uri: String,
    },
    /// Anyone, on an open server (no access token asked).
    Anonymous,
    /// The server itself: the risk scorer writing its RiskAssessments and Flags.
    Scorer,
}

impl Agent {
    /// The `meta.source` of what the agent writes: a client's URI. Anonymous writes keep what
    /// the client sent; the scorer's outputs carry none (they are compared with what is stored).
    pub fn source(&self) -> Option<&str> {
        match self {
            Agent::Client { uri, .. } => Some(uri),
            Agent::Anonymous | Agent::Scorer => None,
        }
    }

    /// The agent as a FHIR Reference (`Provenance.agent.who`, `AuditEvent.agent.who`).
    pub fn who(&self) -> serde_json::Value {
        match self {
            Agent::Client { id, uri } => serde_json::json!({
                "identifier": {"system": "urn:signaal:client", "value": id},
                "display": uri,
            }),
            Agent::Anonymous => {
                serde_json::json!({"display": "anonymous (open server: no access token required)"})
            }
            Agent::Scorer => serde_json::json!({"display": "Signaal risk scoring (the server)"}),
        }
    }

    /// How error messages name the agent.
    pub fn name(&self) -> String {
        match self {
            Agent::Client { id, .. } => format!("client '{id}'"),
            Agent::Anonymous => "the open server".into(),
            Agent::Scorer => "the risk scorer".into(),
        }
    }
}

/// What a request may do: an access token's client, scopes and the patient it is bound to, or
/// the open server's anonymous everything ([`Grant::open`]).
#[derive(Debug, Clone)]
pub struct Grant {
    pub agent: Agent,
    pub scopes: Vec<Scope>,
    /// Patient-bound tokens see and write only this Patient's compartment.
    pub patient: Option<String>,
}

/// What a set of scopes allows on one type for one permission.
pub enum Allowed<'a> {
    No,
    /// Every resource of the type.
    All,
    /// Only resources passing one of these scopes' granular filters.
    Filtered(Vec<&'a Scope>),
}

/// What anyone may do on an open server: everything, the audit trail included, as the
/// anonymous agent.
static OPEN: LazyLock<Arc<Grant>> = LazyLock::new(|| {
    Arc::new(Grant {
        agent: Agent::Anonymous,
        scopes: scope::parse_all(&format!("system/*.* system/{}.cruds", scope::ADMIN_ONLY))
            .expect("the open server's scopes"),
        patient: None,
    })
});

impl Grant {
    /// The grant of every request to an open server.
    pub fn open() -> Arc<Grant> {
        OPEN.clone()
    }

    /// Whether the grant may write AuditEvents, which are otherwise the server's own. Only on
    /// an open server: it has no access control to keep, and what is written there is traced
    /// like any other write (its Provenance names the anonymous agent).
    pub fn writes_audit_trail(&self) -> bool {
        matches!(self.agent, Agent::Anonymous)
    }

    /// The scopes that count: `patient/` ones for a patient-bound token, `system/` otherwise
    /// (`user/` scopes need a user's own permissions, which this server does not know).
    fn effective(&self) -> impl Iterator<Item = &Scope> {
        let context = if self.patient.is_some() {
            scope::Context::Patient
        } else {
            scope::Context::System
        };
        self.scopes.iter().filter(move |s| s.context == context)
    }

    pub fn allowed(&self, rtype: &str, perm: Perm) -> Allowed<'_> {
        let matching: Vec<&Scope> = self
            .effective()
            .filter(|s| s.names(rtype) && s.has(perm))
            .collect();
        if matching.is_empty() {
            Allowed::No
        } else if matching.iter().any(|s| s.filter.is_empty()) {
            Allowed::All
        } else {
            Allowed::Filtered(matching)
        }
    }

    /// Whether the grant covers `perm` on every type (system-wide history).
    pub fn allows_everything(&self, perm: Perm) -> bool {
        self.effective()
            .any(|s| s.rtype.is_none() && s.has(perm) && s.filter.is_empty())
    }
}

/// Who is asking: a request without a valid access token (refused by an enforcing server, or
/// the public CapabilityStatement), or one with a grant: a token's, or the open server's.
#[derive(Debug, Clone)]
pub enum Access {
    Unauthenticated,
    Granted(Arc<Grant>),
}

/// The server's authorization state.
pub struct Auth {
    pub clients: Arc<dyn AuthStore>,
    enforced: AtomicBool,
    secret: Vec<u8>,
    /// The token endpoint: the `aud` client assertions must name, the `iss` of our tokens.
    pub token_url: String,
    /// The FHIR base URL: the `aud` of access tokens.
    pub audience: String,
    pub jwks: jwks::Cache,
    trusted: Option<token::Trusted>,
    pub audit: audit::Sink,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "refusing to listen on {0} without authorization: register a client (signaal client add), \
         configure a trusted issuer, or listen on a loopback address"
    )]
    Open(SocketAddr),
    #[error("{0}")]
    Config(String),
}

impl Auth {
    /// Sets up authorization for a server listening on `listen` with FHIR base `base_url`.
    /// With no client, no trusted issuer and no `--auth required`, a loopback server runs open
    /// (and turns enforcing as soon as a client is registered); any other address refuses.
    pub async fn start(
        settings: &AuthSettings,
        clients: Arc<dyn AuthStore>,
        store: Arc<dyn Store>,
        listen: SocketAddr,
        base_url: &str,
    ) -> Result<Arc<Auth>, AuthStartError> {
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let secret = clients.signing_secret(&fresh).await?.into_bytes();
        let trusted = match (&settings.trusted_issuer, &settings.trusted_jwks) {
            (Some(issuer), Some(jwks)) => Some(token::Trusted {
                issuer: issuer.clone(),
                jwks: jwks::Source::parse(jwks).map_err(AuthStartError::Config)?,
            }),
            (None, None) => None,
            _ => {
                return Err(AuthStartError::Config(
                    "--trusted-issuer and --trusted-jwks go together".into(),
                ))
            }
        };
        let enforced = settings.required || trusted.is_some() || clients.has_clients().await?;
        if !enforced && !listen.ip().is_loopback() {
            return Err(AuthStartError::Open(listen));
        }
        let origin = base_url.strip_suffix("/fhir").unwrap_or(base_url);
        let auth = Arc::new(Auth {
            clients,
            enforced: AtomicBool::new(enforced),
            secret,
            token_url: format!("{origin}/auth/token"),
            audience: base_url.to_owned(),
            jwks: jwks::Cache::new(
                jwks::tls_config(settings.jwks_ca.as_deref()).map_err(AuthStartError::Config)?,
            ),
            trusted,
            audit: audit::Sink::start(store),
        });
        if !enforced {
            tracing::warn!(
                "no client is registered: the FHIR API is OPEN to anyone who can reach {listen} \
                 (loopback only); it requires tokens as soon as a client is registered"
            );
            tokio::spawn(watch_for_clients(Arc::downgrade(&auth)));
        }
        Ok(auth)
    }

    pub fn enforced(&self) -> bool {
        self.enforced.load(Ordering::Relaxed)
    }

    /// The access of a request to the FHIR API, from its `Authorization` header.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Access, FhirError> {
        if !self.enforced() {
            return Ok(Access::Granted(Grant::open()));
        }
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(header) = header else {
            return Err(FhirError::Unauthorized {
                message: "An access token is required (Authorization: Bearer …); get one at the \
                          token endpoint"
                    .into(),
                challenge: format!("Bearer realm=\"{}\"", self.audience),
            });
        };
        let bearer = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim);
        let invalid = |why: String| FhirError::Unauthorized {
            challenge: format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                self.audience,
                why.replace('"', "'")
            ),
            message: format!("The access token is not valid: {why}"),
        };
        let Some(bearer) = bearer else {
            return Err(invalid(
                "the Authorization header is not a Bearer token".into(),
            ));
        };
        let grant = token::verify_access_token(self, bearer)
            .await
            .map_err(invalid)?;
        Ok(Access::Granted(Arc::new(grant)))
    }
}

/// Polls for the first registered client while the server runs open, then enforces.
async fn watch_for_clients(auth: Weak<Auth>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(auth) = auth.upgrade() else { return };
        if let Ok(true) = auth.clients.has_clients().await {
            auth.enforced.store(true, Ordering::Relaxed);
            tracing::info!("a client is registered: access tokens are now required");
            return;
        }
    }
}
