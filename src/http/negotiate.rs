//! Content negotiation: which formats a request may send and receive, `_format`, `_pretty`
//! and `Prefer`.
//!
//! Only JSON is implemented; everything else (XML, Turtle) is refused with 415 for request
//! bodies and 406 for responses rather than answered in the wrong format.

use axum::http::{header, HeaderMap};

use crate::error::FhirError;

/// How the response body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// `application/json` when that is all the client accepts, otherwise `application/fhir+json`.
    pub plain_json: bool,
    pub pretty: bool,
}

impl Format {
    pub fn content_type(&self) -> &'static str {
        if self.plain_json {
            "application/json; charset=utf-8"
        } else {
            "application/fhir+json; charset=utf-8"
        }
    }
}

impl Default for Format {
    fn default() -> Self {
        Format {
            plain_json: false,
            pretty: false,
        }
    }
}

fn is_json_type(media: &str) -> bool {
    matches!(
        media,
        "application/fhir+json" | "application/json" | "application/json+fhir" | "json"
    )
}

/// The media type of a header value without parameters, lower-cased.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decides the response format from `_format`, `_pretty` and `Accept`.
pub fn response_format(
    headers: &HeaderMap,
    format: Option<&str>,
    pretty: Option<&str>,
) -> Result<Format, FhirError> {
    let pretty = match pretty {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(FhirError::invalid(format!(
                "_pretty must be true or false, not '{other}'"
            )))
        }
    };
    if let Some(format) = format {
        // `_format` overrides Accept (http page, "Content Types and encodings").
        // An unencoded `+` in `_format=application/fhir+json` arrives as a space.
        let media = media_type(&format.replace(' ', "+"));
        if !is_json_type(&media) {
            return Err(FhirError::NotAcceptable(format!(
                "_format={format} is not supported: this server speaks JSON (application/fhir+json)"
            )));
        }
        return Ok(Format {
            plain_json: media == "application/json",
            pretty,
        });
    }
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(Format {
            plain_json: false,
            pretty,
        });
    };
    let accept = accept
        .to_str()
        .map_err(|_| FhirError::invalid("The Accept header is not valid text"))?;
    let mut plain_json = false;
    let mut fhir_json = false;
    for range in accept.split(',') {
        let refused = range.split(';').skip(1).any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        if refused {
            continue;
        }
        match media_type(range).as_str() {
            "application/json" => plain_json = true,
            "application/fhir+json" | "application/json+fhir" | "*/*" | "application/*" => {
                fhir_json = true
            }
            _ => {}
        }
    }
    if !plain_json && !fhir_json {
        return Err(FhirError::NotAcceptable(format!(
            "None of the accepted types ({accept}) is supported: this server speaks application/fhir+json"
        )));
    }
    Ok(Format {
        plain_json: plain_json && !fhir_json,
        pretty,
    })
}

/// Checks that a request body is JSON (a missing Content-Type is taken as JSON).
pub fn require_json_body(headers: &HeaderMap) -> Result<(), FhirError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = media_type(value.to_str().unwrap_or(""));
    if is_json_type(&media) {
        Ok(())
    } else {
        Err(FhirError::UnsupportedMediaType(format!(
            "Content-Type '{media}' is not supported: send application/fhir+json"
        )))
    }
}

/// What the client wants back from a write (`Prefer: return=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

pub fn prefer_return(headers: &HeaderMap) -> Return {
    for value in headers.get_all("prefer") {
        for pref in value.to_str().unwrap_or("").split([',', ';']) {
            match pref.trim().replace(' ', "").as_str() {
                "return=minimal" => return Return::Minimal,
                "return=representation" => return Return::Representation,
                "return=OperationOutcome" => return Return::OperationOutcome,
                _ => {}
            }
        }
    }
    Return::Representation
}

/// Whether the client asked for strict handling of unknown search parameters.
pub fn prefer_strict(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split([',', ';'])
            .any(|p| p.trim().replace(' ', "") == "handling=strict")
    })
}

/// Whether the client asked for the asynchronous request pattern (`Prefer: respond-async`,
/// async page). RFC 7240 gives `respond-async` no value: one with a value is refused (400)
/// rather than guessed at.
pub fn prefer_async(headers: &HeaderMap) -> Result<bool, FhirError> {
    let mut asked = false;
    for value in headers.get_all("prefer") {
        for pref in value.to_str().unwrap_or("").split([',', ';']) {
            let pref = pref.trim();
            let (name, value) = pref.split_once('=').unwrap_or((pref, ""));
            if name.trim().eq_ignore_ascii_case("respond-async") {
                if !value.trim().is_empty() {
                    return Err(FhirError::invalid(format!(
                        "Prefer: '{pref}': respond-async takes no value"
                    )));
                }
                asked = true;
            }
        }
    }
    Ok(asked)
}
