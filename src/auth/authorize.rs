//! The authorization endpoint of SMART App Launch (`GET /auth/authorize`): the authorization
//! code flow (RFC 6749 4.1) with PKCE S256 (RFC 7636; `plain` and a missing challenge are
//! refused), standalone launch and EHR launch (`launch`, a context from [`super::ehr_launch`]).
//! The person then logs in ([`super::login`], or [`super::oidc`]) and consents
//! ([`super::consent`]); this module keeps the request in progress and the responses those
//! steps share.
//!
//! The client and its redirect URI are checked first: until both are known (the URI exactly
//! one registered for the app), errors are shown on a page here, never redirected, so the
//! endpoint is no open redirector. Every later error goes back to the app with `error` and
//! its `state`. A request in progress lives here for [`PENDING_LIFETIME`], named by a random
//! id.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::ehr_launch::{self, Launch};
use super::login::login_page;
use super::login_attempts::Attempts;
use super::pages;
use super::password::random_bytes;
use super::scope::{Context, Scope};
use super::Auth;
use crate::fhir::datetime::now_ms;
use crate::store::users::UserRecord;

/// How long a person has to log in and consent, ms.
pub const PENDING_LIFETIME: i64 = 10 * 60 * 1000;
/// The most requests in progress (and launch contexts) kept: beyond, new ones are refused.
pub(super) const MAX_PENDING: usize = 10_000;

/// The non-resource scopes this server grants.
const WORDS: [&str; 6] = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
];

/// What the endpoint keeps in memory.
#[derive(Default)]
pub struct State {
    pub(super) pending: Mutex<HashMap<String, Pending>>,
    pub(super) launches: Mutex<HashMap<String, Launch>>,
    pub(super) attempts: Mutex<HashMap<String, Attempts>>,
}

#[derive(Clone)]
pub(super) struct Pending {
    pub(super) client_id: String,
    pub(super) app_name: String,
    pub(super) redirect_uri: String,
    pub(super) state: String,
    pub(super) challenge: String,
    pub(super) nonce: Option<String>,
    /// The scopes asked and allowed for the app.
    pub(super) scopes: Vec<String>,
    /// The EHR launch's Patient.
    pub(super) launch_patient: Option<String>,
    pub(super) expires: i64,
    pub(super) user: Option<UserRecord>,
    /// SHA-256 of the cookie of the browser that logged in.
    pub(super) cookie: Option<String>,
    /// The patients a practitioner may pick (when the app asks `launch/patient` standalone).
    pub(super) picker: Option<Vec<(String, String)>>,
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random token (256 bits, base64url).
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

pub(super) fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The pages are never framed (clickjacking of the consent) and load nothing else.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// Sets a log-in cookie (10 minutes, HttpOnly, `Secure` on an https server) scoped to the path
/// of the auth endpoint `endpoint`.
pub(super) fn set_cookie(
    response: &mut Response<Body>,
    auth: &Auth,
    name: &str,
    value: &str,
    endpoint: &str,
    same_site: &str,
) {
    let secure = if auth.audience.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = url::Url::parse(&auth.auth_url(endpoint))
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| format!("/auth/{endpoint}"));
    if let Ok(header_value) = HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age=600{secure}"
    )) {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, header_value);
    }
}

/// The value of the cookie `name` the browser sent.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(super) fn error_page(status: StatusCode, nl: &str, en: &str) -> Response<Body> {
    html(status, pages::error(nl, en))
}

/// A redirect back to the app (`code` or `error`, and `state`).
pub(super) fn back(redirect_uri: &str, params: &[(&str, &str)]) -> Response<Body> {
    let mut url = url::Url::parse(redirect_uri).expect("registered redirect URIs are URLs");
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    redirect(&url)
}

/// A redirect of the browser (302, never cached).
pub(super) fn redirect(url: &url::Url) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn refuse(
    pending_uri: &str,
    state: &str,
    error: &str,
    description: &str,
) -> Response<Body> {
    let mut params = vec![("error", error), ("error_description", description)];
    if !state.is_empty() {
        params.push(("state", state));
    }
    back(pending_uri, &params)
}

/// What a step of the endpoint answers, and what the audit trail records of it.
pub struct Answer {
    pub response: Response<Body>,
    pub client: Option<String>,
    /// What happened (a refusal's reason, or who logged in).
    pub detail: Option<String>,
}

pub(super) fn answer(
    response: Response<Body>,
    client: Option<&str>,
    detail: impl Into<String>,
) -> Answer {
    Answer {
        response,
        client: client.map(str::to_owned),
        detail: Some(detail.into()),
    }
}

impl Auth {
    /// The URL of an endpoint under `/auth`.
    pub fn auth_url(&self, path: &str) -> String {
        format!(
            "{}/{path}",
            self.token_url
                .strip_suffix("/token")
                .unwrap_or(&self.token_url)
        )
    }
}

pub(super) fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(super) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a PKCE challenge or verifier has the RFC 7636 shape: 43 to 128 unreserved characters.
pub fn pkce_shaped(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
}

