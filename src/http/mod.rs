//! The HTTP layer: reads requests, negotiates formats, dispatches to interactions and writes
//! responses. FHIR semantics live in `interaction`, storage in `store`.

pub mod apps;
pub mod connection;
pub mod home;
pub mod metrics;
pub mod negotiate;
pub mod request;
pub mod response;
pub(crate) mod route;
pub mod smart;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use percent_encoding::percent_decode_str;
use serde_json::json;

use crate::app::App;
use crate::auth::{audit, guard::GuardedStore, Access};
use crate::error::FhirError;
use crate::interaction::{search_parameters, stored_definitions};
use crate::store::time_budget;
use crate::write::Indexing;
use negotiate::{prefer_return, response_format, Format};
use request::{parse_query, FhirRequest};
use response::{error_response, json_response};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        // Each route's other methods get a 405 OperationOutcome naming the ones it takes.
        .route(
            "/health",
            get(health).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/auth/token",
            post(token).fallback(|m: Method, u: Uri| not_allowed(m, u, "POST")),
        )
        .route(
            "/auth/authorize",
            get(smart::authorize).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/auth/authorize/login",
            post(smart::login).fallback(|m: Method, u: Uri| not_allowed(m, u, "POST")),
        )
        .route(
            "/auth/authorize/oidc",
            get(smart::oidc_begin).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/auth/oidc/callback",
            get(smart::oidc_callback).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/auth/authorize/consent",
            post(smart::consent).fallback(|m: Method, u: Uri| not_allowed(m, u, "POST")),
        )
        .route(
            "/auth/revoke",
            post(smart::revoke).fallback(|m: Method, u: Uri| not_allowed(m, u, "POST")),
        )
        .route(
            "/auth/launch",
            post(smart::launch).fallback(|m: Method, u: Uri| not_allowed(m, u, "POST")),
        )
        .route(
            "/auth/jwks",
            get(smart::jwks).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/fhir/.well-known/openid-configuration",
            get(smart::openid_configuration)
                .fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(smart_configuration).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route("/", any(root))
        .route(
            "/docs/{name}",
            get(home::doc).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/apps/{app}",
            get(apps::app_root).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/apps/{app}/",
            get(apps::index).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            "/apps/{app}/{file}",
            get(apps::file).fallback(|m: Method, u: Uri| not_allowed(m, u, "GET, HEAD")),
        )
        .route(
            crate::subscription::websocket::PATH,
            get(crate::subscription::websocket::upgrade)
                .fallback(|m: Method, u: Uri| not_allowed(m, u, "GET")),
        )
        .route("/fhir", any(fhir))
        .route("/fhir/", any(fhir))
        .route("/fhir/{*rest}", any(fhir))
        .fallback(not_found)
        // The FHIR handler enforces its own limit so that it can answer with an OperationOutcome.
        .layer(DefaultBodyLimit::disable())
        // Every response compressed as the client's Accept-Encoding asks (gzip, br).
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn_with_state(app.clone(), log_request))
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match app.store.ping().await {
        Ok(()) => json_response(
            StatusCode::OK,
            Some(&json!({"status": "ok"})),
            Format::default(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the database does not answer");
            let error = FhirError::Unavailable("the database does not answer".into());
            error_response(&error, Format::default())
        }
    }
}

/// `/`: not the FHIR base, but where a person typing the host name lands: the same as
/// `GET /fhir` (the page for a browser, the CapabilityStatement for a FHIR client).
async fn root(
    state: State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let error = FhirError::MethodNotAllowed {
            method: method.to_string(),
            path: "/ (the FHIR base is /fhir)".into(),
            allow: "GET, HEAD",
        };
        return error_response(&error, Format::default());
    }
    fhir(state, method, uri, headers, body).await
}

/// A method a route does not take: 405 with `Allow`.
async fn not_allowed(method: Method, uri: Uri, allow: &'static str) -> Response {
    let error = FhirError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
        allow,
    };
    error_response(&error, Format::default())
}

