//! Log-in through an external OpenID Connect provider (a hospital's identity provider): the
//! log-in page offers it, Signaal sends the browser there (authorization code flow with its
//! own `state`, `nonce` and PKCE S256), takes the answer at `/auth/oidc/callback`, redeems the
//! code at the provider's token endpoint, verifies the id_token (the provider's key from its
//! JWKS, `iss`, `aud`/`azp`, `exp`/`iat`, `nonce`, asymmetric algorithms only) and maps its
//! `sub` to the Signaal user linked to it (`signaal user link`). From there on the log-in is a
//! local one: the same consent page, code and tokens.
//!
//! The provider is found through its metadata (`{issuer}/.well-known/openid-configuration`,
//! OpenID Connect Discovery 1.0), fetched on first use with the server's HTTP client
//! ([`super::jwks::Cache`]) and kept for an hour; a provider that cannot be reached is told to
//! the person on a page (502), and the log-in can be tried again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use base64::Engine;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::authorize::{
    self, answer, cookie, error_page, field, form, not_checked, random_token, redirect, sha256_hex,
    Answer,
};
use super::consent::{self, Caseload};
use super::jwks::Source;
use super::token::LEEWAY;
use super::Auth;
use crate::fhir::datetime::now_ms;

/// The cookie that binds a log-in sent to the provider to the browser that went there.
pub const COOKIE: &str = "signaal_oidc";
/// How long the metadata of the provider is used before it is fetched again.
const METADATA_AGE: Duration = Duration::from_secs(3600);
/// How long the browser has to come back from the provider, ms.
const ROUND_TRIP: i64 = 10 * 60 * 1000;
/// The oldest id_token accepted (its `iat`), seconds.
const MAX_ID_TOKEN_AGE: i64 = 10 * 60;
/// The most log-ins on their way to the provider kept at once.
const MAX_OUTGOING: usize = 10_000;
/// The signature algorithms accepted for id_tokens: asymmetric ones only (never `none`, never
/// an HMAC that could be keyed with the provider's public key).
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// `signaal serve --oidc-issuer … --oidc-client-id … [--oidc-client-secret-file …]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The provider's issuer identifier: the `iss` of its id_tokens, and where its metadata is.
    pub issuer: String,
    /// Signaal's client id at the provider.
    pub client_id: String,
    /// Signaal's client secret at the provider (client_secret_basic); without it Signaal is a
    /// public client there (PKCE only).
    pub client_secret: Option<String>,
    /// The provider's name on the log-in page.
    pub name: String,
}

impl Settings {
    /// Checks the issuer: an `https://` URL (`http://` on a loopback host) without query or
    /// fragment (OpenID Connect Discovery 1.0 §2).
    pub fn check(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.issuer)
            .map_err(|e| format!("--oidc-issuer {}: {e}", self.issuer))?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback))
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "--oidc-issuer {}: an https:// URL (http:// on a loopback host) without query or \
                 fragment is needed",
                self.issuer
            ));
        }
        if self.client_id.is_empty() {
            return Err("--oidc-client-id must not be empty".into());
        }
        Ok(())
    }
}

/// What the provider's metadata says.
#[derive(Debug, Clone)]
struct Metadata {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    /// `id_token_signing_alg_values_supported`.
    algorithms: Vec<String>,
}

/// A log-in on its way to the provider, named by the hash of its `state`.
struct Outgoing {
    /// The authorization request it continues.
    request: String,
    nonce: String,
    verifier: String,
    /// SHA-256 of the [`COOKIE`] of the browser sent there.
    browser: String,
    expires: i64,
}

/// The configured provider and the log-ins on their way to it.
pub struct Provider {
    pub settings: Settings,
    metadata: tokio::sync::Mutex<Option<(Metadata, Instant)>>,
    outgoing: Mutex<HashMap<String, Outgoing>>,
}

impl Provider {
    pub fn new(settings: Settings) -> Provider {
        Provider {
            settings,
            metadata: tokio::sync::Mutex::new(None),
            outgoing: Mutex::default(),
        }
    }

