//! The HTTP side of SMART App Launch: the authorization endpoint's pages (`/auth/authorize`),
//! token revocation (`/auth/revoke`), EHR launch contexts (`/auth/launch`), the id_token key
//! (`/auth/jwks`) and OpenID discovery; and the caseload a practitioner's `user/` token is
//! confined to, read from the CareTeams for each request.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::authorize;
use crate::auth::consent::{self, Caseload};
use crate::auth::guard::GuardedStore;
use crate::auth::{audit, code_grant, discovery, ehr_launch, id_token, login, oidc, Access, Grant};
use crate::error::FhirError;
use crate::interaction::worklist;
use crate::write::Indexing;

use super::negotiate::Format;
use super::read_body;
use super::response::{error_response, json_response};

/// The largest form accepted by these endpoints, in bytes.
const FORM_LIMIT: usize = 16 * 1024;

/// A practitioner's patients: those of the CareTeams they take part in (`$worklist`'s).
struct CareTeams<'a>(&'a App);

#[async_trait]
impl Caseload for CareTeams<'_> {
    async fn patients(&self, practitioner: &str) -> Result<Vec<(String, String)>, String> {
        let ids = worklist::caseload(self.0, practitioner)
            .await
            .map_err(|e| e.to_string())?;
        let keys: Vec<(String, String)> = ids
            .iter()
            .map(|id| ("Patient".into(), id.clone()))
            .collect();
        let found = self
            .0
            .store
            .read_current(&keys)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let name = found
                    .iter()
                    .find(|h| h.version.id == id)
                    .and_then(|h| h.version.content.as_deref())
                    .and_then(|c| serde_json::from_str::<Value>(c).ok())
                    .map(|p| display_name(&p))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| id.clone());
                (id, name)
            })
            .collect())
    }
}

/// A Patient's first name as people read it: given names, then family name (or its text).
fn display_name(patient: &Value) -> String {
    let Some(name) = patient["name"].get(0) else {
        return String::new();
    };
    if let Some(text) = name["text"].as_str() {
        return text.to_owned();
    }
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(family) = name["family"].as_str() {
        parts.push(family);
    }
    parts.join(" ")
}

/// A person's grant with its caseload read: a practitioner's `user/` token sees the patients
/// of their CareTeams as they are at this request.
pub async fn with_caseload(app: &App, access: Access) -> Result<Access, FhirError> {
    let Access::Granted(grant) = &access else {
        return Ok(access);
    };
    // A patient a practitioner picked (or an EHR launch named) must still be in their
    // caseload: leaving the CareTeam ends the patient-bound token at its next request.
    if let (Some(patient), Some(practitioner)) = (
        grant.patient.as_deref(),
        grant
            .user
            .as_deref()
            .and_then(|u| u.strip_prefix("Practitioner/")),
    ) {
        let patients = worklist::caseload(app, practitioner).await?;
        if !patients.iter().any(|p| p == patient) {
            return Err(FhirError::Forbidden(format!(
                "Patient/{patient} is no longer in the caseload of Practitioner/{practitioner} \
                 (the patients of the CareTeams they take part in)"
            )));
        }
        return Ok(access);
    }
    let practitioner = match (&grant.caseload, grant.user.as_deref()) {
        (Some(_), Some(user)) => user.strip_prefix("Practitioner/"),
        _ => None,
    };
    let Some(practitioner) = practitioner else {
        return Ok(access);
    };
    let patients = worklist::caseload(app, practitioner).await?;
    Ok(Access::Granted(Arc::new(Grant {
        caseload: Some(Arc::from(patients)),
        ..Grant::clone(grant)
    })))
}

async fn record(
    app: &App,
    endpoint: &'static str,
    client: Option<String>,
    detail: Option<String>,
    status: u16,
    refused: bool,
) {
    app.auth
        .audit
        .record(audit::TokenRequest {
            recorded: crate::fhir::datetime::now_ms(),
            claimed: client,
            refusal: detail.map(|d| if refused { d } else { format!("ok: {d}") }),
            status,
            endpoint: Some(endpoint),
        })
        .await;
}

/// `GET /auth/authorize`.
pub async fn authorize(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let answer = authorize::start(&app.auth, uri.query().unwrap_or("")).await;
    finish(&app, "GET /auth/authorize", answer).await
}

