//! Reading FHIR XML (R4 xml.html) into the server's one canonical form, JSON (R4 json.html),
//! driven by the definitions: each element is looked up in its type (choices by their type
//! suffix), must come in definition order and repeat only where the definition allows;
//! primitives carry their value in `value` (typed for JSON: booleans, integers, decimals exactly
//! as written) and their `id`/`extension` become the JSON `_name` sibling, with `null` where a
//! repeating primitive has a value but no extensions or the other way round; nested resources
//! (`contained`, `Bundle.entry.resource`, `Parameters.parameter.resource`) are read as
//! resources; the narrative `div` is kept as written, in its namespace, after the narrative
//! rules. Comments are not content and are dropped (json.html has no comments).
//!
//! Refused, with a 400 naming the element: document type declarations (so no entity can be
//! declared: no external entities, no expansion bombs), processing instructions (the XML
//! declaration is no processing instruction), elements, attributes or text the definitions do
//! not have, and nesting deeper than JSON's limit.

use roxmltree::{Document, Node, ParsingOptions};
use serde_json::{Map, Number, Value};

use super::definitions::{Definitions, JsonKind, TypeDef};
use super::{narrative, FHIR_NS, XHTML_NS, XSI_NS};
use crate::error::{FhirError, Issue};

/// The deepest JSON nesting a document read from XML may reach: serde_json's limit for JSON
/// bodies (128), so that what walks a resource later meets the same bound whichever format it
/// came in.
pub const MAX_DEPTH: usize = 128;

/// The most attributes one XML element may carry. A FHIR element has at most three (`id`,
/// `value` or `url`, and namespace declarations besides); the parser's duplicate check is
/// quadratic in the attributes of one element, so thousands of them are refused before it runs.
pub const MAX_ATTRIBUTES: usize = 64;

/// Reads a request body that holds a resource in FHIR XML, as canonical JSON.
pub fn parse(body: &[u8]) -> Result<Value, FhirError> {
    let document = well_formed(body)?;
    let text = document.input_text();
    for node in document.root().children() {
        if node.is_pi() {
            return Err(processing_instruction(node));
        }
    }
    let root = document.root_element();
    let name = root.tag_name().name();
    if root.tag_name().namespace() != Some(FHIR_NS) {
        return Err(structure(format!(
            "The root element '{name}' is not in the FHIR namespace ({FHIR_NS})"
        )));
    }
    let reader = Reader {
        defs: Definitions::get(),
        text,
    };
    reader.resource(root, name, 1).map(Value::Object)
}

/// Parses an XML body under the rules every XML body of the server meets (FHIR resources and
/// XML Patch documents alike): UTF-8 (a byte order mark allowed), no document type declaration
/// (so no entity can be declared: no external entities, no expansion bombs), at most
/// [`MAX_ATTRIBUTES`] attributes on an element, well-formed with namespaces.
pub fn well_formed(body: &[u8]) -> Result<Document<'_>, FhirError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| structure(format!("The XML body is not UTF-8: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    declared_encoding(text)?;
    prescan(text)?;
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => structure(
            "The XML body has a document type declaration (DTD): FHIR XML allows none, so no \
             entities can be declared",
        ),
        other => structure(format!("The body is not well-formed XML: {other}")),
    })
}

/// Refuses an XML declaration that names an encoding other than UTF-8: the body is read as
/// UTF-8 (the http page's charset), and a document saying otherwise was not written as such.
fn declared_encoding(text: &str) -> Result<(), FhirError> {
    let Some(rest) = text.strip_prefix("<?xml") else {
        return Ok(());
    };
    let declaration = &rest[..rest.find("?>").unwrap_or(rest.len())];
    let Some(at) = declaration.find("encoding") else {
        return Ok(());
    };
    let value = declaration[at + "encoding".len()..]
        .trim_start()
        .trim_start_matches('=')
        .trim_start();
    let value = value.trim_start_matches(['"', '\'']);
    let name: String = value
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if name.eq_ignore_ascii_case("utf-8") || name.eq_ignore_ascii_case("utf8") {
        Ok(())
    } else {
        Err(structure(format!(
            "The XML declaration names the encoding '{name}': send the body in UTF-8"
        )))
    }
}

