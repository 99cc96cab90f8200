//! Content negotiation: which formats a request may send and receive, `_format`, `_pretty`
//! and `Prefer`.
//!
//! FHIR's JSON and XML formats (decision 0033) are spoken, under the media types and the
//! `_format` aliases of the http page ("Content Types and encodings"); everything else
//! (Turtle) is refused with 415 for request bodies and 406 for responses rather than answered
//! in the wrong format. Bodies are UTF-8: another `charset` is refused (415). A media type's
//! `fhirVersion` parameter (http page, "FHIR Version parameter") must name 4.0, the version
//! spoken here: another is refused the same way. A refusal (and any error met before the format
//! is known) is answered in XML when the request asked for XML ([`error_format`]).

use axum::http::{header, HeaderMap};

use crate::error::FhirError;

/// The media type a response body is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    #[default]
    FhirJson,
    /// `application/json`, when that is the JSON type the client asked for.
    Json,
    FhirXml,
    /// `application/xml`, when that is the XML type the client asked for.
    Xml,
    /// `text/xml`, likewise.
    TextXml,
}

impl Media {
    pub fn is_xml(self) -> bool {
        matches!(self, Media::FhirXml | Media::Xml | Media::TextXml)
    }
}

/// How the response body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Format {
    pub media: Media,
    pub pretty: bool,
}

impl Format {
    pub fn content_type(&self) -> &'static str {
        match self.media {
            Media::FhirJson => "application/fhir+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
            Media::FhirXml => "application/fhir+xml; charset=utf-8",
            Media::Xml => "application/xml; charset=utf-8",
            Media::TextXml => "text/xml; charset=utf-8",
        }
    }

    pub fn is_xml(&self) -> bool {
        self.media.is_xml()
    }
}

/// The format of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Xml,
}

/// A media type (or `_format` alias) FHIR gives its formats: the response media and how
/// specific it is (3: a FHIR type, 2: plain JSON or XML, 1: a wildcard), to break ties between
/// equally preferred ranges.
fn fhir_media(media: &str) -> Option<(Media, u8)> {
    Some(match media {
        "application/fhir+json" | "application/json+fhir" | "json" => (Media::FhirJson, 3),
        "application/json" => (Media::Json, 2),
        "application/fhir+xml" | "application/xml+fhir" | "xml" => (Media::FhirXml, 3),
        "application/xml" => (Media::Xml, 2),
        "text/xml" => (Media::TextXml, 2),
        "*/*" | "application/*" => (Media::FhirJson, 1),
        _ => return None,
    })
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

/// The `q` of one range of an Accept header (RFC 9110, 12.4.2): 1 when absent, `None` when it
/// is no valid qvalue.
fn quality(range: &str) -> Option<f32> {
    for parameter in range.split(';').skip(1) {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            let value = value.trim();
            let valid = value.len() <= 5
                && (value.starts_with('0') || value.starts_with('1'))
                && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            return value
                .parse::<f32>()
                .ok()
                .filter(|q| valid && (0.0..=1.0).contains(q));
        }
    }
    Some(1.0)
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
        let format = format.replace(' ', "+");
        if let Some(version) = unsupported_version(&format) {
            return Err(FhirError::NotAcceptable(format!(
                "_format={format} asks for FHIR version {version}: this server speaks FHIR 4.0 \
                 (R4) only"
            )));
        }
        let media = media_type(&format);
        return match fhir_media(&media) {
            Some((media, rank)) if rank > 1 => Ok(Format { media, pretty }),
            _ => Err(FhirError::NotAcceptable(format!(
                "_format={format} is not supported: this server speaks JSON (json, \
                 application/fhir+json) and XML (xml, application/fhir+xml)"
            ))),
        };
    }
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(Format {
            media: Media::FhirJson,
            pretty,
        });
    };
    let accept = accept
        .to_str()
        .map_err(|_| FhirError::invalid("The Accept header is not valid text"))?;
    match preferred(accept, true) {
        Some(media) => Ok(Format { media, pretty }),
        None => Err(FhirError::NotAcceptable(
            match accept.split(',').find_map(unsupported_version) {
                Some(version) => format!(
                    "None of the accepted types ({accept}) can be answered: FHIR version \
                     {version} is asked for, and this server speaks FHIR 4.0 (R4) only"
                ),
                None => format!(
                    "None of the accepted types ({accept}) is supported: this server speaks \
                     application/fhir+json and application/fhir+xml"
                ),
            },
        )),
    }
}

/// The most preferred range of an Accept header the server can answer: highest q, then the
/// most specific, then the first listed. With `versions`, ranges asking for another FHIR
/// version than 4.0 cannot be answered.
fn preferred(accept: &str, versions: bool) -> Option<Media> {
    let mut best: Option<(f32, u8, Media)> = None;
    for range in accept.split(',') {
        let Some(q) = quality(range) else {
            continue;
        };
        if q <= 0.0 || (versions && unsupported_version(range).is_some()) {
            continue;
        }
        let Some((media, rank)) = fhir_media(&media_type(range)) else {
            continue;
        };
        if best.is_none_or(|(bq, br, _)| q > bq || (q == bq && rank > br)) {
            best = Some((q, rank, media));
        }
    }
    best.map(|(_, _, media)| media)
}

/// The `fhirVersion` a media type asks for when it is not 4.0 (R4; `4.0.1` is taken too): the
/// http page's version parameter, major.minor.
fn unsupported_version(media: &str) -> Option<String> {
    for parameter in media.split(';').skip(1) {
        if let Some((name, value)) = parameter.split_once('=') {
            if name.trim().eq_ignore_ascii_case("fhirversion") {
                let version = value.trim().trim_matches('"');
                return (version != "4.0" && version != "4.0.1").then(|| version.to_owned());
            }
        }
    }
    None
}