async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let error = FhirError::NotFound(format!(
        "Nothing here at {}: the FHIR base is /fhir",
        uri.path()
    ));
    error_response(&error, negotiate::error_format(&headers, None, None))
}

/// The request id header: taken from the client when it is sane, else made here; answered in
/// the response and carried by every log line of the request (a tracing span).
const REQUEST_ID: &str = "x-request-id";

/// A client's request id is kept when it is 1 to 64 characters of letters, digits, `-`, `_`,
/// `.` and `:` (a UUID, a trace id); anything else is replaced, so logs cannot be forged.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

/// A new random (version 4) UUID for a request id, from a generator of each thread's own
/// seeded once from the OS: `Uuid::new_v4` asks the OS for every id (a system call a
/// request). Request ids are for following a request through the logs, not secrets.
fn new_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            // Without the OS's randomness, the clock still makes the threads differ.
            if getrandom::fill(&mut seed).is_err() {
                seed = (crate::fhir::datetime::now_ms() as u64).to_le_bytes();
            }
            u64::from_le_bytes(seed)
        });
    }
    // splitmix64: a distinct 64-bit state per call, mixed into two words.
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    let bytes = ((u128::from(next()) << 64) | u128::from(next())).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Gives every request its id and a span carrying it, counts it for `/metrics`, and writes the
/// access log: one line per request (`request method=GET path=/fhir/Patient/1 status=200
/// ms=0.4`, with the request id from the span; target `access`), at info level with
/// `--access-log`, at debug level otherwise.
async fn log_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut request = request;
    let id = request_id(request.headers());
    // The handlers (the AuditEvent) read the id the request goes by from its headers.
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    let span = tracing::info_span!("request", id = %id);
    let started = Instant::now();
    app.metrics.started();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    app.metrics.finished(
        metrics::interaction(&method, &path, status),
        status,
        elapsed,
    );
    let ms = elapsed * 1000.0;
    span.in_scope(|| {
        if app.access_log {
            tracing::info!(target: "access", %method, path, status, ms, "request");
        } else {
            tracing::debug!(target: "access", %method, path, status, ms, "request");
        }
    });
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

async fn fhir(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut params = parse_query(uri.query().unwrap_or(""));
    let take = |params: &mut Vec<(String, String)>, name: &str| {
        let value = params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        params.retain(|(k, _)| k != name);
        value
    };
    let format_param = take(&mut params, "_format");
    let pretty_param = take(&mut params, "_pretty");
    let is_base = path_segments(uri.path()).is_ok_and(|s| s.is_empty());
    if is_base
        && (method == Method::GET || method == Method::HEAD)
        && format_param.is_none()
        && home::wants_html(&headers)
    {
        return home::page(&app.base_url);
    }
    let format = match response_format(&headers, format_param.as_deref(), pretty_param.as_deref()) {
        Ok(format) => format,
        Err(e) => {
            let format =
                negotiate::error_format(&headers, format_param.as_deref(), pretty_param.as_deref());
            return error_response(&e, format);
        }
    };
    let prefer = prefer_return(&headers);
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let recorded = crate::fhir::datetime::now_ms();
    let mut access = Access::Unauthenticated;
    let mut audited: Option<(String, Vec<String>)> = None;
    let result = async {
        let segments = path_segments(uri.path())?;
        audited = Some((method.to_string(), segments.clone()));
        // The CapabilityStatement is public: clients discover how to authorize from it (also
        // at the base URL, where `GET` answers it).
        let capabilities = (segments.len() == 1 && segments[0] == "metadata")
            || (segments.is_empty() && (method == Method::GET || method == Method::HEAD));
        if !capabilities {
            access = app.auth.authenticate(&headers).await?;
            // A practitioner's user/ token: the patients of their CareTeams, as of now.
            access = smart::with_caseload(&app, access.clone()).await?;
        }
        // Reloading the search parameters reads the store as the server, not as the client.
        let root = app.clone();
        // The request searches and writes with the server's search parameters as they are now.
        let indexing = Arc::new(Indexing::new(app.search_params.current()));
        // Everything the request does goes through the store guarded for its grant (an open
        // server's too: the guard records the Provenance of every write).
        let store = match &access {
            // The public CapabilityStatement reads no resource.
            Access::Unauthenticated => app.store.clone(),
            Access::Granted(grant) => Arc::new(GuardedStore::new(
                app.store.clone(),
                grant.clone(),
                indexing.clone(),
            )),
        };
        let app = &App {
            store,
            indexing,
            access: access.clone(),
            ..App::clone(&app)
        };
        let body = read_body(body, &headers, app.body_limit).await?;
        // HEAD is GET without a body (hyper drops the body).
        let method = if method == Method::HEAD {
            Method::GET
        } else {
            method
        };
        let request = FhirRequest {
            method,
            segments,
            params,
            headers,
            body,
        };
        // A request that changed the search parameters (wrote an active SearchParameter)
        // reloads them for the requests after it.
        // Its searches run under the request's time budget (`store::time_budget`).
        let result =
            time_budget::within(app.search_budget.timeout, route::dispatch(app, &request)).await;
        if app.indexing.search_params_changed() {
            search_parameters::reload(&root).await?;
        }
        // Likewise one that wrote or deleted a definition the validator uses.
        let written = app.indexing.definitions_written();
        if !written.is_empty() {
            stored_definitions::reload_written(&root, &written).await?;
        }
        result
    }
    .await;
    let response = match result {
        Ok(response) => response.render(format, prefer),
        Err(error) => error_response(&error, format),
    };
    if let Some((method, segments)) = audited {
        app.auth
            .audit
            .record(audit::Event {
                recorded,
                access,
                method,
                segments,
                query: uri.query().map(str::to_owned),
                status: response.status().as_u16(),
                request_id,
            })
            .await;
    }
    response
}