async fn finish(app: &App, endpoint: &'static str, answer: authorize::Answer) -> Response {
    let status = answer.response.status();
    let refused = status.is_client_error()
        || status.is_server_error()
        || answer
            .response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.contains("error="));
    record(
        app,
        endpoint,
        answer.client,
        answer.detail,
        status.as_u16(),
        refused,
    )
    .await;
    answer.response
}

/// `POST /auth/authorize/login`.
pub async fn login(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, &headers, FORM_LIMIT).await {
        Ok(body) => body,
        Err(e) => return error_response(&e, Format::default()),
    };
    let answer = login::submit(&app.auth, &body, &CareTeams(&app)).await;
    finish(&app, "POST /auth/authorize/login", answer).await
}

/// `GET /auth/authorize/oidc`: log in through the OpenID Connect provider.
pub async fn oidc_begin(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let answer = oidc::begin(&app.auth, uri.query().unwrap_or("")).await;
    finish(&app, "GET /auth/authorize/oidc", answer).await
}

/// `GET /auth/oidc/callback`: the OpenID Connect provider's answer.
pub async fn oidc_callback(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let answer = oidc::callback(
        &app.auth,
        &headers,
        uri.query().unwrap_or(""),
        &CareTeams(&app),
    )
    .await;
    finish(&app, "GET /auth/oidc/callback", answer).await
}

/// `POST /auth/authorize/consent`.
pub async fn consent(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, &headers, FORM_LIMIT).await {
        Ok(body) => body,
        Err(e) => return error_response(&e, Format::default()),
    };
    let answer = consent::submit(&app.auth, &headers, &body).await;
    finish(&app, "POST /auth/authorize/consent", answer).await
}

/// `POST /auth/revoke` (RFC 7009).
pub async fn revoke(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, &headers, FORM_LIMIT).await {
        Ok(body) => body,
        Err(e) => return error_response(&e, Format::default()),
    };
    let answer = code_grant::revoke(&app.auth, &headers, &body).await;
    let status = answer.response.status().as_u16();
    let refused = answer.refusal.is_some();
    record(
        &app,
        "POST /auth/revoke",
        answer.claimed,
        answer.refusal.or(Some("grant revoked".into())),
        status,
        refused,
    )
    .await;
    answer.response
}

/// `POST /auth/launch` (EHR launch): a host app with a token that may read `Patient/{patient}`
/// makes a launch context for it.
pub async fn launch(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let access = app.auth.authenticate(&headers).await?;
        let access = with_caseload(&app, access).await?;
        let Access::Granted(grant) = access else {
            return Err(FhirError::Forbidden(
                "a launch needs an access token".into(),
            ));
        };
        let body = read_body(body, &headers, FORM_LIMIT).await?;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let patient = form
            .iter()
            .find(|(k, _)| k == "patient")
            .map(|(_, v)| v.strip_prefix("Patient/").unwrap_or(v).to_owned())
            .ok_or_else(|| FhirError::invalid("patient is required (a Patient id)"))?;
        crate::interaction::check_id(&patient)?;
        let store = GuardedStore::new(
            app.store.clone(),
            grant.clone(),
            Arc::new(Indexing::new(app.search_params.current())),
        );
        match crate::store::Store::read(&store, "Patient", &patient).await? {
            Some(v) if !v.deleted() => {}
            _ => {
                return Err(FhirError::NotFound(format!(
                    "Patient/{patient} is not known"
                )))
            }
        }
        let launch =
            ehr_launch::make_launch(&app.auth, &patient).map_err(FhirError::Unavailable)?;
        Ok(json!({"launch": launch, "patient": patient}))
    }
    .await;
    match result {
        Ok(body) => plain_json(&body),
        Err(e) => error_response(&e, Format::default()),
    }
}

fn plain_json(body: &Value) -> Response {
    let mut response = json_response(StatusCode::OK, Some(body), Format::default());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /auth/jwks`: the key id_tokens are signed with.
pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    match id_token::jwks(&app.auth).await {
        Ok(body) => plain_json(&body),
        Err(e) => {
            tracing::error!(error = e, "the id_token key");
            error_response(
                &FhirError::Unavailable("the id_token key is not available".into()),
                Format::default(),
            )
        }
    }
}

/// `GET [base]/.well-known/openid-configuration`.
pub async fn openid_configuration(State(app): State<Arc<App>>) -> Response {
    plain_json(&discovery::openid_configuration(&app.auth))
}
