//! The token endpoint's grants for people's apps (SMART App Launch): `authorization_code`
//! (with the PKCE verifier) and `refresh_token`; the revocation endpoint (RFC 7009); and the
//! checking of the access tokens they issue.
//!
//! A public app names itself with `client_id` (PKCE binds the code to it); a confidential one
//! authenticates with a signed assertion (`private_key_jwt`), as Backend Services clients do.
//! A code is redeemed once: a second try revokes the grant it made (RFC 6749 4.1.2), which ends
//! the access and refresh tokens issued with it. Access tokens name their grant (`gid`): every
//! request checks that the grant stands and that its user is still the same account (not
//! removed, password not changed), so revocation and `signaal user remove` end them at once.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use base64::Engine;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::authorize::{pkce_shaped, random_token, sha256_hex};
use super::scope::{self, Scope};
use super::token::{
    assertion_client, client_uri, json_reply, not_authenticated, oauth, server_error, sign,
    AccessClaims, OAuthError, TOKEN_LIFETIME,
};
use super::{id_token, password, Agent, Auth, Grant, CLIENT_SYSTEM};
use crate::fhir::datetime::now_ms;
use crate::store::auth::ClientRecord;
use crate::store::users::{GrantRecord, Redeemed, UserRecord};

/// How long a refresh token of `offline_access` lives, ms (rotated at each use).
const OFFLINE_LIFETIME: i64 = 30 * 24 * 3600 * 1000;
/// How long a refresh token of `online_access` lives, ms.
const ONLINE_LIFETIME: i64 = 12 * 3600 * 1000;

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn store_error(e: impl std::fmt::Display) -> OAuthError {
    server_error(&e.to_string())
}

/// The client id and secret of an `Authorization: Basic` header (`client_secret_basic`, RFC
/// 6749 2.3.1: both form-urlencoded before they are joined); `None` without such a header.
pub(super) fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let malformed = || {
        oauth(
            "invalid_client",
            "the Authorization header is not valid Basic credentials",
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| malformed())
    };
    Ok(Some((decode(id)?, decode(secret)?)))
}

/// The app a token request comes from: a confidential one by its assertion
/// (`private_key_jwt`) or its client secret (`client_secret_basic`, `client_secret_post`), a
/// public one by its `client_id`. One method per request (RFC 6749 2.3).
async fn app_client(
    auth: &Auth,
    headers: &HeaderMap,
    form: &[(String, String)],
    claimed: &mut Option<String>,
) -> Result<ClientRecord, OAuthError> {
    let basic = basic_credentials(headers)?;
    let posted = field(form, "client_secret");
    let assertion = field(form, "client_assertion").is_some();
    if u8::from(basic.is_some()) + u8::from(posted.is_some()) + u8::from(assertion) > 1 {
        return Err(oauth(
            "invalid_request",
            "the client authenticates with one method only (an assertion, Basic credentials or client_secret)",
        ));
    }
    let client = if assertion {
        assertion_client(auth, form, claimed).await?.0
    } else if let Some((id, secret)) = basic {
        if field(form, "client_id").is_some_and(|f| f != id) {
            return Err(oauth(
                "invalid_request",
                "client_id is not the client of the Basic credentials",
            ));
        }
        *claimed = Some(id.clone());
        secret_client(auth, &id, &secret).await?
    } else if let Some(secret) = posted {
        let id = field(form, "client_id")
            .ok_or_else(|| oauth("invalid_client", "client_id is required with client_secret"))?;
        *claimed = Some(id.to_owned());
        secret_client(auth, id, secret).await?
    } else {
        let id = field(form, "client_id").ok_or_else(|| {
            oauth(
                "invalid_client",
                "client_id (or a client assertion) is required",
            )
        })?;
        *claimed = Some(id.to_owned());
        let client = auth
            .clients
            .client(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_authenticated(format!("no client '{id}' is registered")))?;
        if client.jwks.is_some() || client.jwks_url.is_some() {
            return Err(not_authenticated(format!(
                "client '{id}' is confidential: it authenticates with a client assertion"
            )));
        }
        if auth
            .clients
            .app_secret(id)
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Err(not_authenticated(format!(
                "client '{id}' is confidential: it authenticates with its client secret"
            )));
        }
        client
    };
    if auth
        .clients
        .app(&client.id)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(not_authenticated(format!(
            "client '{}' is not an app (no redirect URI registered)",
            client.id
        )));
    }
    Ok(client)
}

