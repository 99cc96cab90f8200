//! The token endpoint of SMART Backend Services (`POST /auth/token`) and the checking of the
//! access tokens that requests bring.
//!
//! A client authenticates with a JWT it signed (RS384 or ES384) with a key of its registered
//! JWKS (`client_assertion`, RFC 7523); the server answers with an access token it signs itself
//! (HS256 with a secret kept in the database, so every server on one database accepts it).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Validation,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jwks::Source;
use super::scope::{self, Context, Scope};
use super::{Agent, Auth, Grant, CLIENT_SYSTEM};
use crate::fhir::datetime::now_ms;
use crate::store::auth::ClientRecord;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of an access token, seconds.
pub const TOKEN_LIFETIME: i64 = 300;
/// The furthest ahead a client assertion may expire, seconds (SMART: at most five minutes).
const MAX_ASSERTION_LIFETIME: i64 = 300;
/// Tolerated clock difference with clients and the trusted issuer, seconds: for `exp`, `nbf`
/// (RFC 7519 4.1.4, 4.1.5) and `iat` alike.
pub(super) const LEEWAY: u64 = 30;
/// What a client whose assertion fails after its `iss` was looked up is told (RFC 6749 5.2
/// `invalid_client`): the same whether the client is unknown, its key is wrong or its claims
/// are, so the answer does not tell which clients exist. The reason goes to the log and the
/// token request's AuditEvent.
pub const NOT_AUTHENTICATED: &str = "the client could not be authenticated";

/// The external authorization server whose access tokens are honoured.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub issuer: String,
    pub jwks: Source,
}

/// The URI a client is known by in `meta.source`, Provenance and AuditEvent.
pub fn client_uri(client_id: &str) -> String {
    format!("urn:signaal:client:{client_id}")
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AccessClaims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) aud: String,
    pub(super) exp: i64,
    pub(super) iat: i64,
    pub(super) jti: String,
    pub(super) scope: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) patient: Option<String>,
    /// The registration the token was issued under (its `created`, ms): a client removed and
    /// registered again does not inherit the old registration's tokens.
    pub(super) reg: i64,
    /// The key the client authenticated with: its tokens end when the key is removed.
    pub(super) kid: String,
    /// A person's token (SMART App Launch): the grant it was issued under, which revocation
    /// ends, and the person's FHIR resource.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) gid: Option<String>,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none", default)]
    pub(super) fhir_user: Option<String>,
}

/// Claims of an external issuer's access token.
#[derive(Debug, Deserialize)]
struct TrustedClaims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    scope: String,
    patient: Option<String>,
}

/// An OAuth 2.0 error (RFC 6749 §5.2).
pub(super) struct OAuthError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    /// What the client is told.
    pub(super) description: String,
    /// Why, for the log and the audit trail (the description unless that hides it).
    pub(super) detail: String,
}

pub(super) fn oauth(code: &'static str, description: impl Into<String>) -> OAuthError {
    let description = description.into();
    OAuthError {
        status: if code == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        },
        code,
        detail: description.clone(),
        description,
    }
}

/// `invalid_client` once the assertion's client was looked up: always [`NOT_AUTHENTICATED`],
/// the reason kept for the log and the audit trail.
pub(super) fn not_authenticated(detail: String) -> OAuthError {
    OAuthError {
        detail,
        ..oauth("invalid_client", NOT_AUTHENTICATED)
    }
}

/// How a token request ended, for its AuditEvent.
pub struct TokenAnswer {
    pub response: Response<Body>,
    /// The client id the assertion claims, if any.
    pub claimed: Option<String>,
    /// Why it was refused (also when the client is told less).
    pub refusal: Option<String>,
}

pub(super) fn json_reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `POST /auth/token`: a client credentials grant with a JWT client assertion. Also returns
/// the client id the assertion claims, if any, and why it was refused, for the audit trail.
pub async fn endpoint(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> TokenAnswer {
    let mut claimed = None;
    let mut refusal = None;
    let response = match issue(auth, headers, body, &mut claimed).await {
        Ok(token) => json_reply(StatusCode::OK, &token),
        Err(e) => {
            tracing::info!(
                error = e.code,
                client = claimed,
                detail = e.detail,
                "token refused"
            );
            refusal = Some(e.detail.clone());
            let mut response = json_reply(
                e.status,
                &json!({"error": e.code, "error_description": e.description}),
            );
            if e.status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    super::code_grant::challenge(headers),
                );
            }
            response
        }
    };
    TokenAnswer {
        response,
        claimed,
        refusal,
    }
}

