//! The rest-hook channel: each notification is POSTed to the subscription's endpoint as
//! `application/fhir+json`, with the channel's headers, within its timeout. Any 2xx is
//! delivered; a redirect is not followed (the endpoint must answer itself), and like any other
//! answer or a timeout it is a failure to retry.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Pool};
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Pool<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client every rest-hook delivery shares: `https` with the public web roots, and `http`
/// (allowed where `config::check_endpoint` allows it).
pub fn client() -> HttpClient {
    let tls = crate::auth::jwks::tls_config(None).expect("the built-in TLS roots load");
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Pool::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// POSTs `body` to `endpoint`; `Err` says why it was not delivered.
pub async fn post(
    client: &HttpClient,
    endpoint: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(endpoint)
        .header(header::CONTENT_TYPE, "application/fhir+json");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request to {endpoint}: {e}"))?;
    let status = tokio::time::timeout(timeout, async {
        let response = client.request(request).await.map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            format!("POST {endpoint} failed: {message}")
        })?;
        let status = response.status();
        // Read the answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<_, String>(status)
    })
    .await
    .map_err(|_| format!("POST {endpoint} took longer than {} s", timeout.as_secs()))??;
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(format!(
            "POST {endpoint} answered {status}: redirects are not followed"
        ))
    } else {
        Err(format!("POST {endpoint} answered {status}"))
    }
}
