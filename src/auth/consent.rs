//! The consent page of the authorization endpoint (SMART App Launch: the user authorizes the
//! app): after a log-in, the patient of the request is settled (a patient's own record, a
//! practitioner's launch patient in their caseload, or a patient picked from it) and the page
//! shows what the app will be able to see and do; `POST /auth/authorize/consent` takes the
//! decision, accepted only from the browser that logged in (a cookie whose hash the request
//! keeps). Allowed, the app gets its authorization code (RFC 6749 4.1.2).

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, StatusCode};

use super::authorize::{
    answer, back, cookie, error_page, expired, field, form, html, not_checked, pending,
    random_token, refuse, set_cookie, sha256_hex, Answer,
};
use super::pages;
use super::scope::{self, Context, Scope};
use super::Auth;
use crate::fhir::datetime::now_ms;
use crate::store::users::{GrantRecord, UserRecord};

/// How long an authorization code may wait to be redeemed, ms (RFC 6749 4.1.2: at most 10
/// minutes, one recommended).
pub const CODE_LIFETIME: i64 = 60 * 1000;
/// The cookie that binds a logged-in request to its browser.
pub const COOKIE: &str = "signaal_authorize";

/// The patients of a practitioner's caseload, with a display name each (the HTTP layer reads
/// them from the CareTeams).
#[async_trait]
pub trait Caseload: Send + Sync {
    async fn patients(&self, practitioner: &str) -> Result<Vec<(String, String)>, String>;
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
                return answer(not_checked(), client, format!("caseload: {e}"));
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

/// `POST /auth/authorize/consent`: the person allows or denies; allowed, the app gets its code.
pub async fn submit(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> Answer {
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
    if cookie(headers, COOKIE).map(|c| sha256_hex(&c)).as_ref() != Some(expected) {
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
