//! Writing a resource held as canonical JSON in FHIR XML (R4 xml.html), driven by the
//! definitions: elements in definition order, `id`/`url` as attributes, primitives as `value`
//! attributes with their `_name` partner's `id` and extensions (index by index for repeating
//! ones, `null` meaning "none"), numbers exactly as stored, nested resources inside their
//! element, and the narrative `div` as stored (it is XHTML in its own namespace).

use serde_json::{Map, Value};

use super::definitions::{Definitions, TypeDef};
use super::{FHIR_NS, XHTML_NS};

/// Why a document cannot be written as XML: it holds what the definitions do not (a property
/// of no element, a value of the wrong JSON type). Stored resources are valid, so this names a
/// fault in what the server built.
#[derive(Debug, thiserror::Error)]
#[error("cannot be written as FHIR XML: {0}")]
pub struct WriteError(pub String);

/// Writes a resource as an XML document (with the XML declaration), indented when `pretty`.
pub fn to_xml(resource: &Value, pretty: bool) -> Result<String, WriteError> {
    let object = resource
        .as_object()
        .ok_or_else(|| WriteError("the body is not a JSON object".to_owned()))?;
    let mut writer = Writer {
        defs: Definitions::get(),
        out: String::with_capacity(1024),
        pretty,
        depth: 0,
    };
    writer
        .out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    writer.resource(object, true)?;
    if pretty {
        writer.out.push('\n');
    }
    Ok(writer.out)
}

struct Writer<'d> {
    defs: &'d Definitions,
    out: String,
    pretty: bool,
    depth: usize,
}

impl Writer<'_> {
    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push_str("  ");
            }
        }
    }

    fn resource(&mut self, object: &Map<String, Value>, root: bool) -> Result<(), WriteError> {
        let name = object
            .get("resourceType")
            .and_then(Value::as_str)
            .filter(|t| self.defs.is_resource(t))
            .ok_or_else(|| WriteError("a resource without a known resourceType".to_owned()))?;
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        if root {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(FHIR_NS);
            self.out.push('"');
        }
        self.object_body(object, name, name, true)
    }

    /// Attributes, children and end tag of an element whose start tag is open (`<name`).
    fn object_body(
        &mut self,
        object: &Map<String, Value>,
        type_name: &str,
        tag: &str,
        is_resource: bool,
    ) -> Result<(), WriteError> {
        let def = self
            .defs
            .type_def(type_name)
            .ok_or_else(|| WriteError(format!("no definition of the type {type_name}")))?;
        self.check_known(object, def, type_name, is_resource)?;
        for element in def.elements.iter().filter(|e| e.attribute) {
            if let Some(value) = object.get(&element.stem) {
                let text = scalar(value).ok_or_else(|| {
                    WriteError(format!("{type_name}.{} is not text", element.stem))
                })?;
                self.out.push(' ');
                self.out.push_str(&element.stem);
                self.out.push_str("=\"");
                escape_attribute(&text, &mut self.out);
                self.out.push('"');
            }
        }
        let start = self.out.len();
        self.out.push('>');
        self.depth += 1;
        let mut any = false;
        for element in def.elements.iter().filter(|e| !e.attribute) {
            for code in &element.types {
                let name = element.name_for(code);
                let value = object.get(&name);
                let extra = object.get(&format!("_{name}"));
                if value.is_none() && extra.is_none() {
                    continue;
                }
                any = true;
                self.element(&name, code, value, extra, element.repeats, type_name)?;
            }
        }
        self.depth -= 1;
        if any {
            self.newline();
            self.out.push_str("</");
            self.out.push_str(tag);
            self.out.push('>');
        } else {
            self.out.truncate(start);
            self.out.push_str("/>");
        }
        Ok(())
    }

    /// Refuses a property that no element of the type has.
    fn check_known(
        &self,
        object: &Map<String, Value>,
        def: &TypeDef,
        type_name: &str,
        is_resource: bool,
    ) -> Result<(), WriteError> {
        for key in object.keys() {
            if is_resource && key == "resourceType" {
                continue;
            }
            let name = key.strip_prefix('_').unwrap_or(key);
            if def.lookup(name).is_none() {
                return Err(WriteError(format!("{type_name} has no element '{key}'")));
            }
        }
        Ok(())
    }

    /// One element (all its repetitions).
    fn element(
        &mut self,
        name: &str,
        code: &str,
        value: Option<&Value>,
        extra: Option<&Value>,
        repeats: bool,
        owner: &str,
    ) -> Result<(), WriteError> {
        if repeats {
            let values = as_array(value, name, owner)?;
            let extras = as_array(extra, name, owner)?;
            for i in 0..values.len().max(extras.len()) {
                let value = values.get(i).filter(|v| !v.is_null());
                let extra = extras.get(i).filter(|v| !v.is_null());
                self.one(name, code, value, extra, owner)?;
            }
            Ok(())
        } else {
            self.one(name, code, value, extra, owner)
        }
    }

    fn one(
        &mut self,
        name: &str,
        code: &str,
        value: Option<&Value>,
        extra: Option<&Value>,
        owner: &str,
    ) -> Result<(), WriteError> {
        if code == "xhtml" {
            let div = value
                .and_then(Value::as_str)
                .ok_or_else(|| WriteError(format!("{owner}.{name} is not a string of XHTML")))?;
            self.newline();
            write_div(div, &mut self.out);
            return Ok(());
        }
        if self.defs.primitive(code).is_some() {
            return self.primitive(name, value, extra, owner);
        }
        let Some(object) = value.and_then(Value::as_object) else {
            return Err(WriteError(format!("{owner}.{name} is not an object")));
        };
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        if code == "Resource" {
            self.out.push('>');
            self.depth += 1;
            self.resource(object, false)?;
            self.depth -= 1;
            self.newline();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
            return Ok(());
        }
        self.object_body(object, code, name, false)
    }

    fn primitive(
        &mut self,
        name: &str,
        value: Option<&Value>,
        extra: Option<&Value>,
        owner: &str,
    ) -> Result<(), WriteError> {
        let extra = match extra {
            Some(Value::Object(extra)) => Some(extra),
            None => None,
            Some(_) => return Err(WriteError(format!("{owner}._{name} is not an object"))),
        };
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        if let Some(id) = extra.and_then(|e| e.get("id")) {
            let id = scalar(id).ok_or_else(|| WriteError(format!("{owner}._{name}.id")))?;
            self.out.push_str(" id=\"");
            escape_attribute(&id, &mut self.out);
            self.out.push('"');
        }
        if let Some(value) = value {
            let text = scalar(value)
                .ok_or_else(|| WriteError(format!("{owner}.{name} is not a primitive value")))?;
            self.out.push_str(" value=\"");
            escape_attribute(&text, &mut self.out);
            self.out.push('"');
        }
        let extensions = match extra.and_then(|e| e.get("extension")) {
            Some(Value::Array(extensions)) => extensions.as_slice(),
            None => &[],
            Some(_) => {
                return Err(WriteError(format!(
                    "{owner}._{name}.extension is not an array"
                )))
            }
        };
        if let Some(other) = extra
            .into_iter()
            .flat_map(|e| e.keys())
            .find(|k| *k != "id" && *k != "extension")
        {
            return Err(WriteError(format!("{owner}._{name} has '{other}'")));
        }
        if extensions.is_empty() {
            self.out.push_str("/>");
            return Ok(());
        }
        self.out.push('>');
        self.depth += 1;
        for extension in extensions {
            let object = extension
                .as_object()
                .ok_or_else(|| WriteError(format!("{owner}._{name}.extension")))?;
            self.newline();
            self.out.push_str("<extension");
            self.object_body(object, "Extension", "extension", false)?;
        }
        self.depth -= 1;
        self.newline();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        Ok(())
    }
}

