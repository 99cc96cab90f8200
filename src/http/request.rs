//! A FHIR request as interactions see it: method, decoded path segments, query parameters,
//! headers and the (size-limited) body.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use serde_json::Value;

use crate::error::{FhirError, Issue};
use crate::fhir::{json_format, xml};
use crate::http::negotiate::{body_format, BodyFormat};

#[derive(Debug)]
pub struct FhirRequest {
    pub method: Method,
    /// Path segments after the FHIR base, percent-decoded.
    pub segments: Vec<String>,
    /// Query parameters in order, without `_format` and `_pretty`.
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FhirRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a resource in the server's canonical form (JSON), read from FHIR JSON or
    /// FHIR XML as its Content-Type says, refusing other media types, malformed documents and
    /// what FHIR's formats do not allow (`fhir::json_format`, `fhir::xml`).
    pub fn json_body(&self) -> Result<Value, FhirError> {
        match body_format(&self.headers)? {
            BodyFormat::Json => parse_resource(&self.body),
            BodyFormat::Xml => parse_xml_resource(&self.body),
        }
    }

    /// The value of a query parameter that may appear at most once.
    pub fn single_param(&self, name: &str) -> Result<Option<&str>, FhirError> {
        let mut values = self
            .params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(FhirError::invalid(format!(
                "The parameter {name} may appear only once"
            )));
        }
        Ok(first)
    }
}

/// Parses a body that holds a FHIR resource, with the rules of FHIR's JSON format
/// (`fhir::json_format`: unique names, no stray nulls, no empty objects or arrays, no control
/// characters). serde_json refuses nesting deeper than 128 levels, which bounds the recursion of
/// everything that walks a resource later.
pub fn parse_resource(body: &[u8]) -> Result<Value, FhirError> {
    refuse_empty(body)?;
    json_format::parse(body)
}

/// Parses a body that holds a FHIR resource in XML (`fhir::xml`) into its canonical JSON, held
/// to the same rules as a JSON body (`fhir::json_format::check`); the nesting limit is JSON's.
pub fn parse_xml_resource(body: &[u8]) -> Result<Value, FhirError> {
    refuse_empty(body)?;
    let resource = xml::parse(body)?;
    json_format::check(&resource)?;
    Ok(resource)
}

fn refuse_empty(body: &[u8]) -> Result<(), FhirError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FhirError::Invalid(vec![Issue::error(
            "structure",
            "The request body is empty; a resource was expected",
        )]));
    }
    Ok(())
}

/// Parses a JSON body that is not a resource (a JSON Patch document).
pub fn parse_json(body: &[u8]) -> Result<Value, FhirError> {
    refuse_empty(body)?;
    serde_json::from_slice(body).map_err(|e| {
        FhirError::Invalid(vec![Issue::error(
            "structure",
            format!("The body is not valid JSON: {e}"),
        )])
    })
}

/// Splits a query string into decoded pairs (`+` is a space, as in HTML forms).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}
