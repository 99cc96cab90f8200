//! The authorization endpoint of SMART App Launch (`GET /auth/authorize`): the authorization
//! code flow (RFC 6749 4.1) with PKCE S256 (RFC 7636; `plain` and a missing challenge are
//! refused), standalone launch and EHR launch (`launch`, a context a host app made with
//! `POST /auth/launch`), a log-in page and a consent page.
//!
//! The client and its redirect URI are checked first: until both are known (the URI exactly
//! one registered for the app), errors are shown on a page here, never redirected, so the
//! endpoint is no open redirector. Every later error goes back to the app with `error` and
//! its `state`. A request in progress lives here for [`PENDING_LIFETIME`], named by a random
//! id; once its user logged in, the consent is accepted only from the browser that logged in
//! (a cookie whose hash the request keeps). Log-in attempts are limited per name, known or not,
//! and a wrong name reads like a wrong password (and takes as long): the page does not tell
//! which names exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::pages;
use super::password::{self, random_bytes};
use super::scope::{self, Context, Scope};
use super::Auth;
use crate::fhir::datetime::now_ms;
use crate::store::users::{GrantRecord, UserRecord};

/// How long a person has to log in and consent, ms.
pub const PENDING_LIFETIME: i64 = 10 * 60 * 1000;
/// How long an authorization code may wait to be redeemed, ms (RFC 6749 4.1.2: at most 10
/// minutes, one recommended).
pub const CODE_LIFETIME: i64 = 60 * 1000;
/// How long an EHR launch context waits for its app, ms.
pub const LAUNCH_LIFETIME: i64 = 5 * 60 * 1000;
/// Failed log-ins under one name before it waits.
pub const FREE_ATTEMPTS: u32 = 5;
/// The first wait after [`FREE_ATTEMPTS`] failures; it doubles with each further failure, up
/// to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// The most requests in progress (and launch contexts) kept: beyond, new ones are refused.
const MAX_PENDING: usize = 10_000;
/// The cookie that binds a logged-in request to its browser.
pub const COOKIE: &str = "signaal_authorize";

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
    pending: Mutex<HashMap<String, Pending>>,
    launches: Mutex<HashMap<String, Launch>>,
    attempts: Mutex<HashMap<String, Attempts>>,
}

#[derive(Clone)]
struct Pending {
    client_id: String,
    app_name: String,
    redirect_uri: String,
    state: String,
    challenge: String,
    nonce: Option<String>,
    /// The scopes asked and allowed for the app.
    scopes: Vec<String>,
    /// The EHR launch's Patient.
    launch_patient: Option<String>,
    expires: i64,
    user: Option<UserRecord>,
    /// SHA-256 of the cookie of the browser that logged in.
    cookie: Option<String>,
    /// The patients a practitioner may pick (when the app asks `launch/patient` standalone).
    picker: Option<Vec<(String, String)>>,
}

/// An EHR launch context.
struct Launch {
    patient: String,
    expires: i64,
}

#[derive(Default)]
struct Attempts {
    failures: u32,
    wait_until: i64,
}