async fn issue(
    auth: &Auth,
    headers: &HeaderMap,
    body: &[u8],
    claimed: &mut Option<String>,
) -> Result<Value, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return Err(oauth(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some("client_credentials") => {}
        Some("authorization_code" | "refresh_token") => {
            return super::code_grant::issue(auth, headers, &form, claimed).await
        }
        _ => {
            return Err(oauth(
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            ))
        }
    }
    let requested = field("scope").unwrap_or("");
    let (client, kid) = assertion_client(auth, &form, claimed).await?;

    let registered = scope::parse_all(&client.scope)
        .map_err(|e| server_error(&format!("client '{}': {e}", client.id)))?;
    let context = if client.patient.is_some() {
        Context::Patient
    } else {
        Context::System
    };
    let mut granted: Vec<&str> = Vec::new();
    for item in requested.split_whitespace() {
        let asked = Scope::parse(item).map_err(|e| oauth("invalid_scope", e))?;
        if let Some(asked) = asked {
            if asked.context == context && registered.iter().any(|r| r.covers(&asked)) {
                granted.push(item);
            }
        }
    }
    if granted.is_empty() {
        return Err(oauth(
            "invalid_scope",
            format!(
                "none of the requested scopes '{requested}' is allowed for this client (allowed: {})",
                client.scope
            ),
        ));
    }
    let scope = granted.join(" ");
    let now = now_ms() / 1000;
    let access = AccessClaims {
        iss: auth.token_url.clone(),
        sub: client.id.clone(),
        aud: auth.audience.clone(),
        exp: now + TOKEN_LIFETIME,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        scope: scope.clone(),
        patient: client.patient.clone(),
        reg: client.created,
        kid: kid.to_owned(),
        gid: None,
        fhir_user: None,
    };
    let token = sign(auth, &access)?;
    let mut answer = json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": TOKEN_LIFETIME,
        "scope": scope,
    });
    if let Some(patient) = &client.patient {
        answer["patient"] = json!(patient);
    }
    tracing::info!(client = client.id, scope, "access token issued");
    Ok(answer)
}

/// A client that authenticates with a signed JWT (`private_key_jwt`, RFC 7523): Backend
/// Services clients and confidential apps alike. Returns the client and the key id it signed
/// with; `claimed` gets the client id the assertion names.
pub(super) async fn assertion_client(
    auth: &Auth,
    form: &[(String, String)],
    claimed: &mut Option<String>,
) -> Result<(ClientRecord, String), OAuthError> {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(oauth(
            "invalid_request",
            format!("client_assertion_type must be {ASSERTION_TYPE}"),
        ));
    }
    let assertion = field("client_assertion")
        .ok_or_else(|| oauth("invalid_request", "client_assertion is missing"))?;

    let client_error = |why: String| oauth("invalid_client", why);
    let head = decode_header(assertion)
        .map_err(|e| client_error(format!("the client assertion is not a JWT: {e}")))?;
    if !matches!(head.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(client_error(format!(
            "the client assertion is signed with {:?}; RS384 or ES384 is required",
            head.alg
        )));
    }
    let kid = head
        .kid
        .as_deref()
        .ok_or_else(|| client_error("the client assertion header has no kid".into()))?;
    // Which client: `iss` picks the client whose keys then verify the whole assertion.
    let unverified: Value = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|e| client_error(format!("the client assertion is not a JWT: {e}")))?;
    let client_id = unverified["iss"]
        .as_str()
        .ok_or_else(|| client_error("the client assertion has no iss".into()))?;
    *claimed = Some(client_id.to_owned());
    // From here on every refusal reads the same to the client (RFC 6749 5.2 invalid_client),
    // whether or not the client exists.
    let client_error = not_authenticated;
    let client = auth
        .clients
        .client(client_id)
        .await
        .map_err(|e| server_error(&e.to_string()))?
        .ok_or_else(|| client_error(format!("no client '{client_id}' is registered")))?;
    // SMART (client-confidential-asymmetric, signature verification): a `jku` header must be
    // the JWKS URL registered for the client; keys are never fetched from where the assertion
    // points.
    if let Some(jku) = &head.jku {
        if client.jwks_url.as_deref() != Some(jku.as_str()) {
            return Err(client_error(format!(
                "the assertion's jku '{jku}' is not the JWKS URL registered for client '{}'",
                client.id
            )));
        }
    }
    let source = match (&client.jwks, &client.jwks_url) {
        (Some(jwks), _) => Source::Inline(jwks.clone()),
        (None, Some(url)) => Source::Url(url.clone()),
        (None, None) => return Err(client_error("the client has no keys".into())),
    };
    let jwk = auth.jwks.key(&source, kid).await.map_err(client_error)?;
    if let Some(alg) = jwk.common.key_algorithm {
        if format!("{alg:?}") != format!("{:?}", head.alg) {
            return Err(client_error(format!(
                "key '{kid}' is for {alg:?}, the assertion uses {:?}",
                head.alg
            )));
        }
    }
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| client_error(format!("key '{kid}' cannot be used: {e}")))?;
    let mut validation = Validation::new(head.alg);
    validation.set_audience(&[&auth.token_url]);
    validation.set_issuer(&[&client.id]);
    validation.sub = Some(client.id.clone());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    let claims = decode::<AssertionClaims>(assertion, &key, &validation)
        .map_err(|e| client_error(format!("the client assertion is not valid: {e}")))?
        .claims;
    let now = now_ms() / 1000;
    if claims.exp > now + MAX_ASSERTION_LIFETIME + LEEWAY as i64 {
        return Err(client_error(format!(
            "the client assertion expires more than {MAX_ASSERTION_LIFETIME} s from now"
        )));
    }
    if claims.iat.is_some_and(|iat| iat > now + LEEWAY as i64) {
        return Err(client_error(
            "the client assertion was issued in the future".into(),
        ));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or_else(|| client_error("the client assertion has no jti".into()))?;
    let fresh = auth
        .clients
        .use_jti(
            &client.id,
            &jti,
            (claims.exp + LEEWAY as i64) * 1000,
            now_ms(),
        )
        .await
        .map_err(|e| server_error(&e.to_string()))?;
    if !fresh {
        return Err(oauth(
            "invalid_grant",
            "this client assertion (jti) was used before",
        ));
    }

    Ok((client, kid.to_owned()))
}

