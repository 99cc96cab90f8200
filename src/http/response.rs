//! What an interaction answers, and how it is written as an HTTP response.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::error::{information, FhirError};
use crate::fhir::datetime::format_http_date;
use crate::fhir::xml;
use crate::http::negotiate::{Format, Return};

/// The answer of an interaction, before content negotiation and `Prefer` are applied.
#[derive(Debug)]
pub struct FhirResponse {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// The body as compact FHIR JSON text, when it was made as text (a stored version,
    /// `meta::stamp_text`): sent as it is when the client asks for compact JSON, parsed for
    /// XML or `_pretty`. At most one of `body` and `text` is set.
    pub text: Option<String>,
    /// `(versionId, lastUpdated ms)` of the resource concerned: `ETag` and `Last-Modified`.
    pub version: Option<(i64, i64)>,
    pub location: Option<String>,
    /// Set on writes: the body may be replaced as `Prefer: return=…` asks, with this message
    /// for `return=OperationOutcome`.
    pub write_outcome: Option<String>,
    /// Further headers (`Content-Location`, `X-Progress` of the asynchronous request pattern).
    pub headers: Vec<(header::HeaderName, String)>,
    /// A body that is no JSON resource (the NDJSON files of a Bulk Data export), sent as is
    /// with the `Content-Type` among `headers`.
    pub raw: Option<Vec<u8>>,
}

impl FhirResponse {
    pub fn new(status: StatusCode, body: Option<Value>) -> Self {
        FhirResponse {
            status,
            body,
            text: None,
            version: None,
            location: None,
            write_outcome: None,
            headers: Vec::new(),
            raw: None,
        }
    }

    /// A response whose body is compact FHIR JSON text (see `text`).
    pub fn with_text(status: StatusCode, text: String) -> Self {
        FhirResponse {
            text: Some(text),
            ..Self::new(status, None)
        }
    }

    /// The body as JSON, whichever way it was made (`None` for text that is no JSON, which
    /// the server never makes).
    pub fn take_body(&mut self) -> Option<Value> {
        match self.body.take() {
            Some(body) => Some(body),
            None => self.text.take().and_then(|t| serde_json::from_str(&t).ok()),
        }
    }

    pub fn ok(body: Value) -> Self {
        Self::new(StatusCode::OK, Some(body))
    }

    pub fn with_version(mut self, version: i64, last_updated: i64) -> Self {
        self.version = Some((version, last_updated));
        self
    }

    pub fn with_location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn written(mut self, message: String) -> Self {
        self.write_outcome = Some(message);
        self
    }

    /// Renders the response as the client negotiated.
    pub fn render(mut self, format: Format, prefer: Return) -> Response<Body> {
        // Text goes out as it is where it is what the client asked for: compact JSON.
        let text = match (&self.write_outcome, prefer) {
            (Some(_), Return::Minimal | Return::OperationOutcome) => None,
            _ if format.is_xml() || format.pretty => None,
            _ => self.text.take(),
        };
        let body = match (&self.write_outcome, prefer) {
            (Some(_), Return::Minimal) => None,
            (Some(message), Return::OperationOutcome) => Some(information(message.clone())),
            _ if text.is_some() => None,
            _ => self.take_body(),
        };
        // 204 cannot carry a body: a deletion answered with an outcome is 200 (http page, delete).
        let status = if self.status == StatusCode::NO_CONTENT && (body.is_some() || text.is_some())
        {
            StatusCode::OK
        } else {
            self.status
        };
        let mut response = match (self.raw, text) {
            (Some(raw), _) => Response::builder()
                .status(status)
                .body(Body::from(raw))
                .unwrap_or_default(),
            (None, Some(text)) => Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, format.content_type())
                .body(Body::from(text))
                .unwrap_or_default(),
            (None, None) => body_response(status, body.as_ref(), format),
        };
        let headers = response.headers_mut();
        if let Some((version, last_updated)) = self.version {
            if let Ok(v) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
                headers.insert(header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format_http_date(last_updated)) {
                headers.insert(header::LAST_MODIFIED, v);
            }
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// A response in the negotiated format (FHIR JSON or FHIR XML), pretty-printed if asked; no body
/// when `body` is `None`.
pub fn body_response(status: StatusCode, body: Option<&Value>, format: Format) -> Response<Body> {
    if !format.is_xml() {
        return json_response(status, body, format);
    }
    let Some(value) = body else {
        return json_response(status, None, format);
    };
    match xml::to_xml(value, format.pretty) {
        Ok(text) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, format.content_type())
            .body(Body::from(text))
            .unwrap_or_default(),
        Err(e) => {
            // What the server built has no XML form: a fault of the server, said in XML.
            tracing::error!(error = %e, "a response body cannot be written as XML");
            let error = FhirError::Internal(format!("the response {e}"));
            let text = xml::to_xml(&error.into_outcome(), format.pretty).unwrap_or_default();
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header(header::CONTENT_TYPE, format.content_type())
                .body(Body::from(text))
                .unwrap_or_default()
        }
    }
}

/// A JSON response, pretty-printed if asked; no body when `body` is `None`.
pub fn json_response(status: StatusCode, body: Option<&Value>, format: Format) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    let body = match body {
        Some(value) => {
            builder = builder.header(header::CONTENT_TYPE, format.content_type());
            let bytes = if format.pretty {
                serde_json::to_vec_pretty(value)
            } else {
                serde_json::to_vec(value)
            };
            Body::from(bytes.unwrap_or_default())
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap_or_default()
}

/// The one place where errors become responses: an `OperationOutcome` with the error's status.
pub fn error_response(error: &FhirError, format: Format) -> Response<Body> {
    let mut response = body_response(error.status(), Some(&error.into_outcome()), format);
    if let FhirError::MethodNotAllowed { allow, .. } = error {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    // A client too slow to send its request gets its connection closed (RFC 9110, 408).
    if let FhirError::RequestTimeout(_) = error {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let FhirError::Unauthorized { challenge, .. } = error {
        if let Ok(value) = HeaderValue::from_str(challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}