/// `GET /auth/authorize`.
pub async fn start(auth: &Auth, query: &str) -> Answer {
    let params = form(query.as_bytes());
    // A parameter given twice is refused (RFC 6749 3.1).
    for (i, (k, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(other, _)| other == k) {
            return answer(
                error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("De parameter '{k}' staat er twee keer in."),
                    &format!("The parameter '{k}' is given twice."),
                ),
                None,
                format!("parameter {k} given twice"),
            );
        }
    }
    let get = |name: &str| field(&params, name);
    let Some(client_id) = get("client_id") else {
        return answer(
            error_page(
                StatusCode::BAD_REQUEST,
                "De app noemt zich niet (client_id ontbreekt).",
                "The app does not say who it is (client_id is missing).",
            ),
            None,
            "client_id missing",
        );
    };
    let client_id = client_id.to_owned();
    let client = Some(client_id.as_str());
    let unknown_app = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "Deze app is niet bekend bij Signaal.",
            "This app is not known to Signaal.",
        )
    };
    let registered = match auth.clients.app(&client_id).await {
        Ok(Some(uris)) => uris,
        Ok(None) => {
            return answer(
                unknown_app(),
                client,
                "no app registered with this client_id",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "authorize: reading the app");
            return answer(not_checked(), client, format!("store: {e}"));
        }
    };
    let Some(registration) = auth.registration(&client_id).await.ok().flatten() else {
        return answer(unknown_app(), client, "the app's client is not registered");
    };
    let redirect_uri = get("redirect_uri").unwrap_or("");
    // Exactly a registered URI: anything else is shown here, never redirected to.
    if !registered.split(' ').any(|u| u == redirect_uri) {
        return answer(
            error_page(
                StatusCode::BAD_REQUEST,
                "Het terugkeeradres (redirect_uri) is niet geregistreerd voor deze app.",
                "The return address (redirect_uri) is not registered for this app.",
            ),
            client,
            format!("redirect_uri '{redirect_uri}' is not registered"),
        );
    }
    let redirect_uri = redirect_uri.to_owned();
    let state = get("state").unwrap_or("").to_owned();
    let fail = |error: &str, why: &str| {
        answer(
            refuse(&redirect_uri, &state, error, why),
            client,
            why.to_owned(),
        )
    };
    if state.is_empty() {
        return fail("invalid_request", "state is required");
    }
    if get("response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) if pkce_shaped(c) => {}
        (_, Some(m)) if m != "S256" => {
            return fail("invalid_request", "code_challenge_method must be S256 (plain is not accepted)")
        }
        _ => return fail("invalid_request", "PKCE is required: a code_challenge (43-128 characters) with code_challenge_method S256"),
    }
    let challenge = get("code_challenge").unwrap_or("").to_owned();
    if get("aud") != Some(auth.audience.as_str()) {
        return fail(
            "invalid_request",
            &format!("aud must be this server's FHIR base URL {}", auth.audience),
        );
    }
    // The scopes: resource scopes the app is registered for, and the words this server knows.
    let mut scopes = Vec::new();
    for item in get("scope").unwrap_or("").split_whitespace() {
        match Scope::parse(item) {
            Err(e) => return fail("invalid_scope", &e),
            Ok(Some(asked)) => {
                if asked.context != Context::System
                    && registration.scopes.iter().any(|r| r.covers(&asked))
                    && !scopes.iter().any(|s| s == item)
                {
                    scopes.push(item.to_owned());
                }
            }
            Ok(None) => {
                if WORDS.contains(&item) && !scopes.iter().any(|s| s == item) {
                    scopes.push(item.to_owned());
                }
            }
        }
    }
    if !scopes
        .iter()
        .any(|s| s.contains('/') && s != "launch/patient")
    {
        return fail(
            "invalid_scope",
            "none of the requested resource scopes is allowed for this app",
        );
    }
    let launch_patient = match get("launch") {
        None => None,
        Some(launch) => match ehr_launch::take(auth, launch) {
            Some(patient) => Some(patient),
            None => return fail("invalid_request", "the launch is unknown or expired"),
        },
    };
    let app_name = auth
        .clients
        .client(&client_id)
        .await
        .ok()
        .flatten()
        .map_or_else(|| client_id.clone(), |c| c.name);
    let pending = Pending {
        client_id: client_id.clone(),
        app_name: app_name.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        challenge,
        nonce: get("nonce").map(str::to_owned),
        scopes,
        launch_patient,
        expires: now_ms() + PENDING_LIFETIME,
        user: None,
        cookie: None,
        picker: None,
    };
    let id = random_token();
    {
        let now = now_ms();
        let mut all = auth.launch.pending.lock().expect("pending lock");
        all.retain(|_, p| p.expires >= now);
        if all.len() >= MAX_PENDING {
            return fail(
                "temporarily_unavailable",
                "too many log-ins in progress; try again later",
            );
        }
        all.insert(id.clone(), pending);
    }
    answer(
        html(StatusCode::OK, login_page(auth, &id, &app_name, None)),
        client,
        "log-in page shown",
    )
}

/// The app of a request in progress (for the audit trail of the provider's steps).
pub(super) fn pending_client(auth: &Auth, id: &str) -> Option<String> {
    pending(auth, id).map(|p| p.client_id)
}

pub(super) fn pending(auth: &Auth, id: &str) -> Option<Pending> {
    let now = now_ms();
    let all = auth.launch.pending.lock().expect("pending lock");
    all.get(id).filter(|p| p.expires >= now).cloned()
}

/// The page when a request could not be checked (the store or the caseload failed).
pub(super) fn not_checked() -> Response<Body> {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Signaal kon het verzoek niet controleren.",
        "Signaal could not check the request.",
    )
}

pub(super) fn expired() -> Response<Body> {
    error_page(
        StatusCode::BAD_REQUEST,
        "Deze inlogpoging is verlopen of onbekend. Begin opnieuw vanuit de app.",
        "This log-in has expired or is unknown. Start again from the app.",
    )
}
