//! The narrative rules (R4 narrative.html, "Narrative", txt-1 and txt-2) on a `div` read from
//! XML: the root is an XHTML `div`; only the basic formatting elements of HTML 4.0 chapters
//! 7-11 (except section 4 of chapter 9) and 15, `a` and `img` (txt-1) — so no `head`, `body`,
//! scripts, styles sheets, forms, base/link, frames, iframes or objects; no event attributes
//! (`on…`), no `javascript:` links, no attribute from another namespace (xlink); and some
//! non-whitespace content or an image (txt-2).

use roxmltree::Node;

use super::XHTML_NS;

/// The XHTML elements txt-1 allows.
const ALLOWED: &[&str] = &[
    // chapter 7 (the global structure: bodies and headings, not html/head/body/title/meta)
    "div",
    "span",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "address",
    // chapter 8 (language and direction)
    "bdo",
    // chapter 9 (text), without section 4 (ins, del)
    "em",
    "strong",
    "dfn",
    "code",
    "samp",
    "kbd",
    "var",
    "cite",
    "abbr",
    "acronym",
    "blockquote",
    "q",
    "sub",
    "sup",
    "p",
    "br",
    "pre",
    // chapter 10 (lists)
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    // chapter 11 (tables)
    "table",
    "caption",
    "thead",
    "tfoot",
    "tbody",
    "colgroup",
    "col",
    "tr",
    "th",
    "td",
    // chapter 15 (alignment and font styles)
    "tt",
    "i",
    "b",
    "big",
    "small",
    "hr",
    // links (name or href) and images
    "a",
    "img",
];

/// Checks a narrative `div` against the rules above; the error says which rule it breaks.
pub fn check(div: Node<'_, '_>) -> Result<(), String> {
    if div.tag_name().name() != "div" || div.tag_name().namespace() != Some(XHTML_NS) {
        return Err(format!(
            "The narrative must be an XHTML div (namespace {XHTML_NS}), not '{}'",
            div.tag_name().name()
        ));
    }
    let mut content = false;
    for node in div.descendants() {
        if node.is_pi() {
            return Err("The narrative may not hold processing instructions".to_owned());
        }
        if node.is_text() {
            content |= node.text().is_some_and(|t| !t.trim().is_empty());
            continue;
        }
        if !node.is_element() {
            continue;
        }
        let name = node.tag_name().name();
        if node.tag_name().namespace() != Some(XHTML_NS) {
            return Err(format!(
                "The narrative may hold only XHTML elements, not '{name}' in namespace {}",
                node.tag_name().namespace().unwrap_or("(none)")
            ));
        }
        if !ALLOWED.contains(&name) {
            return Err(format!(
                "The narrative may not hold a '{name}' element (txt-1: only basic HTML formatting)"
            ));
        }
        content |= name == "img";
        for attribute in node.attributes() {
            let attr = attribute.name();
            if attribute.namespace().is_some_and(|ns| ns != XML_NS) {
                return Err(format!(
                    "The narrative may not hold the attribute '{attr}' of namespace {}",
                    attribute.namespace().unwrap_or_default()
                ));
            }
            if attr.len() > 2 && attr[..2].eq_ignore_ascii_case("on") {
                return Err(format!(
                    "The narrative may not hold event attributes ('{attr}' on '{name}')"
                ));
            }
            if matches!(attr, "href" | "src")
                && attribute
                    .value()
                    .trim_start()
                    .get(..11)
                    .is_some_and(|s| s.eq_ignore_ascii_case("javascript:"))
            {
                return Err(format!(
                    "The narrative may not hold scripts ('{attr}' on '{name}')"
                ));
            }
        }
    }
    if !content {
        return Err(
            "The narrative has no content (txt-2: it must have non-whitespace content)".to_owned(),
        );
    }
    Ok(())
}

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(xml: &str) -> Result<(), String> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        check(doc.root_element())
    }

    #[test]
    fn basic_formatting_is_allowed() {
        check_text(
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p class="x">Ada <b>Byron</b></p><table><tr><td style="color:red">1</td></tr></table></div>"#,
        )
        .unwrap();
    }

    #[test]
    fn a_div_outside_the_xhtml_namespace_is_refused() {
        assert!(check_text("<div>text</div>").is_err());
    }

    #[test]
    fn scripts_forms_and_objects_are_refused() {
        for inner in [
            "<script>x()</script>",
            "<form>f</form>",
            "<object>o</object>",
            "<iframe>i</iframe>",
        ] {
            let xml = format!(r#"<div xmlns="http://www.w3.org/1999/xhtml">t{inner}</div>"#);
            assert!(check_text(&xml).is_err(), "{inner}");
        }
    }

    #[test]
    fn event_attributes_and_javascript_links_are_refused() {
        assert!(check_text(
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onMouseOver="x()">t</p></div>"#
        )
        .is_err());
        assert!(check_text(
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><a href=" JavaScript:x()">t</a></div>"#
        )
        .is_err());
    }

    #[test]
    fn a_narrative_without_content_is_refused() {
        assert!(check_text(r#"<div xmlns="http://www.w3.org/1999/xhtml"> <p/> </div>"#).is_err());
        check_text(r##"<div xmlns="http://www.w3.org/1999/xhtml"><img src="#a"/></div>"##).unwrap();
    }
}