/// A linear pass over the document before the parser: refuses a document type declaration and
/// elements with more than [`MAX_ATTRIBUTES`] attributes (counted as `=` outside quotes in a
/// tag), which the parser would check pairwise.
fn prescan(text: &str) -> Result<(), FhirError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(offset) = memchr_lt(&bytes[i..]) {
        i += offset + 1;
        let rest = &bytes[i..];
        if rest.starts_with(b"!--") {
            i += find(rest, b"-->").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with(b"![CDATA[") {
            i += find(rest, b"]]>").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with(b"!") {
            return Err(structure(
                "The XML body has a document type declaration (DTD): FHIR XML allows none, so \
                 no entities can be declared",
            ));
        } else if rest.starts_with(b"?") {
            i += find(rest, b"?>").map_or(rest.len(), |e| e + 2);
        } else {
            let mut quote = None;
            let mut attributes = 0;
            while i < bytes.len() {
                let b = bytes[i];
                i += 1;
                match quote {
                    Some(q) if b == q => quote = None,
                    Some(_) => {}
                    None if b == b'"' || b == b'\'' => quote = Some(b),
                    None if b == b'=' => {
                        attributes += 1;
                        if attributes > MAX_ATTRIBUTES {
                            return Err(structure(format!(
                                "An XML element has more than {MAX_ATTRIBUTES} attributes"
                            )));
                        }
                    }
                    None if b == b'>' => break,
                    None => {}
                }
            }
        }
    }
    Ok(())
}

fn memchr_lt(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'<')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn structure(message: impl Into<String>) -> FhirError {
    FhirError::Invalid(vec![Issue::error("structure", message)])
}

fn at(message: impl Into<String>, path: &str) -> FhirError {
    FhirError::Invalid(vec![Issue::error("structure", message).at(path)])
}

fn processing_instruction(node: Node<'_, '_>) -> FhirError {
    let target = node.pi().map(|pi| pi.target).unwrap_or_default();
    structure(format!(
        "The XML body has a processing instruction (<?{target} …?>): FHIR XML allows none \
         besides the XML declaration"
    ))
}

struct Reader<'d, 't> {
    defs: &'d Definitions,
    /// The whole document, from which a narrative is taken as written.
    text: &'t str,
}

/// The values read so far for one JSON property (an element, possibly repeated).
struct Pending {
    index: usize,
    name: String,
    repeats: bool,
    primitive: bool,
    values: Vec<Option<Value>>,
    extras: Vec<Option<Value>>,
}

impl Pending {
    fn flush(self, out: &mut Map<String, Value>) {
        let any_extra = self.extras.iter().any(Option::is_some);
        if !self.repeats {
            let mut values = self.values.into_iter();
            if let Some(Some(value)) = values.next() {
                out.insert(self.name.clone(), value);
            }
            if let Some(Some(extra)) = self.extras.into_iter().next() {
                out.insert(format!("_{}", self.name), extra);
            }
            return;
        }
        let any_value = self.values.iter().any(Option::is_some);
        if any_value {
            let array = self
                .values
                .into_iter()
                .map(|v| v.unwrap_or(Value::Null))
                .collect();
            out.insert(self.name.clone(), Value::Array(array));
        }
        if self.primitive && any_extra {
            let array = self
                .extras
                .into_iter()
                .map(|v| v.unwrap_or(Value::Null))
                .collect();
            out.insert(format!("_{}", self.name), Value::Array(array));
        }
    }
}

impl<'d> Reader<'d, '_> {
    fn type_def(&self, name: &str, path: &str) -> Result<&'d TypeDef, FhirError> {
        self.defs
            .type_def(name)
            .ok_or_else(|| at(format!("No definition of the type '{name}'"), path))
    }

    /// A resource element (`<Patient xmlns="http://hl7.org/fhir">`).
    fn resource(
        &self,
        node: Node<'_, '_>,
        name: &str,
        depth: usize,
    ) -> Result<Map<String, Value>, FhirError> {
        if !self.defs.is_resource(name) {
            return Err(at(format!("'{name}' is not a FHIR resource type"), name));
        }
        let mut out = Map::new();
        out.insert("resourceType".to_owned(), Value::String(name.to_owned()));
        self.object(node, name, name, depth, &mut out)?;
        Ok(out)
    }

    /// The attributes and child elements of an element of a complex type (or a resource) into
    /// `out`.
    fn object(
        &self,
        node: Node<'_, '_>,
        type_name: &str,
        path: &str,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), FhirError> {
        if depth > MAX_DEPTH {
            return Err(at(
                format!("The XML is nested deeper than {MAX_DEPTH} levels"),
                path,
            ));
        }
        let def = self.type_def(type_name, path)?;
        for attribute in node.attributes() {
            if attribute.namespace() == Some(XSI_NS) {
                continue; // xsi:schemaLocation and the like: hints for validators, no content
            }
            let name = attribute.name();
            match def.lookup(name) {
                Some((_, element, _)) if element.attribute && attribute.namespace().is_none() => {
                    out.insert(name.to_owned(), Value::String(attribute.value().to_owned()));
                }
                _ => return Err(at(format!("Unknown attribute '{name}' on {path}"), path)),
            }
        }
        let mut pending: Option<Pending> = None;
        for child in node.children() {
            if child.is_comment() {
                continue;
            }
            if child.is_pi() {
                return Err(processing_instruction(child));
            }
            if child.is_text() {
                if child.text().is_some_and(|t| !t.trim().is_empty()) {
                    return Err(at(format!("{path} may not hold text, only elements"), path));
                }
                continue;
            }
            let name = child.tag_name().name();
            let namespace = child.tag_name().namespace();
            let found = def.lookup(name).filter(|(_, element, code)| {
                !element.attribute
                    && if *code == "xhtml" {
                        namespace == Some(XHTML_NS)
                    } else {
                        namespace == Some(FHIR_NS)
                    }
            });
            let Some((index, element, code)) = found else {
                return Err(at(
                    format!(
                        "Unknown element '{name}'{} in {path}",
                        match namespace {
                            Some(ns) if ns != FHIR_NS => format!(" (namespace {ns})"),
                            None => " (no namespace)".to_owned(),
                            _ => String::new(),
                        }
                    ),
                    path,
                ));
            };
            let child_path = format!("{path}.{name}");
            match &mut pending {
                Some(p) if p.index == index && p.name == name => {
                    if !p.repeats {
                        return Err(at(
                            format!("{child_path} appears more than once, but does not repeat"),
                            &child_path,
                        ));
                    }
                }
                Some(p) if p.index == index => {
                    return Err(at(
                        format!(
                            "{path} has both {} and {name}: a choice takes one type",
                            p.name
                        ),
                        &child_path,
                    ));
                }
                Some(p) if p.index > index => {
                    return Err(at(
                        format!(
                            "{child_path} is out of order: it comes before {} in the definition \
                             of {type_name}",
                            p.name
                        ),
                        &child_path,
                    ));
                }
                _ => {
                    if let Some(done) = pending.take() {
                        done.flush(out);
                    }
                    if out.contains_key(name) {
                        // An attribute of the same name (`id`) read already.
                        return Err(at(format!("{child_path} is given twice"), &child_path));
                    }
                    pending = Some(Pending {
                        index,
                        name: name.to_owned(),
                        repeats: element.repeats,
                        primitive: self.defs.primitive(code).is_some() && code != "xhtml",
                        values: Vec::new(),
                        extras: Vec::new(),
                    });
                }
            }
            let p = pending.as_mut().expect("set above");
            let depth = depth + if element.repeats { 2 } else { 1 };
            let (value, extra) = self.element(child, code, &child_path, depth)?;
            p.values.push(value);
            p.extras.push(extra);
        }
        if let Some(done) = pending {
            done.flush(out);
        }
        Ok(())
    }

    /// One child element: its JSON value and, for a primitive, its `_name` partner.
    fn element(
        &self,
        node: Node<'_, '_>,
        code: &str,
        path: &str,
        depth: usize,
    ) -> Result<(Option<Value>, Option<Value>), FhirError> {
        if code == "xhtml" {
            return self.narrative(node, path).map(|div| (Some(div), None));
        }
        if let Some(kind) = self.defs.primitive(code) {
            return self.primitive(node, kind, path, depth);
        }
        if code == "Resource" {
            return self
                .nested_resource(node, path, depth)
                .map(|r| (Some(r), None));
        }
        let mut out = Map::new();
        self.object(node, code, path, depth, &mut out)?;
        if out.is_empty() {
            return Err(at(
                format!("{path} is empty: an element has a value or children (ele-1)"),
                path,
            ));
        }
        Ok((Some(Value::Object(out)), None))
    }

    /// A primitive: `value` typed for JSON, and `id`/`extension` as its `_name` object.
    fn primitive(
        &self,
        node: Node<'_, '_>,
        kind: JsonKind,
        path: &str,
        depth: usize,
    ) -> Result<(Option<Value>, Option<Value>), FhirError> {
        let mut value = None;
        let mut extra = Map::new();
        for attribute in node.attributes() {
            if attribute.namespace() == Some(XSI_NS) {
                continue;
            }
            match (attribute.namespace(), attribute.name()) {
                (None, "value") => value = Some(typed(attribute.value(), kind, path)?),
                (None, "id") => {
                    extra.insert("id".to_owned(), Value::String(attribute.value().to_owned()));
                }
                (_, other) => {
                    return Err(at(format!("Unknown attribute '{other}' on {path}"), path))
                }
            }
        }
        let mut extensions = Vec::new();
        for child in node.children() {
            if child.is_comment() {
                continue;
            }
            if child.is_pi() {
                return Err(processing_instruction(child));
            }
            if child.is_text() {
                if child.text().is_some_and(|t| !t.trim().is_empty()) {
                    return Err(at(
                        format!("{path} may not hold text: a primitive's value is its 'value' attribute"),
                        path,
                    ));
                }
                continue;
            }
            if child.tag_name().name() != "extension"
                || child.tag_name().namespace() != Some(FHIR_NS)
            {
                return Err(at(
                    format!(
                        "Unknown element '{}' in {path}: a primitive holds only extensions",
                        child.tag_name().name()
                    ),
                    path,
                ));
            }
            let mut ext = Map::new();
            let ext_path = format!("{path}.extension");
            self.object(child, "Extension", &ext_path, depth + 3, &mut ext)?;
            if ext.is_empty() {
                return Err(at(format!("{ext_path} is empty"), &ext_path));
            }
            extensions.push(Value::Object(ext));
        }
        if !extensions.is_empty() {
            extra.insert("extension".to_owned(), Value::Array(extensions));
        }
        if value.is_none() && !extra.contains_key("extension") {
            return Err(at(
                format!("{path} has no value and no extensions (ele-1)"),
                path,
            ));
        }
        let extra = (!extra.is_empty()).then_some(Value::Object(extra));
        Ok((value, extra))
    }

    /// `<contained>`, `<resource>`, `<outcome>`…: one resource element inside.
    fn nested_resource(
        &self,
        node: Node<'_, '_>,
        path: &str,
        depth: usize,
    ) -> Result<Value, FhirError> {
        if let Some(attribute) = node.attributes().next() {
            return Err(at(
                format!("Unknown attribute '{}' on {path}", attribute.name()),
                path,
            ));
        }
        let mut resource = None;
        for child in node.children() {
            if child.is_comment() {
                continue;
            }
            if child.is_pi() {
                return Err(processing_instruction(child));
            }
            if child.is_text() {
                if child.text().is_some_and(|t| !t.trim().is_empty()) {
                    return Err(at(format!("{path} may not hold text"), path));
                }
                continue;
            }
            if resource.is_some() {
                return Err(at(format!("{path} holds more than one resource"), path));
            }
            let name = child.tag_name().name();
            if child.tag_name().namespace() != Some(FHIR_NS) {
                return Err(at(
                    format!("The resource '{name}' in {path} is not in the FHIR namespace"),
                    path,
                ));
            }
            resource = Some(self.resource(child, name, depth + 1)?);
        }
        resource
            .map(Value::Object)
            .ok_or_else(|| at(format!("{path} holds no resource"), path))
    }

    /// The narrative `div`, checked, as written when the text stands on its own (it declares
    /// the XHTML namespace itself, as every FHIR XML writer does, and uses no prefix declared
    /// outside it), else written out again with that declaration.
    fn narrative(&self, node: Node<'_, '_>, path: &str) -> Result<Value, FhirError> {
        narrative::check(node).map_err(|message| {
            FhirError::Invalid(vec![Issue::error("invariant", message).at(path)])
        })?;
        let written = &self.text[node.range()];
        let stands_alone = Document::parse(written).is_ok_and(|alone| {
            let root = alone.root_element();
            root.tag_name().name() == "div" && root.tag_name().namespace() == Some(XHTML_NS)
        });
        if stands_alone {
            return Ok(Value::String(written.to_owned()));
        }
        let mut out = String::new();
        write_xhtml(node, true, &mut out);
        Ok(Value::String(out))
    }
}

