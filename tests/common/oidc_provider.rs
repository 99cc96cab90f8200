//! A fake OpenID Connect provider (a hospital's identity provider) for `tests/smart_oidc.rs`: a
//! small axum server on a free loopback port with its own RSA key (the `rsa-1` fixture),
//! discovery, an authorization endpoint that sends the browser straight back (the person
//! "logged in"), a token endpoint that checks the client secret, the code and its PKCE
//! verifier, and a JWKS. How its id_tokens go wrong is set per test ([`Tamper`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::{b64, fixture, now, sign, sign_hs256};

pub const CLIENT_ID: &str = "signaal-at-the-hospital";
pub const CLIENT_SECRET: &str = "the hospital gave signaal this secret";

/// How the provider's id_token is made wrong (an attacker's or a broken provider's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    Nothing,
    Nonce,
    Audience,
    Issuer,
    Expired,
    /// Signed with another key under the provider's `kid`.
    Signature,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 keyed with the provider's public key.
    Hs256PublicKey,
}

struct Code {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct Inner {
    issuer: String,
    /// The `sub` of the person who logs in.
    subject: String,
    tamper: Tamper,
    /// An error the authorization endpoint answers with instead of a code.
    error: Option<String>,
    codes: HashMap<String, Code>,
    /// Token requests refused (wrong secret, code or verifier).
    refused: Vec<String>,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub issuer: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            issuer: issuer.clone(),
            subject: "hospital-person-1".into(),
            tamper: Tamper::Nothing,
            error: None,
            codes: HashMap::new(),
            refused: Vec::new(),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        // Lives as long as the test's runtime.
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeProvider { issuer, inner }
    }

    /// A provider's settings for Signaal (`--oidc-issuer …`).
    pub fn settings(&self) -> signaal::auth::oidc::Settings {
        signaal::auth::oidc::Settings {
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            name: "Ziekenhuis Test".into(),
        }
    }

    pub fn log_in_as(&self, subject: &str) {
        self.inner.lock().unwrap().subject = subject.into();
    }

    pub fn tamper(&self, tamper: Tamper) {
        self.inner.lock().unwrap().tamper = tamper;
    }

    pub fn answer_error(&self, error: &str) {
        self.inner.lock().unwrap().error = Some(error.into());
    }

    pub fn refused(&self) -> Vec<String> {
        self.inner.lock().unwrap().refused.clone()
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn discovery(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    let issuer = inner.lock().unwrap().issuer.clone();
    json_reply(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS384"],
            "code_challenge_methods_supported": ["S256"],
        }),
    )
}

async fn jwks() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        fixture("client.jwks.json"),
    )
        .into_response()
}

async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("scope")
            .is_none_or(|s| !s.split(' ').any(|w| w == "openid"))
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let mut back = url::Url::parse(&redirect_uri).unwrap();
    if let Some(error) = inner.error.clone() {
        back.query_pairs_mut()
            .append_pair("error", &error)
            .append_pair("error_description", "the person said no")
            .append_pair("state", &state);
    } else {
        let code = uuid::Uuid::new_v4().simple().to_string();
        inner.codes.insert(
            code.clone(),
            Code {
                nonce: q.get("nonce").cloned().unwrap_or_default(),
                challenge: q.get("code_challenge").cloned().unwrap_or_default(),
                redirect_uri,
            },
        );
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
    }
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut inner = inner.lock().unwrap();
    let refuse = |inner: &mut Inner, status: StatusCode, error: &str, why: &str| {
        inner.refused.push(why.to_owned());
        json_reply(status, json!({"error": error, "error_description": why}))
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            CLIENT_ID,
            url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect::<String>()
        ))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return refuse(
            &mut inner,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "wrong client secret",
        );
    }
    let Some(code) = form.get("code").and_then(|c| inner.codes.remove(c)) else {
        return refuse(
            &mut inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown code",
        );
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if computed != code.challenge || form.get("redirect_uri") != Some(&code.redirect_uri) {
        return refuse(
            &mut inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "PKCE or redirect_uri",
        );
    }
    let t = now();
    let mut claims = json!({
        "iss": inner.issuer,
        "sub": inner.subject,
        "aud": CLIENT_ID,
        "exp": t + 300,
        "iat": t,
        "nonce": code.nonce,
    });
    match inner.tamper {
        Tamper::Nonce => claims["nonce"] = json!("a nonce signaal never sent"),
        Tamper::Audience => claims["aud"] = json!("another-app"),
        Tamper::Issuer => claims["iss"] = json!("https://attacker.example"),
        Tamper::Expired => {
            claims["exp"] = json!(t - 3600);
            claims["iat"] = json!(t - 3900);
        }
        _ => {}
    }
    let id_token = match inner.tamper {
        Tamper::Signature => sign(Algorithm::RS384, "rsa-1", "other-rsa.pem", &claims),
        Tamper::AlgNone => format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": "rsa-1", "typ": "JWT"})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        ),
        Tamper::Hs256PublicKey => sign_hs256(fixture("rsa.pub.pem").as_bytes(), &claims, "rsa-1"),
        _ => sign(Algorithm::RS384, "rsa-1", "rsa.pem", &claims),
    };
    json_reply(
        StatusCode::OK,
        json!({
            "access_token": "hospital-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }),
    )
}