/// `POST /auth/token` (SMART Backend Services).
async fn token(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let recorded = crate::fhir::datetime::now_ms();
    let (response, claimed, refusal) = match read_body(body, &headers, TOKEN_BODY_LIMIT).await {
        Ok(body) => {
            let answer = crate::auth::token::endpoint(&app.auth, &headers, &body).await;
            (answer.response, answer.claimed, answer.refusal)
        }
        Err(error) => (error_response(&error, Format::default()), None, None),
    };
    // Token requests are audited like every request, granted or refused.
    app.auth
        .audit
        .record(audit::TokenRequest {
            recorded,
            claimed,
            refusal,
            status: response.status().as_u16(),
            endpoint: None,
        })
        .await;
    response
}

/// The largest token request accepted, in bytes (an assertion is a few kilobytes).
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// `GET [base]/.well-known/smart-configuration`.
async fn smart_configuration(State(app): State<Arc<App>>) -> Response {
    let mut response = json_response(
        StatusCode::OK,
        Some(&crate::auth::discovery::smart_configuration(&app.auth)),
        Format::default(),
    );
    // Not a FHIR resource: plain JSON (SMART App Launch, "Conformance").
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The decoded path segments below `/fhir`. A segment that decodes to text with `/` or
/// invalid UTF-8 can never be a type, id or operation name.
fn path_segments(path: &str) -> Result<Vec<String>, FhirError> {
    let rest = path.strip_prefix("/fhir").unwrap_or(path);
    rest.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let decoded = percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| FhirError::invalid("The URL path is not valid UTF-8"))?;
            if decoded.contains('/') {
                return Err(FhirError::invalid(format!(
                    "'{decoded}' is not a valid type, id or operation name"
                )));
            }
            Ok(decoded.into_owned())
        })
        .collect()
}

/// Reads the body up to `limit` bytes; larger bodies get 413 without being read to the end.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, FhirError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(FhirError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(FhirError::PayloadTooLarge { limit })
        }
        Err(e) => match connection::timed_out(e.as_ref()) {
            Some(timeout) => Err(FhirError::RequestTimeout(format!(
                "The request body did not arrive within {} s (the server's body-read-timeout)",
                timeout.as_secs_f64()
            ))),
            None => Err(FhirError::invalid(format!(
                "The request body could not be read: {e}"
            ))),
        },
    }
}
