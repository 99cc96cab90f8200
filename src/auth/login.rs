//! The log-in page of the authorization endpoint (SMART App Launch: the authorization server
//! authenticates the user): `POST /auth/authorize/login` checks a name and password, and a
//! person who logged in goes on to the consent page. Attempts are limited per name
//! ([`super::login_attempts`]), and a wrong name reads like a wrong password (and takes as
//! long): the page does not tell which names exist. The log-in page may also offer the OpenID
//! Connect provider ([`super::oidc`]).

use axum::http::StatusCode;

use super::authorize::{answer, expired, field, form, html, not_checked, pending, Answer};
use super::consent::{signed_in, Caseload};
use super::login_attempts::{failed, succeeded, wait_for};
use super::Auth;
use super::{pages, password};
use crate::fhir::datetime::now_ms;

/// The log-in page of a request, with the link to the OpenID Connect provider if one is
/// configured.
pub(super) fn login_page(
    auth: &Auth,
    request: &str,
    app: &str,
    error: Option<(&str, &str)>,
) -> String {
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

/// `POST /auth/authorize/login`: checks the name and password; on success, the consent page
/// (with a patient picker when a practitioner's app asks for a patient and has none).
pub async fn submit(auth: &Auth, body: &[u8], caseload: &dyn Caseload) -> Answer {
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
            return answer(not_checked(), client, format!("store: {e}"));
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
    succeeded(auth, &key);
    signed_in(auth, request, user, caseload, "with their password").await
}