    /// The provider's metadata, fetched when not known or older than an hour.
    async fn metadata(&self, auth: &Auth) -> Result<Metadata, String> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref() {
            if at.elapsed() < METADATA_AGE {
                return Ok(m.clone());
            }
        }
        let issuer = &self.settings.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (status, body) = auth.jwks.get(&url).await?;
        if status != 200 {
            return Err(format!("{url} answered {status}"));
        }
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not a JSON document: {e}"))?;
        // OpenID Connect Discovery 1.0 §4.3: the metadata's issuer is exactly the one asked.
        if doc["issuer"].as_str() != Some(issuer.as_str()) {
            return Err(format!(
                "the metadata at {url} names issuer {} instead of {issuer}",
                doc["issuer"]
            ));
        }
        let endpoint = |name: &str| {
            doc[name]
                .as_str()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .map(str::to_owned)
                .ok_or_else(|| format!("the metadata at {url} has no {name}"))
        };
        let metadata = Metadata {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            jwks_uri: endpoint("jwks_uri")?,
            algorithms: doc["id_token_signing_alg_values_supported"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        };
        *cached = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }
}

fn unreachable_page(name: &str) -> Response<Body> {
    error_page(
        StatusCode::BAD_GATEWAY,
        &format!("Signaal kan {name} nu niet bereiken om in te loggen. Probeer het later opnieuw, of log in met een Signaal-account."),
        &format!("Signaal cannot reach {name} to log in right now. Try again later, or log in with a Signaal account."),
    )
}

/// `GET /auth/authorize/oidc?request=…`: the person chose the provider on the log-in page;
/// the browser goes there.
pub async fn begin(auth: &Auth, query: &str) -> Answer {
    let params = form(query.as_bytes());
    let request = field(&params, "request").unwrap_or("");
    let Some(pending) = authorize::pending_client(auth, request) else {
        return answer(
            authorize::expired(),
            None,
            "oidc: unknown or expired request",
        );
    };
    let client = Some(pending.as_str());
    let Some(provider) = &auth.oidc else {
        return answer(
            error_page(
                StatusCode::NOT_FOUND,
                "Inloggen via een andere partij is niet ingesteld.",
                "Log-in through an identity provider is not configured.",
            ),
            client,
            "oidc: no provider configured",
        );
    };
    let metadata = match provider.metadata(auth).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = e, "the OpenID Connect provider's metadata");
            return answer(
                unreachable_page(&provider.settings.name),
                client,
                format!("oidc: provider metadata: {e}"),
            );
        }
    };
    let state = random_token();
    let nonce = random_token();
    let verifier = random_token();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let browser = random_token();
    {
        let now = now_ms();
        let mut all = provider.outgoing.lock().expect("oidc lock");
        all.retain(|_, o| o.expires >= now);
        if all.len() >= MAX_OUTGOING {
            return answer(
                error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Te veel inlogpogingen tegelijk. Probeer het zo opnieuw.",
                    "Too many log-ins in progress. Try again shortly.",
                ),
                client,
                "oidc: too many log-ins in progress",
            );
        }
        all.insert(
            sha256_hex(&state),
            Outgoing {
                request: request.to_owned(),
                nonce: nonce.clone(),
                verifier,
                browser: sha256_hex(&browser),
                expires: now + ROUND_TRIP,
            },
        );
    }
    let Ok(mut url) = url::Url::parse(&metadata.authorization_endpoint) else {
        return answer(
            unreachable_page(&provider.settings.name),
            client,
            "oidc: the authorization_endpoint is not a URL",
        );
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.settings.client_id)
        .append_pair("redirect_uri", &auth.auth_url("oidc/callback"))
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut response = redirect(&url);
    // Lax: the browser comes back from the provider with a top-level GET (another site).
    super::authorize::set_cookie(&mut response, auth, COOKIE, &browser, "oidc", "Lax");
    answer(
        response,
        client,
        format!(
            "sent to the OpenID Connect provider {}",
            provider.settings.issuer
        ),
    )
}

