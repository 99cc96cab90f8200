//! The SMART apps Signaal serves itself: static files compiled into the binary and served at
//! `/apps/{app}/{file}` (docs/coach-app.md). Only the files listed here exist: a path is looked
//! up in the table, never joined to a directory, so no request reaches another file. Each answer
//! carries its `Content-Type`, a strict `Content-Security-Policy` (scripts, styles and images
//! from this origin only, no inline code, no framing), and `Cache-Control: no-cache` with an
//! `ETag` (the files are not fingerprinted: a browser revalidates, and gets a 304 while
//! nothing changed).

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::error::FhirError;
use crate::http::negotiate::Format;
use crate::http::response::error_response;

/// One file of an app: its app, its name below the app's path, its media type, its bytes.
struct File {
    app: &'static str,
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file served. `index.html` is also the answer for the app's directory (`/apps/coach/`).
const FILES: &[File] = &[
    File {
        app: "coach",
        name: "index.html",
        content_type: HTML,
        bytes: include_bytes!("../../apps/coach/index.html"),
    },
    File {
        app: "coach",
        name: "app.js",
        content_type: JS,
        bytes: include_bytes!("../../apps/coach/app.js"),
    },
    File {
        app: "coach",
        name: "smart.js",
        content_type: JS,
        bytes: include_bytes!("../../apps/coach/smart.js"),
    },
    File {
        app: "coach",
        name: "fhir.js",
        content_type: JS,
        bytes: include_bytes!("../../apps/coach/fhir.js"),
    },
    File {
        app: "coach",
        name: "plot.js",
        content_type: JS,
        bytes: include_bytes!("../../apps/coach/plot.js"),
    },
    File {
        app: "coach",
        name: "i18n.js",
        content_type: JS,
        bytes: include_bytes!("../../apps/coach/i18n.js"),
    },
    File {
        app: "coach",
        name: "style.css",
        content_type: CSS,
        bytes: include_bytes!("../../apps/coach/style.css"),
    },
    File {
        app: "coach",
        name: "icon.svg",
        content_type: SVG,
        bytes: include_bytes!("../../apps/coach/icon.svg"),
    },
];

/// The policy of every app file. `connect-src` allows this origin and any `https:` origin: the
/// app also runs against another SMART server (`?iss=`), whose discovery, token and FHIR
/// endpoints it calls. Forms post nowhere (the log-in pages are the server's own, reached by
/// navigation), and nothing may frame the app (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' https:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /apps/{app}`: the app's directory, so that relative URLs resolve inside it.
pub async fn app_root(app: Result<Path<String>, PathRejection>) -> Response<Body> {
    let Ok(Path(app)) = app else {
        return not_found("this app");
    };
    if !FILES.iter().any(|f| f.app == app) {
        return not_found(&format!("/apps/{app}"));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(location) = HeaderValue::from_str(&format!("/apps/{app}/")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `GET /apps/{app}/`: the app's page.
pub async fn index(app: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response<Body> {
    match app {
        Ok(Path(app)) => serve(&app, "index.html", &headers),
        Err(_) => not_found("this app"),
    }
}

/// `GET /apps/{app}/{file}`: one of the app's files.
pub async fn file(
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response<Body> {
    match path {
        Ok(Path((app, name))) => serve(&app, &name, &headers),
        Err(_) => not_found("this file"),
    }
}

fn serve(app: &str, name: &str, headers: &HeaderMap) -> Response<Body> {
    let Some((index, file)) = FILES
        .iter()
        .enumerate()
        .find(|(_, f)| f.app == app && f.name == name)
    else {
        return not_found(&format!("/apps/{app}/{name}"));
    };
    let etag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.as_str() || t.trim() == "*")
        });
    let mut response = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(file.bytes));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        r
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The authorization code comes back in the page's URL: never send it on as a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A strong ETag per file: the first 16 bytes of its SHA-256, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|f| {
                let digest = Sha256::digest(f.bytes);
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn not_found(what: &str) -> Response<Body> {
    let error = FhirError::NotFound(format!("No app file at {what}"));
    error_response(&error, Format::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_distinct_name_and_an_etag() {
        for (i, f) in FILES.iter().enumerate() {
            assert!(!f.bytes.is_empty(), "{} is empty", f.name);
            assert!(
                FILES[..i]
                    .iter()
                    .all(|g| (g.app, g.name) != (f.app, f.name)),
                "{} twice",
                f.name
            );
        }
        assert_eq!(etags().len(), FILES.len());
    }
}