/// Writes an XHTML element again, without prefixes, the root declaring the XHTML namespace.
fn write_xhtml(node: Node<'_, '_>, root: bool, out: &mut String) {
    let name = node.tag_name().name();
    out.push('<');
    out.push_str(name);
    if root {
        out.push_str(" xmlns=\"");
        out.push_str(XHTML_NS);
        out.push('"');
    }
    for attribute in node.attributes() {
        out.push(' ');
        if attribute.namespace() == Some("http://www.w3.org/XML/1998/namespace") {
            out.push_str("xml:");
        }
        out.push_str(attribute.name());
        out.push_str("=\"");
        super::write::escape_attribute(attribute.value(), out);
        out.push('"');
    }
    let mut children = node
        .children()
        .filter(|c| c.is_element() || c.is_text())
        .peekable();
    if children.peek().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in children {
        if child.is_text() {
            super::write::escape_text(child.text().unwrap_or_default(), out);
        } else {
            write_xhtml(child, false, out);
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A `value` attribute as the JSON value of its primitive's kind. Numbers are kept exactly as
/// written (serde_json's arbitrary precision), after the FHIR regex of their type.
fn typed(text: &str, kind: JsonKind, path: &str) -> Result<Value, FhirError> {
    let bad = |what: &str| {
        FhirError::Invalid(vec![Issue::error(
            "value",
            format!("{path}: '{}' is not a valid {what}", shorten(text)),
        )
        .at(path)])
    };
    match kind {
        JsonKind::String => Ok(Value::String(text.to_owned())),
        JsonKind::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("boolean")),
        },
        JsonKind::Integer => {
            if !is_integer(text) {
                return Err(bad("integer"));
            }
            number(text).ok_or_else(|| bad("integer"))
        }
        JsonKind::Decimal => {
            if !is_decimal(text) {
                return Err(bad("decimal"));
            }
            number(text).ok_or_else(|| bad("decimal"))
        }
    }
}

fn number(text: &str) -> Option<Value> {
    serde_json::from_str::<Number>(text).ok().map(Value::Number)
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `-?([0]|([1-9][0-9]*))` (the `integer` type's regex).
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` (the `decimal` type's regex).
fn is_decimal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    let fraction_ok =
        fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    is_integer(whole) && fraction_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(xml: &str) -> Result<Value, FhirError> {
        parse(xml.as_bytes())
    }

    #[test]
    fn primitives_take_their_json_type() {
        let value = read(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <Observation xmlns="http://hl7.org/fhir"><!-- a comment -->
              <status value="final"/>
              <code><text value="Körpergewicht"/></code>
              <valueQuantity><value value="72.50"/><unit value="kg"/></valueQuantity>
            </Observation>"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"resourceType":"Observation","status":"final","code":{"text":"Körpergewicht"},"valueQuantity":{"value":72.50,"unit":"kg"}}"#
        );
    }

    #[test]
    fn ids_and_extensions_of_repeating_primitives_line_up_with_nulls() {
        let value = read(
            r#"<Patient xmlns="http://hl7.org/fhir"><name>
                <given value="Anna"/>
                <given id="g2"><extension url="http://example.org/x"><valueBoolean value="true"/></extension></given>
                <given value="Maria" id="g3"/>
              </name><active value="false"/></Patient>"#,
        );
        // active comes before name in Patient: out of order
        assert!(value.is_err());
        let value = read(
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="false"/><name>
                <given value="Anna"/>
                <given id="g2"><extension url="http://example.org/x"><valueBoolean value="true"/></extension></given>
                <given value="Maria" id="g3"/>
              </name></Patient>"#,
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"resourceType": "Patient", "active": false, "name": [{
                "given": ["Anna", null, "Maria"],
                "_given": [null, {"id": "g2", "extension": [{"url": "http://example.org/x", "valueBoolean": true}]}, {"id": "g3"}]
            }]})
        );
    }

    #[test]
    fn an_encoding_other_than_utf8_is_refused() {
        assert!(read(r#"<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>"#).is_err());
        read(r#"<?xml version="1.0" encoding='utf-8'?><Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>"#).unwrap();
    }

    #[test]
    fn a_document_type_declaration_is_refused() {
        let err = read(
            r#"<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("DTD"), "{err}");
    }

    #[test]
    fn processing_instructions_are_refused() {
        assert!(read(r#"<?xml-stylesheet href="a.xsl"?><Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>"#).is_err());
        assert!(read(
            r#"<Patient xmlns="http://hl7.org/fhir"><?x y?><active value="true"/></Patient>"#
        )
        .is_err());
    }

    #[test]
    fn unknown_elements_attributes_and_text_are_refused() {
        assert!(
            read(r#"<Patient xmlns="http://hl7.org/fhir"><colour value="x"/></Patient>"#).is_err()
        );
        assert!(read(
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="true" extra="1"/></Patient>"#
        )
        .is_err());
        assert!(read(
            r#"<Patient xmlns="http://hl7.org/fhir">text<active value="true"/></Patient>"#
        )
        .is_err());
        assert!(read(r#"<Patient><active value="true"/></Patient>"#).is_err());
        assert!(
            read(r#"<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>"#)
                .is_err()
        );
        assert!(read(r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>"#).is_err());
    }

    #[test]
    fn many_attributes_on_one_element_are_refused_before_parsing() {
        let attributes: String = (0..10_000).map(|i| format!(" a{i}=\"x\"")).collect();
        let xml = format!(r#"<Patient xmlns="http://hl7.org/fhir"{attributes}/>"#);
        assert!(read(&xml).unwrap_err().to_string().contains("attributes"));
    }

    #[test]
    fn nesting_deeper_than_json_allows_is_refused() {
        let open = "<extension url=\"http://e.org\">".repeat(100);
        let close = "</extension>".repeat(100);
        let xml = format!(
            r#"<Patient xmlns="http://hl7.org/fhir">{open}<valueBoolean value="true"/>{close}</Patient>"#
        );
        assert!(read(&xml).unwrap_err().to_string().contains("deeper"));
    }

    #[test]
    fn decimals_keep_their_digits_and_refuse_what_the_regex_refuses() {
        assert!(is_decimal("0.010") && is_decimal("-1.5e+3") && is_decimal("0"));
        assert!(!is_decimal("01.5") && !is_decimal(".5") && !is_decimal("1.") && !is_decimal("+1"));
        assert!(is_integer("-12") && !is_integer("012") && !is_integer("1.0"));
    }

    #[test]
    fn a_narrative_is_kept_as_written() {
        let div =
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Ada &amp; <b>Byron</b></p></div>"#;
        let value = read(&format!(
            r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>{div}</text></Patient>"#
        ))
        .unwrap();
        assert_eq!(value["text"]["div"], json!(div));
    }

    #[test]
    fn contained_resources_are_read_as_resources() {
        let value = read(
            r##"<Patient xmlns="http://hl7.org/fhir"><contained><Organization><id value="o1"/><name value="Zorg"/></Organization></contained><managingOrganization><reference value="#o1"/></managingOrganization></Patient>"##,
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1", "name": "Zorg"}], "managingOrganization": {"reference": "#o1"}})
        );
    }
}