/// `GET /auth/oidc/callback`: the provider's answer. Its code is redeemed, the id_token
/// verified and its subject mapped to a user; then the consent page of a local log-in.
pub async fn callback(
    auth: &Auth,
    headers: &HeaderMap,
    query: &str,
    caseload: &dyn Caseload,
) -> Answer {
    let params = form(query.as_bytes());
    let Some(provider) = &auth.oidc else {
        return answer(
            error_page(
                StatusCode::NOT_FOUND,
                "Inloggen via een andere partij is niet ingesteld.",
                "Log-in through an identity provider is not configured.",
            ),
            None,
            "oidc: no provider configured",
        );
    };
    let name = provider.settings.name.clone();
    let state = field(&params, "state").unwrap_or("");
    // Each state is answered once: a replayed or forged answer finds nothing.
    let outgoing = provider
        .outgoing
        .lock()
        .expect("oidc lock")
        .remove(&sha256_hex(state))
        .filter(|o| o.expires >= now_ms());
    let Some(outgoing) = outgoing else {
        return answer(
            error_page(
                StatusCode::BAD_REQUEST,
                "Dit antwoord van de inlogdienst hoort niet bij een inlogpoging die nog loopt. Begin opnieuw vanuit de app.",
                "This answer of the identity provider belongs to no log-in in progress. Start again from the app.",
            ),
            None,
            "oidc callback: unknown, used or expired state",
        );
    };
    let client = authorize::pending_client(auth, &outgoing.request);
    let client = client.as_deref();
    if cookie(headers, COOKIE).map(|c| sha256_hex(&c)).as_deref() != Some(outgoing.browser.as_str())
    {
        return answer(
            error_page(
                StatusCode::FORBIDDEN,
                "Dit antwoord komt niet in de browser die naar de inlogdienst ging.",
                "This answer did not arrive in the browser that went to the identity provider.",
            ),
            client,
            "oidc callback without the browser's cookie",
        );
    }
    if let Some(error) = field(&params, "error") {
        let description = field(&params, "error_description").unwrap_or("");
        return answer(
            error_page(
                StatusCode::UNAUTHORIZED,
                &format!("Inloggen bij {name} is niet gelukt ({error}). {description}"),
                &format!("Logging in at {name} did not succeed ({error}). {description}"),
            ),
            client,
            format!("oidc: the provider answered {error}: {description}"),
        );
    }
    let Some(code) = field(&params, "code") else {
        return answer(
            error_page(
                StatusCode::BAD_REQUEST,
                "Het antwoord van de inlogdienst bevat geen code.",
                "The identity provider's answer holds no code.",
            ),
            client,
            "oidc callback without code",
        );
    };
    let verified = async {
        let metadata = provider
            .metadata(auth)
            .await
            .map_err(Failure::Unreachable)?;
        let id_token = redeem(auth, provider, &metadata, code, &outgoing.verifier).await?;
        verify_id_token(auth, provider, &metadata, &id_token, &outgoing.nonce)
            .await
            .map_err(Failure::Invalid)
    }
    .await;
    let subject = match verified {
        Ok(subject) => subject,
        Err(Failure::Unreachable(e)) => {
            tracing::warn!(error = e, "the OpenID Connect provider");
            return answer(unreachable_page(&name), client, format!("oidc: {e}"));
        }
        Err(Failure::Invalid(e)) => {
            tracing::warn!(
                error = e,
                "an id_token of the OpenID Connect provider refused"
            );
            return answer(
                error_page(
                    StatusCode::UNAUTHORIZED,
                    &format!("Het antwoord van {name} kon niet worden gecontroleerd. Begin opnieuw vanuit de app."),
                    &format!("The answer of {name} could not be verified. Start again from the app."),
                ),
                client,
                format!("oidc: id_token refused: {e}"),
            );
        }
    };
    let issuer = &provider.settings.issuer;
    let user = match auth.clients.user_by_oidc(issuer, &subject).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return answer(
                error_page(
                    StatusCode::FORBIDDEN,
                    &format!("U bent ingelogd bij {name}, maar uw account (kenmerk '{subject}') is niet gekoppeld aan een gebruiker van Signaal. Vraag de beheerder om het te koppelen."),
                    &format!("You logged in at {name}, but your account (subject '{subject}') is not linked to a Signaal user. Ask the administrator to link it."),
                ),
                client,
                format!("oidc: subject '{subject}' of {issuer} is linked to no user"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "oidc: reading the user");
            return answer(
                not_checked(),
                client,
                format!("store: {e}"),
            );
        }
    };
    let how = format!("through {issuer} (subject '{subject}')");
    consent::signed_in(auth, &outgoing.request, user, caseload, &how).await
}