/// An app that authenticates with its client secret. The secret is always checked against an
/// Argon2id hash — the app's, or one no secret matches when the client is unknown or has no
/// secret — so the answer takes as long whichever it was, and reads the same.
async fn secret_client(auth: &Auth, id: &str, secret: &str) -> Result<ClientRecord, OAuthError> {
    let client = auth.clients.client(id).await.map_err(store_error)?;
    let hash = match &client {
        Some(_) => auth.clients.app_secret(id).await.map_err(store_error)?,
        None => None,
    };
    let secret = secret.to_owned();
    let known = hash.is_some();
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => password::verify(&hash, &secret),
        None => {
            password::dummy_verify(&secret);
            false
        }
    })
    .await
    .unwrap_or(false);
    match client {
        Some(client) if ok => Ok(client),
        None => Err(not_authenticated(format!("no client '{id}' is registered"))),
        Some(_) if !known => Err(not_authenticated(format!(
            "client '{id}' has no client secret"
        ))),
        Some(_) => Err(not_authenticated(format!(
            "the client secret of '{id}' is wrong"
        ))),
    }
}

/// The grant types `authorization_code` and `refresh_token`.
pub(super) async fn issue(
    auth: &Auth,
    headers: &HeaderMap,
    form: &[(String, String)],
    claimed: &mut Option<String>,
) -> Result<Value, OAuthError> {
    let client = app_client(auth, headers, form, claimed).await?;
    let now = now_ms();
    if field(form, "grant_type") == Some("refresh_token") {
        let token = field(form, "refresh_token")
            .ok_or_else(|| oauth("invalid_request", "refresh_token is missing"))?;
        let grant = auth
            .clients
            .grant_by_refresh(&sha256_hex(token), now)
            .await
            .map_err(store_error)?
            .filter(|g| g.client_id == client.id)
            .ok_or_else(|| {
                oauth(
                    "invalid_grant",
                    "the refresh token is unknown, expired or revoked",
                )
            })?;
        let user = same_user(auth, &grant).await?;
        let scope = match field(form, "scope") {
            None => grant.scope.clone(),
            Some(asked) => {
                let held: Vec<&str> = grant.scope.split(' ').collect();
                if asked.split_whitespace().any(|s| !held.contains(&s)) {
                    return Err(oauth(
                        "invalid_scope",
                        "a refresh may ask only for scopes of the original grant",
                    ));
                }
                asked.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        };
        return tokens(auth, &client, &grant, &user, &scope, false).await;
    }
    let code = field(form, "code").ok_or_else(|| oauth("invalid_request", "code is missing"))?;
    let grant = match auth
        .clients
        .redeem_code(&sha256_hex(code), now)
        .await
        .map_err(store_error)?
    {
        Redeemed::Fresh(grant) => grant,
        Redeemed::Spent(gid) => {
            // A code used twice was stolen, or the first use was: end what it gave.
            auth.clients
                .revoke_grant(&gid, now)
                .await
                .map_err(store_error)?;
            tracing::warn!(
                grant = gid,
                "authorization code used again: its grant is revoked"
            );
            return Err(oauth(
                "invalid_grant",
                "the code was used before or has expired; the tokens issued with it are revoked",
            ));
        }
        Redeemed::Unknown => return Err(oauth("invalid_grant", "the code is not known")),
    };
    if grant.client_id != client.id {
        auth.clients
            .revoke_grant(&grant.id, now)
            .await
            .map_err(store_error)?;
        return Err(oauth(
            "invalid_grant",
            "the code was issued to another client",
        ));
    }
    if field(form, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
        auth.clients
            .revoke_grant(&grant.id, now)
            .await
            .map_err(store_error)?;
        return Err(oauth(
            "invalid_grant",
            "redirect_uri is not the one the code was issued for",
        ));
    }
    let verifier = field(form, "code_verifier").unwrap_or("");
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if !pkce_shaped(verifier) || computed != grant.code_challenge {
        auth.clients
            .revoke_grant(&grant.id, now)
            .await
            .map_err(store_error)?;
        return Err(oauth(
            "invalid_grant",
            "code_verifier does not match the code_challenge (PKCE S256)",
        ));
    }
    let user = same_user(auth, &grant).await?;
    let scope = grant.scope.clone();
    tokens(auth, &client, &grant, &user, &scope, true).await
}

/// The grant's user, if still the same account.
async fn same_user(auth: &Auth, grant: &GrantRecord) -> Result<UserRecord, OAuthError> {
    auth.clients
        .user(&grant.user_id)
        .await
        .map_err(store_error)?
        .filter(|u| u.since == grant.user_since)
        .ok_or_else(|| {
            oauth(
                "invalid_grant",
                "the user's account was removed or its password changed",
            )
        })
}

/// The token response: an access token, a (rotated) refresh token for `offline_access` or
/// `online_access`, and an id_token for `openid fhirUser` on the first exchange.
async fn tokens(
    auth: &Auth,
    client: &ClientRecord,
    grant: &GrantRecord,
    user: &UserRecord,
    scope: &str,
    first: bool,
) -> Result<Value, OAuthError> {
    let words: Vec<&str> = scope.split(' ').collect();
    let now = now_ms() / 1000;
    let access = AccessClaims {
        iss: auth.token_url.clone(),
        sub: client.id.clone(),
        aud: auth.audience.clone(),
        exp: now + TOKEN_LIFETIME,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        scope: scope.to_owned(),
        patient: grant.patient.clone(),
        reg: client.created,
        kid: String::new(),
        gid: Some(grant.id.clone()),
        fhir_user: Some(user.fhir_user.clone()),
    };
    let mut answer = json!({
        "access_token": sign(auth, &access)?,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "scope": scope,
    });
    if let Some(patient) = &grant.patient {
        answer["patient"] = json!(patient);
    }
    let lifetime = if words.contains(&"offline_access") {
        Some(OFFLINE_LIFETIME)
    } else if words.contains(&"online_access") {
        Some(ONLINE_LIFETIME)
    } else {
        None
    };
    if let Some(lifetime) = lifetime {
        let refresh = random_token();
        auth.clients
            .set_refresh(&grant.id, &sha256_hex(&refresh), now_ms() + lifetime)
            .await
            .map_err(store_error)?;
        answer["refresh_token"] = json!(refresh);
    }
    if first && words.contains(&"openid") && words.contains(&"fhirUser") {
        let id = id_token::issue(
            auth,
            &client.id,
            &user.id,
            &user.fhir_user,
            grant.nonce.as_deref(),
        )
        .await
        .map_err(|e| server_error(&e))?;
        answer["id_token"] = json!(id);
    }
    tracing::info!(
        client = client.id,
        user = user.id,
        scope,
        "access token issued for a person"
    );
    Ok(answer)
}

/// Checks a person's access token beyond its signature: its client's registration stands and
/// covers its scopes, its grant is not revoked, its user is the same account.
pub(super) async fn person_grant(
    auth: &Auth,
    claims: AccessClaims,
    scopes: Vec<Scope>,
) -> Result<Grant, String> {
    let gid = claims.gid.clone().unwrap_or_default();
    let registration = auth
        .registration(&claims.sub)
        .await
        .map_err(|e| format!("the client registry cannot be read: {e}"))?
        .ok_or_else(|| format!("client '{}' is no longer registered", claims.sub))?;
    if registration.created != claims.reg
        || !scopes
            .iter()
            .all(|s| registration.scopes.iter().any(|r| r.covers(s)))
    {
        return Err(format!(
            "the registration of client '{}' changed since the token was issued",
            claims.sub
        ));
    }
    let grant = auth
        .clients
        .grant(&gid)
        .await
        .map_err(|e| format!("the grants cannot be read: {e}"))?
        .filter(|g| g.revoked.is_none() && g.client_id == claims.sub)
        .ok_or("the grant this token was issued under was revoked")?;
    let user = auth
        .clients
        .user(&grant.user_id)
        .await
        .map_err(|e| format!("the users cannot be read: {e}"))?
        .filter(|u| u.since == grant.user_since)
        .ok_or("the user's account was removed or its password changed")?;
    let own = user.fhir_user.strip_prefix("Patient/").map(str::to_owned);
    // A person's user/ grant is confined to a caseload: a patient's own record; a
    // practitioner's CareTeams' patients, which the HTTP layer reads (none until it does).
    let caseload: Option<Arc<[String]>> = match (&claims.patient, own) {
        (Some(_), _) => None,
        (None, Some(own)) => Some(Arc::from(vec![own])),
        (None, None) => Some(Arc::from(Vec::new())),
    };
    Ok(Grant {
        agent: Agent::Client {
            uri: client_uri(&claims.sub),
            id: claims.sub,
            system: CLIENT_SYSTEM.to_owned(),
        },
        scopes,
        patient: claims.patient,
        user: Some(user.fhir_user),
        caseload,
    })
}

/// How a revocation request ended, for its AuditEvent.
pub struct Revocation {
    pub response: Response<Body>,
    pub claimed: Option<String>,
    pub refusal: Option<String>,
}

/// `POST /auth/revoke` (RFC 7009): an app ends a refresh token or access token of its own, and
/// with it the grant they belong to. Unknown tokens are answered alike (200).
pub async fn revoke(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> Revocation {
    let mut claimed = None;
    let result = async {
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
        let token = field(&form, "token")
            .ok_or_else(|| oauth("invalid_request", "token is missing"))?
            .to_owned();
        let client = app_client(auth, headers, &form, &mut claimed).await?;
        let gid = match grant_of_access_token(auth, &token) {
            Some(gid) => Some(gid),
            None => auth
                .clients
                .grant_by_refresh(&sha256_hex(&token), i64::MIN)
                .await
                .map_err(store_error)?
                .map(|g| g.id),
        };
        let mut revoked = false;
        if let Some(gid) = gid {
            let grant = auth.clients.grant(&gid).await.map_err(store_error)?;
            if grant.is_some_and(|g| g.client_id == client.id) {
                revoked = auth
                    .clients
                    .revoke_grant(&gid, now_ms())
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(revoked)
    }
    .await;
    match result {
        Ok(revoked) => {
            let mut response = Response::new(Body::empty());
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Revocation {
                response,
                claimed,
                refusal: (!revoked).then(|| "no live grant of this client has that token".into()),
            }
        }
        Err(e) => {
            let mut response = json_reply(
                e.status,
                &json!({"error": e.code, "error_description": e.description}),
            );
            if e.status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge(headers));
            }
            Revocation {
                response,
                claimed,
                refusal: Some(e.detail),
            }
        }
    }
}

/// The `WWW-Authenticate` of an `invalid_client` answer: the scheme the client used (RFC 6749
/// 5.2), Basic for Basic credentials.
pub(super) fn challenge(headers: &HeaderMap) -> HeaderValue {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("basic "));
    if basic {
        HeaderValue::from_static("Basic realm=\"signaal\", charset=\"UTF-8\"")
    } else {
        HeaderValue::from_static("Bearer error=\"invalid_client\"")
    }
}

/// The grant an access token of ours names (its signature checked, its expiry not: an expired
/// token still names the grant to revoke).
fn grant_of_access_token(auth: &Auth, token: &str) -> Option<String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[&auth.audience]);
    validation.set_issuer(&[&auth.token_url]);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["aud", "iss", "sub"]);
    decode::<AccessClaims>(token, &DecodingKey::from_secret(&auth.secret), &validation)
        .ok()?
        .claims
        .gid
}

/// Parses the scopes of a grant (for the HTTP layer's caseload).
pub fn resource_scopes(text: &str) -> Vec<Scope> {
    scope::parse_all(text).unwrap_or_default()
}