/// The patients of a practitioner's caseload, with a display name each (the HTTP layer reads
/// them from the CareTeams).
#[async_trait]
pub trait Caseload: Send + Sync {
    async fn patients(&self, practitioner: &str) -> Result<Vec<(String, String)>, String>;
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

fn html(status: StatusCode, body: String) -> Response<Body> {
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

/// The consent page's policy: its form posts here and the answer redirects to the app, so
/// `form-action` names the app's registered redirect URI's origin too (CSP 3: browsers check
/// `form-action` against a form submission's redirects as well).
fn consent_form_action(redirect_uri: &str) -> String {
    let origin = url::Url::parse(redirect_uri)
        .map(|u| u.origin().ascii_serialization())
        .ok()
        .filter(|o| o != "null")
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{origin}; \
         frame-ancestors 'none'"
    )
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

pub(super) fn error_page(status: StatusCode, nl: &str, en: &str) -> Response<Body> {
    html(status, pages::error(nl, en))
}

/// A redirect back to the app (`code` or `error`, and `state`).
fn back(redirect_uri: &str, params: &[(&str, &str)]) -> Response<Body> {
    let mut url = url::Url::parse(redirect_uri).expect("registered redirect URIs are URLs");
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
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

fn refuse(pending_uri: &str, state: &str, error: &str, description: &str) -> Response<Body> {
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

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
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
            return answer(
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Signaal kon het verzoek niet controleren.",
                    "Signaal could not check the request.",
                ),
                client,
                format!("store: {e}"),
            );
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
        Some(launch) => {
            let now = now_ms();
            let mut launches = auth.launch.launches.lock().expect("launch lock");
            launches.retain(|_, l| l.expires >= now);
            match launches.remove(&sha256_hex(launch)) {
                Some(l) => Some(l.patient),
                None => return fail("invalid_request", "the launch is unknown or expired"),
            }
        }
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

/// The log-in page of a request, with the link to the OpenID Connect provider if one is
/// configured.
fn login_page(auth: &Auth, request: &str, app: &str, error: Option<(&str, &str)>) -> String {
    let provider = auth.oidc.as_ref().map(|p| {
        (
            format!("{}?request={request}", auth.auth_url("authorize/oidc")),
            p.settings.name.clone(),
        )
    });
    pages::login(
        &auth.auth_url("authorize/login"),
        request,
        app,
        error,
        provider
            .as_ref()
            .map(|(href, name)| (href.as_str(), name.as_str())),
    )
}

/// The app of a request in progress (for the audit trail of the provider's steps).
pub(super) fn pending_client(auth: &Auth, id: &str) -> Option<String> {
    pending(auth, id).map(|p| p.client_id)
}

fn pending(auth: &Auth, id: &str) -> Option<Pending> {
    let now = now_ms();
    let all = auth.launch.pending.lock().expect("pending lock");
    all.get(id).filter(|p| p.expires >= now).cloned()
}

pub(super) fn expired() -> Response<Body> {
    error_page(
        StatusCode::BAD_REQUEST,
        "Deze inlogpoging is verlopen of onbekend. Begin opnieuw vanuit de app.",
        "This log-in has expired or is unknown. Start again from the app.",
    )
}

/// How long a name must still wait before its next attempt, ms (0: it may try).
fn wait_for(auth: &Auth, name: &str, now: i64) -> i64 {
    let attempts = auth.launch.attempts.lock().expect("attempts lock");
    attempts
        .get(name)
        .map_or(0, |a| (a.wait_until - now).max(0))
}

fn failed(auth: &Auth, name: &str, now: i64) {
    let mut attempts = auth.launch.attempts.lock().expect("attempts lock");
    if attempts.len() >= MAX_PENDING {
        attempts.retain(|_, a| a.wait_until > now);
    }
    let a = attempts.entry(name.to_owned()).or_default();
    a.failures += 1;
    if a.failures >= FREE_ATTEMPTS {
        let doublings = (a.failures - FREE_ATTEMPTS).min(10);
        let wait = (FIRST_WAIT * 2u32.pow(doublings)).min(MAX_WAIT);
        a.wait_until = now + wait.as_millis() as i64;
    }
}

/// `POST /auth/authorize/login`: checks the name and password; on success, the consent page
/// (with a patient picker when a practitioner's app asks for a patient and has none).
pub async fn login(auth: &Auth, body: &[u8], caseload: &dyn Caseload) -> Answer {
    let form = form(body);
    let request = field(&form, "request").unwrap_or("");
    let Some(p) = pending(auth, request) else {
        return answer(expired(), None, "log-in: unknown or expired request");
    };
    let client = Some(p.client_id.clone());
    let client = client.as_deref();
    let name = field(&form, "username").unwrap_or("").trim().to_owned();
    let secret = field(&form, "password").unwrap_or("");
    let key = name.to_lowercase();
    let now = now_ms();
    let wait = wait_for(auth, &key, now);
    if wait > 0 {
        let minutes = (wait + 59_999) / 60_000;
        return answer(
            html(
                StatusCode::TOO_MANY_REQUESTS,
                login_page(
                    auth,
                    request,
                    &p.app_name,
                    Some((
                        &format!("Te veel mislukte pogingen. Probeer het over {minutes} minuten opnieuw."),
                        &format!("Too many failed attempts. Try again in {minutes} minutes."),
                    )),
                ),
            ),
            client,
            format!("log-in of '{name}' refused: too many failed attempts"),
        );
    }
    let user = match auth.clients.user(&name).await {
        Ok(user) => user,
        Err(e) => {
            tracing::error!(error = %e, "log-in: reading the user");
            return answer(
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Signaal kon het verzoek niet controleren.",
                    "Signaal could not check the request.",
                ),
                client,
                format!("store: {e}"),
            );
        }
    };
    let ok = match &user {
        Some(u) => {
            let (hash, secret) = (u.password.clone(), secret.to_owned());
            tokio::task::spawn_blocking(move || password::verify(&hash, &secret))
                .await
                .unwrap_or(false)
        }
        None => {
            let secret = secret.to_owned();
            let _ = tokio::task::spawn_blocking(move || password::dummy_verify(&secret)).await;
            false
        }
    };
    let (Some(user), true) = (user, ok) else {
        failed(auth, &key, now);
        return answer(
            html(
                StatusCode::UNAUTHORIZED,
                login_page(
                    auth,
                    request,
                    &p.app_name,
                    Some((
                        "Gebruikersnaam of wachtwoord klopt niet.",
                        "The user name or password is not right.",
                    )),
                ),
            ),
            client,
            format!("log-in of '{name}' refused: unknown name or wrong password"),
        );
    };
    auth.launch
        .attempts
        .lock()
        .expect("attempts lock")
        .remove(&key);
    signed_in(auth, request, user, caseload, "with their password").await
}

/// After a log-in (a password, or the OpenID Connect provider): the patient of the request
/// settled, the browser bound by a cookie, the consent page.
pub(super) async fn signed_in(
    auth: &Auth,
    request: &str,
    user: UserRecord,
    caseload: &dyn Caseload,
    how: &str,
) -> Answer {
    let Some(mut p) = pending(auth, request) else {
        return answer(expired(), None, "log-in: unknown or expired request");
    };
    let client = Some(p.client_id.clone());
    let client = client.as_deref();
    let name = user.id.clone();
    // Whose record: a patient's own; a practitioner's launch patient must be in their caseload.
    let (kind, own) = user.fhir_user.split_once('/').unwrap_or(("", ""));
    let wants_patient = p.scopes.iter().any(|s| s == "launch/patient")
        || p.scopes.iter().any(|s| s.starts_with("patient/"));
    if kind == "Patient" {
        if p.launch_patient.as_deref().is_some_and(|l| l != own) {
            return answer(
                refuse(
                    &p.redirect_uri,
                    &p.state,
                    "access_denied",
                    "the launch's patient is not the user",
                ),
                client,
                format!("user '{name}': launch patient is not their own record"),
            );
        }
        if wants_patient {
            p.launch_patient = Some(own.to_owned());
        }
    } else {
        let patients = match caseload.patients(own).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "log-in: reading the caseload");
                return answer(
                    error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Signaal kon het verzoek niet controleren.",
                        "Signaal could not check the request.",
                    ),
                    client,
                    format!("caseload: {e}"),
                );
            }
        };
        match &p.launch_patient {
            Some(l) if !patients.iter().any(|(id, _)| id == l) => {
                return answer(
                    refuse(
                        &p.redirect_uri,
                        &p.state,
                        "access_denied",
                        "the launch's patient is not in the user's care teams",
                    ),
                    client,
                    format!("user '{name}': launch patient Patient/{l} is not in their caseload"),
                );
            }
            Some(_) => {}
            None if p.scopes.iter().any(|s| s == "launch/patient") => p.picker = Some(patients),
            None => {}
        }
    }
    let cookie = random_token();
    p.cookie = Some(sha256_hex(&cookie));
    p.user = Some(user.clone());
    let scopes = scope::parse_all(&p.scopes.join(" ")).unwrap_or_default();
    let lines = pages::scope_lines(
        &shown(&scopes, p.launch_patient.is_some() || p.picker.is_some()),
        &p.scopes.iter().map(String::as_str).collect::<Vec<_>>(),
        kind == "Patient",
    );
    let page = pages::consent(
        &auth.auth_url("authorize/consent"),
        request,
        &p.app_name,
        &lines,
        p.picker.as_deref(),
        p.launch_patient.as_deref(),
    );
    let form_action = consent_form_action(&p.redirect_uri);
    auth.launch
        .pending
        .lock()
        .expect("pending lock")
        .insert(request.to_owned(), p);
    let mut response = html(StatusCode::OK, page);
    if let Ok(csp) = HeaderValue::from_str(&form_action) {
        response
            .headers_mut()
            .insert("content-security-policy", csp);
    }
    set_cookie(&mut response, auth, COOKIE, &cookie, "authorize", "Strict");
    answer(
        response,
        client,
        format!("user '{name}' ({}) logged in {how}", user.fhir_user),
    )
}

