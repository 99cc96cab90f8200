//! Where public keys come from: a client's JWKS (stored at registration, or fetched from its
//! URL and cached by `kid`), or the trusted issuer's (a file or a URL). The HTTP client that
//! fetches them (http, and https with the public web roots and `--jwks-ca`) is the server's one
//! client for other servers: the OpenID Connect provider's metadata and token endpoint too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Pool};
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, JwkSet};

/// A fetched JWKS is used for at most this long before it is fetched again.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the JWKS (key rotation), but not more often than this.
const MIN_REFETCH: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub enum Source {
    /// The JWKS document itself.
    Inline(String),
    File(String),
    Url(String),
}

impl Source {
    /// `http(s)://…` is a URL, anything else a file path (the trusted issuer's `--trusted-jwks`).
    pub fn parse(text: &str) -> Result<Source, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Source::Url(text.to_owned()))
        } else {
            Ok(Source::File(text.to_owned()))
        }
    }
}

/// The TLS settings for `https://` JWKS URLs: the public web roots (Mozilla's, compiled in) and
/// the certificates of `ca_file` (PEM), for keys served under an organisation's own CA.
pub fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the CA file {path}: {e}"))?;
        let mut any = false;
        for cert in certs {
            let cert = cert.map_err(|e| format!("the CA file {path} is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the CA file {path}: {e}"))?;
            any = true;
        }
        if !any {
            return Err(format!("the CA file {path} holds no certificate"));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

struct Fetched {
    set: JwkSet,
    at: Instant,
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// JWKS documents fetched from URLs, by URL.
pub struct Cache {
    fetched: Mutex<HashMap<String, Fetched>>,
    client: Pool<Connector, Full<Bytes>>,
}

impl Cache {
    /// A cache that fetches over `http://` and, with `tls`, `https://`.
    pub fn new(tls: rustls::ClientConfig) -> Cache {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Cache {
            fetched: Mutex::default(),
            client: Pool::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The key `kid` of a source; a URL's JWKS is fetched when it is not cached, older than an
    /// hour, or lacks `kid` (a rotated key).
    pub async fn key(&self, source: &Source, kid: &str) -> Result<Jwk, String> {
        let unknown = || format!("no key with kid '{kid}' in the JWKS");
        match source {
            Source::Inline(text) => parse(text)?.find(kid).cloned().ok_or_else(unknown),
            Source::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read the JWKS file {path}: {e}"))?;
                parse(&text)?.find(kid).cloned().ok_or_else(unknown)
            }
            Source::Url(url) => {
                let refetch = {
                    let fetched = self.fetched.lock().expect("JWKS cache lock");
                    match fetched.get(url) {
                        Some(f) if f.at.elapsed() < MAX_AGE => match f.set.find(kid) {
                            Some(key) => return Ok(key.clone()),
                            None if f.at.elapsed() < MIN_REFETCH => return Err(unknown()),
                            None => true,
                        },
                        _ => true,
                    }
                };
                debug_assert!(refetch);
                let set = self.fetch(url).await?;
                let key = set.find(kid).cloned();
                self.fetched.lock().expect("JWKS cache lock").insert(
                    url.clone(),
                    Fetched {
                        set,
                        at: Instant::now(),
                    },
                );
                key.ok_or_else(unknown)
            }
        }
    }
}

impl Cache {
    /// Whether the JWKS at `url` may still hold `kid`: false once the JWKS as last fetched
    /// lacks it (the client removed the key), true while nothing says otherwise. From memory.
    pub fn may_hold(&self, url: &str, kid: &str) -> bool {
        let fetched = self.fetched.lock().expect("JWKS cache lock");
        fetched.get(url).is_none_or(|f| f.set.find(kid).is_some())
    }
}

pub fn parse(text: &str) -> Result<JwkSet, String> {
    serde_json::from_str(text).map_err(|e| format!("the JWKS is not valid: {e}"))
}

impl Cache {
    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let (status, body) = self.get(url).await.map_err(|e| format!("the JWKS: {e}"))?;
        if status != 200 {
            return Err(format!("fetching the JWKS at {url} answered {status}"));
        }
        parse(&String::from_utf8_lossy(&body))
    }

    /// `GET url`: the status and body (within [`FETCH_TIMEOUT`]).
    pub async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
        let request = axum::http::Request::get(url)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("the URL {url} is not valid: {e}"))?;
        self.send(url, request).await
    }

    /// `POST url` with a form (`application/x-www-form-urlencoded`) and, if given, HTTP Basic
    /// authentication (`user`, `password`), as OAuth clients authenticate (RFC 6749 2.3.1).
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<(u16, Bytes), String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = axum::http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        if let Some((user, password)) = basic {
            use base64::Engine;
            let encode =
                |t: &str| url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(user), encode(password));
            request = request.header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ),
            );
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("the URL {url} is not valid: {e}"))?;
        self.send(url, request).await
    }

    async fn send(
        &self,
        url: &str,
        request: axum::http::Request<Full<Bytes>>,
    ) -> Result<(u16, Bytes), String> {
        let fetching = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("cannot reach {url}: {}", cause(&e)))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("cannot read the answer of {url}: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetching)
            .await
            .map_err(|_| format!("{url} did not answer within {} s", FETCH_TIMEOUT.as_secs()))?
    }
}

/// The innermost cause of a connection error (a TLS certificate problem, say).
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    format!("{e}: {inner}")
}
