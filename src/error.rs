//! Every failure a request can meet, and the one place where it becomes an `OperationOutcome`.
//!
//! Interactions return `FhirError`; the HTTP layer calls [`FhirError::into_outcome`] and never
//! builds an error body of its own, so status codes and issue codes stay consistent.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::store::StoreError;

/// One `OperationOutcome.issue`: what went wrong, and where (`expression`) when we know.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: &'static str,
    /// A code from http://hl7.org/fhir/issue-type (`invalid`, `structure`, `not-found`, ...).
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: "error",
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }
}

/// Builds an `OperationOutcome` from issues.
pub fn outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// An informational `OperationOutcome` with a single issue (for `Prefer: return=OperationOutcome`).
pub fn information(diagnostics: impl Into<String>) -> Value {
    outcome(&[Issue {
        severity: "information",
        code: "informational",
        diagnostics: diagnostics.into(),
        expression: None,
    }])
}

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// The request or its body does not follow FHIR's rules (400).
    #[error("{}", first_diagnostics(.0))]
    Invalid(Vec<Issue>),
    /// A business rule or profile was violated (422).
    #[error("{}", first_diagnostics(.0))]
    Unprocessable(Vec<Issue>),
    #[error("Unknown resource type '{0}'")]
    UnknownType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("Method {method} is not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    /// Too much of one kind of work runs already (Bulk Data: too many exports); try later.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("The request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A request over another limit of the server (Bundle entries) (413).
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    NotSupported(String),
    /// The database is temporarily unable to answer (pool exhausted, server shutting down).
    #[error("{0}")]
    Unavailable(String),
    #[error("Internal error: {0}")]
    Internal(String),
    /// No valid access token (401, with `WWW-Authenticate`); `challenge` is the header value.
    #[error("{message}")]
    Unauthorized { message: String, challenge: String },
    /// The access token does not allow this request (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request line or a header cannot be read as HTTP (400).
    #[error("{0}")]
    MalformedRequest(String),
    /// The request URL is longer than the server reads (414).
    #[error("{0}")]
    UriTooLong(String),
    /// The request's headers are larger, or more, than the server reads (431).
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The client did not send the request (its body) within the server's time (408).
    #[error("{0}")]
    RequestTimeout(String),
}

fn first_diagnostics(issues: &[Issue]) -> String {
    issues
        .first()
        .map(|i| i.diagnostics.clone())
        .unwrap_or_default()
}

impl FhirError {
    /// A 400 with one `invalid` issue.
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        FhirError::Invalid(vec![Issue::error("invalid", diagnostics)])
    }

    /// A 400 with one issue that names the element at fault.
    pub fn invalid_at(
        code: &'static str,
        diagnostics: impl Into<String>,
        expr: impl Into<String>,
    ) -> Self {
        FhirError::Invalid(vec![Issue::error(code, diagnostics).at(expr)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FhirError::Invalid(_) => StatusCode::BAD_REQUEST,
            FhirError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            FhirError::UnknownType(_) | FhirError::NotFound(_) => StatusCode::NOT_FOUND,
            FhirError::Gone(_) => StatusCode::GONE,
            FhirError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            FhirError::Conflict(_) => StatusCode::CONFLICT,
            FhirError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            FhirError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            FhirError::PayloadTooLarge { .. } | FhirError::TooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            FhirError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FhirError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            FhirError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            FhirError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FhirError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            FhirError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            FhirError::Forbidden(_) => StatusCode::FORBIDDEN,
            FhirError::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            FhirError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            FhirError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            FhirError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The issues this error reports, with codes from http://hl7.org/fhir/issue-type.
    pub fn issues(&self) -> Vec<Issue> {
        let code = match self {
            FhirError::Invalid(issues) | FhirError::Unprocessable(issues) => return issues.clone(),
            FhirError::UnknownType(_) => "not-supported",
            FhirError::NotFound(_) => "not-found",
            FhirError::Gone(_) => "deleted",
            FhirError::MethodNotAllowed { .. } => "not-supported",
            FhirError::Conflict(_) => "conflict",
            FhirError::TooManyRequests(_) => "throttled",
            FhirError::PreconditionFailed(_) => "conflict",
            FhirError::PayloadTooLarge { .. } | FhirError::TooLarge(_) => "too-costly",
            FhirError::UnsupportedMediaType(_) | FhirError::NotAcceptable(_) => "not-supported",
            FhirError::NotSupported(_) => "not-supported",
            FhirError::Unavailable(_) => "transient",
            FhirError::Internal(_) => "exception",
            FhirError::Unauthorized { .. } => "login",
            FhirError::Forbidden(_) => "forbidden",
            FhirError::MalformedRequest(_) => "structure",
            FhirError::UriTooLong(_) | FhirError::HeadersTooLarge(_) => "too-long",
            FhirError::RequestTimeout(_) => "timeout",
        };
        vec![Issue::error(code, self.to_string())]
    }

    pub fn into_outcome(&self) -> Value {
        outcome(&self.issues())
    }
}

impl From<StoreError> for FhirError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) | StoreError::HandledElsewhere(msg) => {
                FhirError::Conflict(msg)
            }
            StoreError::Unavailable(msg) => FhirError::Unavailable(msg),
            StoreError::Forbidden(msg) => FhirError::Forbidden(msg),
            // (R4 update: 405 when the resource did not exist and client ids are not allowed.)
            StoreError::ClientIdNotAllowed(path) => FhirError::MethodNotAllowed {
                method: "PUT".into(),
                path: format!("/{path}"),
                allow: "GET, HEAD, DELETE",
            },
            // A search over its complexity or time budget: the server will not run it (400),
            // whatever the load; `too-costly`, as the issue-type code system defines it.
            StoreError::TooComplex(msg) | StoreError::TimedOut(msg) => {
                FhirError::Invalid(vec![Issue::error("too-costly", msg)])
            }
            StoreError::Database(msg) => {
                tracing::error!(error = %msg, "database error");
                FhirError::Internal(
                    "the database reported an error; the request was not applied".into(),
                )
            }
        }
    }
}