/// The resource scopes that will count: `patient/` ones only with a patient.
fn shown(scopes: &[Scope], with_patient: bool) -> Vec<Scope> {
    scopes
        .iter()
        .filter(|s| s.context == Context::User || (with_patient && s.context == Context::Patient))
        .cloned()
        .collect()
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `POST /auth/authorize/consent`: the person allows or denies; allowed, the app gets its code.
pub async fn consent(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> Answer {
    let form = form(body);
    let request = field(&form, "request").unwrap_or("");
    let Some(p) = pending(auth, request) else {
        return answer(expired(), None, "consent: unknown or expired request");
    };
    let client = Some(p.client_id.clone());
    let client = client.as_deref();
    let (Some(user), Some(expected)) = (&p.user, &p.cookie) else {
        return answer(expired(), client, "consent before log-in");
    };
    // Only the browser that logged in consents (a forged form from elsewhere has no cookie).
    if cookie_of(headers).map(|c| sha256_hex(&c)).as_ref() != Some(expected) {
        return answer(
            error_page(
                StatusCode::FORBIDDEN,
                "Deze toestemming komt niet uit de browser die inlogde.",
                "This consent does not come from the browser that logged in.",
            ),
            client,
            "consent without the log-in's cookie",
        );
    }
    // One decision per request: it is gone from here on.
    auth.launch
        .pending
        .lock()
        .expect("pending lock")
        .remove(request);
    if field(&form, "decision") != Some("allow") {
        return answer(
            refuse(
                &p.redirect_uri,
                &p.state,
                "access_denied",
                "the user denied access",
            ),
            client,
            format!("user '{}' denied access", user.id),
        );
    }
    let mut patient = p.launch_patient.clone();
    if let Some(picker) = &p.picker {
        let chosen = field(&form, "patient").unwrap_or("");
        if !picker.iter().any(|(id, _)| id == chosen) {
            return answer(
                refuse(
                    &p.redirect_uri,
                    &p.state,
                    "access_denied",
                    "no patient of the user's care teams was chosen",
                ),
                client,
                format!("user '{}' chose no patient of their caseload", user.id),
            );
        }
        patient = Some(chosen.to_owned());
    }
    // What is granted: patient/ scopes and launch/patient only with a patient, launch only
    // with an EHR launch.
    let granted: Vec<&str> = p
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| match *s {
            "launch/patient" => patient.is_some(),
            "launch" => p.launch_patient.is_some(),
            s if s.starts_with("patient/") => patient.is_some(),
            _ => true,
        })
        .collect();
    if !granted
        .iter()
        .any(|s| s.contains('/') && *s != "launch/patient")
    {
        return answer(
            refuse(
                &p.redirect_uri,
                &p.state,
                "invalid_scope",
                "no resource scope can be granted without a patient",
            ),
            client,
            "nothing to grant",
        );
    }
    let code = random_token();
    let now = now_ms();
    let record = GrantRecord {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: p.client_id.clone(),
        user_id: user.id.clone(),
        user_since: user.since,
        scope: granted.join(" "),
        patient,
        redirect_uri: p.redirect_uri.clone(),
        code_challenge: p.challenge.clone(),
        nonce: p.nonce.clone(),
        code_hash: sha256_hex(&code),
        code_expires: now + CODE_LIFETIME,
        refresh_expires: None,
        created: now,
        revoked: None,
    };
    if let Err(e) = auth.clients.add_grant(&record).await {
        tracing::error!(error = %e, "consent: storing the grant");
        return answer(
            refuse(
                &p.redirect_uri,
                &p.state,
                "server_error",
                "the grant could not be stored",
            ),
            client,
            format!("store: {e}"),
        );
    }
    answer(
        back(&p.redirect_uri, &[("code", &code), ("state", &p.state)]),
        client,
        format!("user '{}' allowed '{}'", user.id, record.scope),
    )
}

/// `POST /auth/launch` (EHR launch): a host app with access to a Patient makes a launch
/// context for it; the app it launches passes the returned `launch` to `/auth/authorize`.
pub fn make_launch(auth: &Auth, patient: &str) -> Result<String, String> {
    let launch = random_token();
    let now = now_ms();
    let mut launches = auth.launch.launches.lock().expect("launch lock");
    launches.retain(|_, l| l.expires >= now);
    if launches.len() >= MAX_PENDING {
        return Err("too many launches in progress".into());
    }
    launches.insert(
        sha256_hex(&launch),
        Launch {
            patient: patient.to_owned(),
            expires: now + LAUNCH_LIFETIME,
        },
    );
    Ok(launch)
}