enum Failure {
    /// The provider cannot be reached, or its token endpoint refused.
    Unreachable(String),
    /// Its answer is not to be trusted.
    Invalid(String),
}

/// Redeems the provider's code at its token endpoint: its id_token.
async fn redeem(
    auth: &Auth,
    provider: &Provider,
    metadata: &Metadata,
    code: &str,
    verifier: &str,
) -> Result<String, Failure> {
    let settings = &provider.settings;
    let redirect_uri = auth.auth_url("oidc/callback");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let basic = match &settings.client_secret {
        Some(secret) => Some((settings.client_id.as_str(), secret.as_str())),
        None => {
            form.push(("client_id", settings.client_id.as_str()));
            None
        }
    };
    let (status, body) = auth
        .jwks
        .post_form(&metadata.token_endpoint, &form, basic)
        .await
        .map_err(Failure::Unreachable)?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != 200 {
        return Err(Failure::Unreachable(format!(
            "the token endpoint answered {status}: {} {}",
            answer["error"].as_str().unwrap_or(""),
            answer["error_description"].as_str().unwrap_or("")
        )));
    }
    answer["id_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Invalid("the token response holds no id_token".into()))
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    iat: i64,
    nonce: Option<String>,
    azp: Option<String>,
    aud: Value,
}

/// Verifies an id_token (OpenID Connect Core 1.0 §3.1.3.7): its subject.
async fn verify_id_token(
    auth: &Auth,
    provider: &Provider,
    metadata: &Metadata,
    token: &str,
    nonce: &str,
) -> Result<String, String> {
    let settings = &provider.settings;
    let head =
        decode_header(token).map_err(|e| format!("the id_token is not a signed JWT: {e}"))?;
    let alg = format!("{:?}", head.alg);
    if !ALGORITHMS.contains(&head.alg)
        || (!metadata.algorithms.is_empty() && !metadata.algorithms.contains(&alg))
    {
        return Err(format!(
            "the id_token is signed with {alg}, which is not accepted"
        ));
    }
    let kid = head
        .kid
        .as_deref()
        .ok_or("the id_token header has no kid")?;
    let jwk = auth
        .jwks
        .key(&Source::Url(metadata.jwks_uri.clone()), kid)
        .await?;
    if let Some(key_alg) = jwk.common.key_algorithm {
        if format!("{key_alg:?}") != alg {
            return Err(format!(
                "key '{kid}' is for {key_alg:?}, the id_token uses {alg}"
            ));
        }
    }
    let key =
        DecodingKey::from_jwk(&jwk).map_err(|e| format!("key '{kid}' cannot be used: {e}"))?;
    let mut validation = Validation::new(head.alg);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    let claims = decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| format!("the id_token is not valid: {e}"))?
        .claims;
    let now = now_ms() / 1000;
    if claims.iat > now + LEEWAY as i64 {
        return Err("the id_token was issued in the future".into());
    }
    if claims.iat < now - MAX_ID_TOKEN_AGE {
        return Err(format!(
            "the id_token was issued more than {MAX_ID_TOKEN_AGE} s ago"
        ));
    }
    // Several audiences: the authorized party must be Signaal.
    if claims.aud.as_array().is_some_and(|a| a.len() > 1)
        && claims.azp.as_deref() != Some(settings.client_id.as_str())
    {
        return Err("the id_token has several audiences and its azp is not Signaal".into());
    }
    if claims.nonce.as_deref() != Some(nonce) {
        return Err("the id_token's nonce is not the one Signaal sent".into());
    }
    if claims.sub.is_empty() {
        return Err("the id_token's sub is empty".into());
    }
    Ok(claims.sub)
}
