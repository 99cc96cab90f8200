//! A small HTTP/1.1 keep-alive client for talking to a Signaal server: used by the benchmark
//! command and by the tests, which drive the server over loopback as any client would.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Pool};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request: {0}")]
    Request(String),
    #[error("request failed: {0}")]
    Transport(String),
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Value::Null` when it is empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Client {
    pool: Pool<HttpConnector, Full<Bytes>>,
    base: String,
    /// Called with every reply before it is returned (the tests check every response here).
    check: Option<fn(&Reply)>,
}

impl Client {
    /// A client for the server whose FHIR base is `base` (`http://127.0.0.1:8080/fhir`).
    pub fn new(base: &str) -> Self {
        let pool = Pool::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build_http();
        Client {
            pool,
            base: base.trim_end_matches('/').to_owned(),
            check: None,
        }
    }

    /// The same client, calling `check` with every reply it receives.
    pub fn with_check(mut self, check: fn(&Reply)) -> Self {
        self.check = Some(check);
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; `path` is relative to the FHIR base unless it is an absolute URL.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let mut builder = Request::builder().method(method).uri(&url);
        let has_content_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_content_type {
            builder = builder.header("content-type", "application/fhir+json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let response = self
            .pool
            .request(request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        let reply = Reply {
            status,
            headers,
            body,
        };
        if let Some(check) = self.check {
            check(&reply);
        }
        Ok(reply)
    }

    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send("GET", path, &[], None).await
    }

    pub async fn post(&self, path: &str, resource: &Value) -> Result<Reply, ClientError> {
        self.send("POST", path, &[], Some(resource.to_string().into_bytes()))
            .await
    }

    pub async fn put(&self, path: &str, resource: &Value) -> Result<Reply, ClientError> {
        self.send("PUT", path, &[], Some(resource.to_string().into_bytes()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, ClientError> {
        self.send("DELETE", path, &[], None).await
    }
}