/// The format of an error met before the response format is decided (a 406 for an `Accept` or
/// `_format` the server cannot answer, a bad `_pretty`): XML when the request asked for XML —
/// `_format` names an XML type, or the most preferred type of `Accept` the server knows is XML,
/// whatever its parameters —, JSON otherwise. So a client asking for XML gets an XML
/// OperationOutcome even when its request cannot be served as asked.
pub fn error_format(headers: &HeaderMap, format: Option<&str>, pretty: Option<&str>) -> Format {
    let pretty = pretty == Some("true");
    if let Some(format) = format {
        if let Some((media, rank)) = fhir_media(&media_type(&format.replace(' ', "+"))) {
            if rank > 1 {
                return Format { media, pretty };
            }
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Format {
        media: preferred(accept, false).unwrap_or_default(),
        pretty,
    }
}

/// The format of a request body from its Content-Type (a missing Content-Type is taken as
/// JSON): FHIR's JSON or XML media types, in UTF-8; anything else is a 415.
pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, FhirError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let value = value.to_str().unwrap_or("");
    let media = media_type(value);
    let format = match fhir_media(&media) {
        Some((m, rank)) if rank > 1 && m.is_xml() => BodyFormat::Xml,
        Some((_, rank)) if rank > 1 => BodyFormat::Json,
        _ => {
            return Err(FhirError::UnsupportedMediaType(format!(
                "Content-Type '{media}' is not supported: send application/fhir+json or \
                 application/fhir+xml"
            )))
        }
    };
    if let Some(version) = unsupported_version(value) {
        return Err(FhirError::UnsupportedMediaType(format!(
            "The body is FHIR version {version} (Content-Type fhirVersion): this server speaks \
             FHIR 4.0 (R4) only"
        )));
    }
    require_utf8(value)?;
    Ok(format)
}

/// Refuses a `charset` parameter other than UTF-8: the server reads bodies as UTF-8 only.
pub fn require_utf8(content_type: &str) -> Result<(), FhirError> {
    for parameter in content_type.split(';').skip(1) {
        if let Some((name, value)) = parameter.split_once('=') {
            let charset = value.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("charset")
                && !charset.eq_ignore_ascii_case("utf-8")
                && !charset.eq_ignore_ascii_case("utf8")
            {
                return Err(FhirError::UnsupportedMediaType(format!(
                    "charset={charset} is not supported: send the body in UTF-8"
                )));
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> Result<Media, FhirError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        response_format(&headers, None, None).map(|f| f.media)
    }

    #[test]
    fn the_highest_quality_wins() {
        assert_eq!(
            accept("application/fhir+json;q=0.5, application/fhir+xml").unwrap(),
            Media::FhirXml
        );
        assert_eq!(
            accept("application/fhir+xml;q=0.8, */*;q=0.9").unwrap(),
            Media::FhirJson
        );
        assert_eq!(accept("text/xml").unwrap(), Media::TextXml);
        assert_eq!(
            accept("application/xml, application/fhir+xml").unwrap(),
            Media::FhirXml
        );
        assert_eq!(
            accept("application/json, application/fhir+json").unwrap(),
            Media::FhirJson
        );
    }

    #[test]
    fn another_fhir_version_cannot_be_answered() {
        assert_eq!(
            accept("application/fhir+xml; fhirVersion=4.0").unwrap(),
            Media::FhirXml
        );
        assert!(accept("application/fhir+xml; fhirVersion=3.0").is_err());
        assert_eq!(
            accept("application/fhir+xml; fhirVersion=3.0, application/fhir+json;q=0.5").unwrap(),
            Media::FhirJson
        );
        assert!(response_format(&HeaderMap::new(), Some("xml;fhirVersion=5.0"), None).is_err());
    }

    #[test]
    fn errors_before_negotiation_are_answered_as_asked() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/fhir+xml; fhirVersion=3.0"),
        );
        assert_eq!(error_format(&headers, None, None).media, Media::FhirXml);
        assert_eq!(
            error_format(&HeaderMap::new(), Some("text/xml"), Some("bad")).media,
            Media::TextXml
        );
        assert_eq!(
            error_format(&headers, Some("ttl"), None).media,
            Media::FhirXml,
            "an unknown _format falls back to Accept"
        );
        assert_eq!(
            error_format(&HeaderMap::new(), Some("ttl"), None).media,
            Media::FhirJson
        );
    }

    #[test]
    fn q_zero_refuses_a_type() {
        assert!(accept("application/fhir+xml;q=0, text/turtle").is_err());
        assert!(accept("application/fhir+xml;q=2").is_err());
    }

    #[test]
    fn format_aliases_of_the_http_page() {
        for (alias, media) in [
            ("xml", Media::FhirXml),
            ("text/xml", Media::TextXml),
            ("application/xml", Media::Xml),
            ("application/fhir xml", Media::FhirXml),
            ("json", Media::FhirJson),
        ] {
            assert_eq!(
                response_format(&HeaderMap::new(), Some(alias), None)
                    .unwrap()
                    .media,
                media
            );
        }
        assert!(response_format(&HeaderMap::new(), Some("ttl"), None).is_err());
    }

    #[test]
    fn bodies_are_json_or_xml_in_utf8() {
        let format = |ct: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            body_format(&headers)
        };
        assert_eq!(
            format("application/fhir+xml; charset=UTF-8").unwrap(),
            BodyFormat::Xml
        );
        assert_eq!(format("text/xml").unwrap(), BodyFormat::Xml);
        assert_eq!(format("application/json").unwrap(), BodyFormat::Json);
        assert!(format("application/fhir+xml; charset=ISO-8859-1").is_err());
        assert!(format("text/turtle").is_err());
    }
}
