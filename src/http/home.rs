//! The base URL as a person meets it: `GET /fhir` (and `/fhir/`, `/`) in a browser gets a small
//! page that says what this is and links to the CapabilityStatement and the docs; a FHIR client
//! (Accept `application/fhir+json`, `_format`) gets the CapabilityStatement (`route.rs`).
//! The reference docs are compiled in and served at `/docs/{page}`, so the links work on any
//! installation.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::error::FhirError;
use crate::http::negotiate::{media_type, Format};
use crate::http::response::error_response;

/// The reference docs served at `/docs/{name}`, in the order the page lists them.
const DOCS: [(&str, &str, &str); 7] = [
    (
        "README.md",
        "Signaal: what it is, a request top to bottom",
        include_str!("../../README.md"),
    ),
    (
        "rest.md",
        "REST: interactions, Bundles, headers",
        include_str!("../../docs/rest.md"),
    ),
    ("search.md", "Search", include_str!("../../docs/search.md")),
    (
        "operations.md",
        "Operations: running Signaal",
        include_str!("../../docs/operations.md"),
    ),
    (
        "security.md",
        "Security: tokens, scopes, audit",
        include_str!("../../docs/security.md"),
    ),
    (
        "scoring.md",
        "Risk scoring",
        include_str!("../../docs/scoring.md"),
    ),
    (
        "development.md",
        "Development",
        include_str!("../../docs/development.md"),
    ),
];

/// Whether the client is a browser rather than a FHIR client: it accepts `text/html` and names
/// none of the JSON types (a FHIR client that also accepts HTML still gets FHIR).
pub fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html = false;
    for range in accept.split(',') {
        let refused = range.split(';').skip(1).any(|p| {
            let p = p.trim().replace(' ', "");
            p.strip_prefix("q=").and_then(|q| q.parse::<f64>().ok()) == Some(0.0)
        });
        match media_type(range).as_str() {
            "text/html" | "application/xhtml+xml" if !refused => html = true,
            "application/fhir+json" | "application/json" | "application/json+fhir" => return false,
            _ => {}
        }
    }
    html
}

/// The page at the base URL, for a browser.
pub fn page(base_url: &str) -> Response<Body> {
    let base = escape(base_url);
    let docs: String = DOCS
        .iter()
        .map(|(name, title, _)| {
            format!("<li><a href=\"/docs/{name}\">{}</a></li>\n", escape(title))
        })
        .collect();
    let html = format!(
        "<!DOCTYPE html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>Signaal FHIR server</title></head>
<body>
<h1>Signaal</h1>
<p>This is a FHIR R4 (4.0.1) server, Signaal {version}. Its FHIR base URL is <code>{base}</code>:
point a FHIR client there. It speaks <code>application/fhir+json</code>.</p>
<ul>
<li><a href=\"{base}/metadata\">CapabilityStatement</a> (<code>GET {base}/metadata</code>): what this server supports</li>
<li><a href=\"/health\">Health</a></li>
</ul>
<h2>Documentation</h2>
<ul>
{docs}</ul>
</body>
</html>
",
        version = env!("CARGO_PKG_VERSION"),
    );
    let mut response = Response::new(Body::from(html));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// `GET /docs/{name}`: one of the reference docs, as Markdown text.
pub async fn doc(name: Result<Path<String>, PathRejection>) -> Response<Body> {
    let name = match name {
        Ok(Path(name)) => name,
        Err(e) => {
            let error = FhirError::invalid(format!("The document name cannot be read: {e}"));
            return error_response(&error, Format::default());
        }
    };
    let Some((_, _, text)) = DOCS.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = DOCS.iter().map(|(n, _, _)| *n).collect();
        let error = FhirError::NotFound(format!(
            "No document {name}; there are {}",
            names.join(", ")
        ));
        return error_response(&error, Format::default());
    };
    let mut response = Response::new(Body::from(*text));
    *response.status_mut() = StatusCode::OK;
    // text/plain rather than text/markdown: browsers show it instead of downloading it.
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