/// Signs an access token (HS256 with the server's secret).
pub(super) fn sign(auth: &Auth, claims: &AccessClaims) -> Result<String, OAuthError> {
    encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&auth.secret),
    )
    .map_err(|e| server_error(&e.to_string()))
}

pub(super) fn server_error(detail: &str) -> OAuthError {
    tracing::error!(error = detail, "token endpoint");
    OAuthError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "server_error",
        description: "the server could not check the request".into(),
        detail: detail.to_owned(),
    }
}

/// Checks an access token: one this server issued, or one of the trusted issuer.
pub async fn verify_access_token(auth: &Auth, token: &str) -> Result<Grant, String> {
    let head = decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
    if head.alg == Algorithm::HS256 {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[&auth.audience]);
        validation.set_issuer(&[&auth.token_url]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let claims =
            decode::<AccessClaims>(token, &DecodingKey::from_secret(&auth.secret), &validation)
                .map_err(|e| e.to_string())?
                .claims;
        let scopes = scope::parse_all(&claims.scope)?;
        if claims.gid.is_some() {
            return super::code_grant::person_grant(auth, claims, scopes).await;
        }
        still_registered(auth, &claims, &scopes).await?;
        return Ok(Grant {
            agent: Agent::Client {
                uri: client_uri(&claims.sub),
                id: claims.sub,
                system: CLIENT_SYSTEM.to_owned(),
            },
            scopes,
            patient: claims.patient,
            user: None,
            caseload: None,
        });
    }
    let trusted = auth
        .trusted
        .as_ref()
        .ok_or_else(|| format!("{:?} tokens are not accepted", head.alg))?;
    if !matches!(
        head.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::ES256 | Algorithm::ES384
    ) {
        return Err(format!("{:?} tokens are not accepted", head.alg));
    }
    let kid = head.kid.as_deref().ok_or("the token header has no kid")?;
    let jwk = auth.jwks.key(&trusted.jwks, kid).await?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(head.alg);
    validation.set_audience(&[&auth.audience]);
    validation.set_issuer(&[&trusted.issuer]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    validation.leeway = LEEWAY;
    // RFC 7519 4.1.5: not before `nbf` (with the same leeway as `exp`).
    validation.validate_nbf = true;
    let claims = decode::<TrustedClaims>(token, &key, &validation)
        .map_err(|e| e.to_string())?
        .claims;
    let client_id = claims
        .client_id
        .or(claims.azp)
        .or(claims.sub)
        .ok_or("the token names no client (client_id, azp or sub)")?;
    Ok(Grant {
        agent: Agent::Client {
            uri: format!("{}#{client_id}", trusted.issuer),
            id: client_id,
            // Named under the issuer: its `admin` is not ours.
            system: trusted.issuer.clone(),
        },
        scopes: scope::parse_all(&claims.scope)?,
        patient: claims.patient,
        user: None,
        caseload: None,
    })
}

/// Whether the registration a token was issued under still stands: the client is registered
/// (the same registration: `reg`), for the same patient, with scopes that still cover the
/// token's, and the key it authenticated with is still one of its keys. Read from memory
/// (`Auth::registration`), refreshed every second: removing a client or a key ends its tokens
/// within about a second.
async fn still_registered(
    auth: &Auth,
    claims: &AccessClaims,
    scopes: &[Scope],
) -> Result<(), String> {
    let registration = auth
        .registration(&claims.sub)
        .await
        .map_err(|e| format!("the client registry cannot be read: {e}"))?
        .ok_or_else(|| format!("client '{}' is no longer registered", claims.sub))?;
    let same = registration.created == claims.reg
        && registration.patient == claims.patient
        && scopes
            .iter()
            .all(|s| registration.scopes.iter().any(|r| r.covers(s)));
    if !same {
        return Err(format!(
            "the registration of client '{}' changed since the token was issued",
            claims.sub
        ));
    }
    let key_kept = match (&registration.kids, &registration.jwks_url) {
        (Some(kids), _) => kids.contains(&claims.kid),
        (None, Some(url)) => auth.jwks.may_hold(url, &claims.kid),
        (None, None) => false,
    };
    if !key_kept {
        return Err(format!(
            "key '{}' of client '{}' is no longer registered",
            claims.kid, claims.sub
        ));
    }
    Ok(())
}
