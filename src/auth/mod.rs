//! Authorization: SMART Backend Services clients and tokens, the scopes and patient a request
//! may act for, and the traces every access leaves (Provenance, AuditEvent).
//!
//! A request is authenticated once in the HTTP layer ([`Auth::authenticate`]); everything it
//! then does goes through a [`guard::GuardedStore`] built for its grant (on an open server,
//! [`Grant::open`]: everything allowed, traced as the anonymous agent), so reads, searches
//! (includes, chains, `_has`), history, operations and every Bundle entry meet the same checks
//! in one place: the store calls they make.

pub mod audit;
pub mod authorize;
pub mod code_grant;
pub mod consent;
pub mod discovery;
pub mod ehr_launch;
pub mod guard;
pub mod id_token;
pub mod jwks;
pub mod login;
pub mod login_attempts;
pub mod oidc;
pub mod pages;
pub mod password;
pub mod provenance;
pub mod scope;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock, Weak};
use std::time::Duration;

use axum::http::HeaderMap;

use crate::error::FhirError;
use crate::store::auth::{AuthStore, ClientRecord};
use crate::store::StoreError;
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
    /// `--allow-open-on-public-base`: run open (no client, no issuer) although the public base
    /// URL is not a loopback address (a reverse proxy publishes the server): the operator says
    /// so explicitly.
    pub allow_open_on_public_base: bool,
    /// `--oidc-issuer` and its client: people may log in through this OpenID Connect provider.
    pub oidc: Option<oidc::Settings>,
}

/// The identifier system of this server's own clients in the audit trail (`Provenance.agent`,
/// `AuditEvent.agent`): `urn:signaal:client|{id}`. A trusted issuer's clients are named under
/// that issuer's URL instead, so a client id of theirs never passes for one of ours.
pub const CLIENT_SYSTEM: &str = "urn:signaal:client";

/// Who acts: the agent a Provenance and an AuditEvent name.
#[derive(Debug, Clone)]
pub enum Agent {
    /// A client with an access token.
    Client {
        id: String,
        /// The identifier system its id belongs to: [`CLIENT_SYSTEM`] for a client registered
        /// here, the issuer's URL for a trusted issuer's client.
        system: String,
        /// The client's URI: `meta.source` of what it writes.
        uri: String,
    },
    /// Anyone, on an open server (no access token asked).
    Anonymous,
    /// The server itself: the risk scorer writing its RiskAssessments and Flags.
    Scorer,
    /// The server's operator, on the command line (`signaal import`).
    Operator,
}

impl Agent {
    /// The `meta.source` of what the agent writes: a client's URI. Anonymous writes keep what
    /// the client sent; the scorer's outputs carry none (they are compared with what is stored).
    pub fn source(&self) -> Option<&str> {
        match self {
            Agent::Client { uri, .. } => Some(uri),
            Agent::Anonymous | Agent::Scorer | Agent::Operator => None,
        }
    }

    /// The agent as a FHIR Reference (`Provenance.agent.who`, `AuditEvent.agent.who`).
    pub fn who(&self) -> serde_json::Value {
        match self {
            Agent::Client { id, system, uri } => serde_json::json!({
                "identifier": {"system": system, "value": id},
                "display": uri,
            }),
            Agent::Anonymous => {
                serde_json::json!({"display": "anonymous (open server: no access token required)"})
            }
            Agent::Scorer => serde_json::json!({"display": "Signaal risk scoring (the server)"}),
            Agent::Operator => {
                serde_json::json!({"display": "the server's operator (signaal command line)"})
            }
        }
    }

    /// Who the agent is, as one key (`system|id` for a client): what owns an asynchronous job.
    pub fn key(&self) -> String {
        match self {
            Agent::Client { id, system, .. } => format!("{system}|{id}"),
            Agent::Anonymous => "anonymous".into(),
            Agent::Scorer => "scorer".into(),
            Agent::Operator => "operator".into(),
        }
    }

    /// How error messages name the agent.
    pub fn name(&self) -> String {
        match self {
            Agent::Client { id, system, .. } if system == CLIENT_SYSTEM => format!("client '{id}'"),
            Agent::Client { id, system, .. } => format!("client '{id}' of {system}"),
            Agent::Anonymous => "the open server".into(),
            Agent::Scorer => "the risk scorer".into(),
            Agent::Operator => "the operator (command line)".into(),
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
    /// The person the client acts for (SMART App Launch): `Practitioner/ID` or `Patient/ID`.
    pub user: Option<String>,
    /// A person's `user/` grant sees only these patients' compartments (a practitioner's
    /// caseload: the patients of the CareTeams they take part in; a patient's own), and
    /// resources in no patient's compartment.
    pub caseload: Option<Arc<[String]>>,
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
        user: None,
        caseload: None,
    })
});

impl Grant {
    /// The grant of every request to an open server.
    pub fn open() -> Arc<Grant> {
        OPEN.clone()
    }

    /// What the operator may do on the command line (`signaal import`): write every type, as
    /// the operator agent (each write traced with its Provenance); not the audit trail.
    pub fn operator() -> Arc<Grant> {
        Arc::new(Grant {
            agent: Agent::Operator,
            scopes: scope::parse_all("system/*.*").expect("the operator's scopes"),
            patient: None,
            user: None,
            caseload: None,
        })
    }

    /// The context whose scopes count: `patient/` for a patient-bound token, `user/` for a
    /// person's token confined to a caseload, `system/` otherwise.
    pub fn context(&self) -> scope::Context {
        if self.patient.is_some() {
            scope::Context::Patient
        } else if self.caseload.is_some() {
            scope::Context::User
        } else {
            scope::Context::System
        }
    }