fn as_array<'v>(
    value: Option<&'v Value>,
    name: &str,
    owner: &str,
) -> Result<&'v [Value], WriteError> {
    match value {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(WriteError(format!(
            "{owner}.{name} repeats but is not an array"
        ))),
    }
}

/// The text of a primitive value: strings as they are, numbers exactly as stored.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The narrative as stored when it is a well-formed XHTML `div`; one stored without its
/// namespace declaration gets it; anything else (stored before narratives were checked) is
/// written as the text of a `div`, so that the document stays well-formed.
fn write_div(div: &str, out: &mut String) {
    match roxmltree::Document::parse(div) {
        Ok(doc) if doc.root_element().tag_name().name() == "div" => {
            match doc.root_element().tag_name().namespace() {
                Some(XHTML_NS) => out.push_str(div),
                None if div.starts_with("<div") => {
                    out.push_str("<div xmlns=\"");
                    out.push_str(XHTML_NS);
                    out.push('"');
                    out.push_str(&div[4..]);
                }
                _ => text_div(div, out),
            }
        }
        _ => text_div(div, out),
    }
}

fn text_div(text: &str, out: &mut String) {
    out.push_str("<div xmlns=\"");
    out.push_str(XHTML_NS);
    out.push_str("\">");
    escape_text(text, out);
    out.push_str("</div>");
}

/// Escapes an attribute value; tab, CR and LF as character references, which XML's
/// attribute-value normalisation would otherwise turn into spaces.
pub fn escape_attribute(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Escapes character data.
pub fn escape_text(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_follow_the_definition_order_whatever_the_json_order() {
        let xml = to_xml(
            &json!({"birthDate": "1970-01-01", "gender": "female", "resourceType": "Patient", "id": "p1"}),
            false,
        )
        .unwrap();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir"><id value="p1"/><gender value="female"/><birthDate value="1970-01-01"/></Patient>"#
        );
    }

    #[test]
    fn primitive_ids_and_extensions_are_written_with_the_value() {
        let patient: Value = serde_json::from_str(
            r#"{"resourceType": "Patient", "name": [{"given": ["A", null], "_given": [{"id": "a"}, {"extension": [{"url": "http://e.org/x", "valueDecimal": 1.50}]}]}]}"#,
        )
        .unwrap();
        let xml = to_xml(&patient, false).unwrap();
        assert!(xml.contains(r#"<given id="a" value="A"/><given><extension url="http://e.org/x"><valueDecimal value="1.50"/></extension></given>"#), "{xml}");
    }

    #[test]
    fn line_breaks_in_values_survive_attribute_normalisation() {
        let xml = to_xml(&json!({"resourceType": "Patient", "id": "x", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">a</div>"}, "extension": [{"url": "u", "valueMarkdown": "a\n\"b\" & <c>"}]}), false).unwrap();
        assert!(
            xml.contains(r#"value="a&#10;&quot;b&quot; &amp; &lt;c&gt;""#),
            "{xml}"
        );
    }

    #[test]
    fn a_property_of_no_element_cannot_be_written() {
        assert!(to_xml(&json!({"resourceType": "Patient", "colour": "blue"}), false).is_err());
    }
}