    /// The scopes that count: those of the grant's [`Grant::context`].
    fn effective(&self) -> impl Iterator<Item = &Scope> {
        let context = self.context();
        self.scopes.iter().filter(move |s| s.context == context)
    }

    /// Whether the grant is confined to some patients' compartments (patient-bound, or a
    /// person's caseload).
    pub fn confined(&self) -> bool {
        self.patient.is_some() || self.caseload.is_some()
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
    /// The registered clients as last read (every second, and on a miss): a token is valid only
    /// while the registration it was issued under stands (see [`Registration`]).
    registry: RwLock<HashMap<String, Registration>>,
    /// SMART App Launch: authorization requests in progress, launch contexts, log-in attempts.
    pub launch: authorize::State,
    /// The key id_tokens are signed with (made on first use, kept in the database).
    pub id_key: tokio::sync::OnceCell<id_token::IdKey>,
    /// The OpenID Connect provider people may log in through.
    pub oidc: Option<oidc::Provider>,
}

/// What a request checks of its client's registration, from memory: a token of a removed or
/// re-registered client, of another patient or scope, or signed in with a removed key is no
/// longer valid.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Registration time (ms): the token's `reg` claim must name it.
    pub created: i64,
    pub patient: Option<String>,
    pub scopes: Vec<Scope>,
    /// The registered JWKS's key ids, when the JWKS is stored (registered from a file).
    pub kids: Option<HashSet<String>>,
    pub jwks_url: Option<String>,
}

impl Registration {
    fn of(client: &ClientRecord) -> Registration {
        let kids = client.jwks.as_deref().map(|text| {
            jwks::parse(text)
                .map(|set| {
                    set.keys
                        .iter()
                        .filter_map(|k| k.common.key_id.clone())
                        .collect()
                })
                .unwrap_or_default()
        });
        Registration {
            created: client.created,
            patient: client.patient.clone(),
            scopes: scope::parse_all(&client.scope).unwrap_or_default(),
            kids,
            jwks_url: client.jwks_url.clone(),
        }
    }
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
    #[error(
        "refusing to run without authorization behind the public base URL {0}: register a client \
         (signaal client add), configure a trusted issuer, or, if the base URL is reachable from \
         this machine only, say so with --allow-open-on-public-base"
    )]
    OpenOnPublicBase(String),
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
        audit: audit::Sink,
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
        if let Some(oidc) = &settings.oidc {
            oidc.check().map_err(AuthStartError::Config)?;
        }
        let enforced = settings.required || trusted.is_some() || clients.has_clients().await?;
        if !enforced && !listen.ip().is_loopback() {
            return Err(AuthStartError::Open(listen));
        }
        // Behind a reverse proxy the listening address is loopback while the world reaches the
        // server at its public base URL: open only when the operator says so.
        let public_base = !is_loopback_url(base_url);
        if !enforced && public_base && !settings.allow_open_on_public_base {
            return Err(AuthStartError::OpenOnPublicBase(base_url.to_owned()));
        }
        let registry = clients
            .clients()
            .await?
            .iter()
            .map(|c| (c.id.clone(), Registration::of(c)))
            .collect();
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
            audit,
            registry: RwLock::new(registry),
            launch: authorize::State::default(),
            id_key: tokio::sync::OnceCell::new(),
            oidc: settings.oidc.clone().map(oidc::Provider::new),
        });
        if !enforced {
            if public_base {
                tracing::warn!(
                    "no client is registered: the FHIR API is OPEN to anyone who can reach \
                     {base_url} (--allow-open-on-public-base); it requires tokens as soon as a \
                     client is registered"
                );
            } else {
                tracing::warn!(
                    "no client is registered: the FHIR API is OPEN to anyone who can reach \
                     {listen} (loopback only); it requires tokens as soon as a client is registered"
                );
            }
        }
        tokio::spawn(watch_registry(Arc::downgrade(&auth)));
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

impl Auth {
    /// The registration of a client as this server knows it: from memory, refreshed every
    /// second ([`watch_registry`]); a client not there yet (registered since) is read from the
    /// database.
    pub async fn registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        if let Some(known) = self.registry.read().expect("registry lock").get(client_id) {
            return Ok(Some(known.clone()));
        }
        let Some(client) = self.clients.client(client_id).await? else {
            return Ok(None);
        };
        let registration = Registration::of(&client);
        self.registry
            .write()
            .expect("registry lock")
            .insert(client.id, registration.clone());
        Ok(Some(registration))
    }
}

/// Whether a base URL's host is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`).
fn is_loopback_url(base_url: &str) -> bool {
    match url::Url::parse(base_url)
        .ok()
        .as_ref()
        .and_then(url::Url::host)
    {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Reads the registered clients every second: the first one turns an open server enforcing,
/// and a removed or changed registration ends its tokens ([`Auth::registration`]).
async fn watch_registry(auth: Weak<Auth>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(auth) = auth.upgrade() else { return };
        let clients = match auth.clients.clients().await {
            Ok(clients) => clients,
            Err(e) => {
                tracing::warn!(error = %e, "reading the registered clients failed");
                continue;
            }
        };
        if !clients.is_empty() && !auth.enforced() {
            auth.enforced.store(true, Ordering::Relaxed);
            tracing::info!("a client is registered: access tokens are now required");
        }
        let registry = clients
            .iter()
            .map(|c| (c.id.clone(), Registration::of(c)))
            .collect();
        *auth.registry.write().expect("registry lock") = registry;
    }
}
