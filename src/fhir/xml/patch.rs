//! XML Patch (RFC 5261; the `application/xml-patch+xml` media type of RFC 7351), as FHIR's
//! PATCH interaction takes it (http page, "patch"): the resource is written as FHIR XML by the
//! server's writer, the diff's operations are applied in order, and the result is read back by
//! the server's XML reader, so it meets every rule an XML body meets.
//!
//! A diff document is an element (`<diff>` in RFC 7351, any name here, as RFC 5261 defines only
//! its content) holding `add`, `replace` and `remove` operations. Each has a selector (`sel`, in
//! the XPath subset of [`super::xpath`]) that must select exactly one node:
//! - `add` appends its content to the selected element, or with `pos` puts it `before` or
//!   `after` the selected node or `prepend`s it to the element's children; with `type="@name"`
//!   it adds an attribute and with `type="namespace::prefix"` a namespace declaration, whose
//!   value is the operation's text;
//! - `replace` puts one element in place of an element, one comment in place of a comment, one
//!   processing instruction in place of one, or the operation's text in place of an attribute's
//!   value, a text node or a namespace declaration's URI;
//! - `remove` removes an element, attribute, namespace declaration, text node, comment or
//!   processing instruction, with `ws="before|after|both"` the white space next to it.
//!
//! Selector prefixes are the diff's namespace declarations in scope at the operation; `f` (FHIR)
//! and `h` (XHTML), the prefixes FHIR's own XPath uses, are bound when the diff does not declare
//! them. A diff that is not one (not well-formed, an unknown operation or attribute, a selector
//! outside the subset, an undeclared prefix) is [`XmlPatchError::Malformed`]; one that cannot
//! be applied (a selector matching no node or several, content that does not fit the node) is
//! [`XmlPatchError::Unapplicable`].

use std::sync::Arc;

use roxmltree::Node as XmlNode;
use serde_json::Value;

use super::dom::{Attribute, Dom, Kind, Name, NodeId};
use super::xpath::{Hit, Selector};
use super::{FHIR_NS, XHTML_NS};

#[derive(Debug, Clone, thiserror::Error)]
pub enum XmlPatchError {
    /// The diff is not a valid XML Patch document (400).
    #[error("{0}")]
    Malformed(String),
    /// The diff cannot be applied to this document (422).
    #[error("{0}")]
    Unapplicable(String),
    /// The current resource cannot be written as XML: a fault of the server.
    #[error("{0}")]
    Unwritable(String),
}

use XmlPatchError::{Malformed, Unapplicable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Before,
    After,
    Prepend,
}

#[derive(Debug, Clone)]
enum AddType {
    Attribute(Name),
    Namespace(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whitespace {
    Before,
    After,
    Both,
}

#[derive(Debug, Clone)]
enum Directive {
    Add {
        pos: Option<Position>,
        kind: Option<AddType>,
    },
    Replace,
    Remove {
        ws: Option<Whitespace>,
    },
}

#[derive(Debug, Clone)]
struct Operation {
    directive: Directive,
    selector: Selector,
    /// The operation's child nodes, unlinked in the diff's arena.
    content: Vec<NodeId>,
    /// The text of the operation (its text children), for attribute, namespace and text values.
    text: String,
    /// The operation as `<add sel="…">`, for messages.
    label: String,
}

/// A parsed XML Patch document.
#[derive(Debug, Clone)]
pub struct Diff {
    operations: Vec<Operation>,
    content: Arc<Dom>,
}

impl Diff {
    /// Reads a diff document.
    pub fn parse(body: &[u8]) -> Result<Diff, XmlPatchError> {
        let document = super::read::well_formed(body)
            .map_err(|e| Malformed(format!("The XML Patch document is refused: {e}")))?;
        let root = document.root_element();
        let mut content = Dom::new();
        let mut operations = Vec::new();
        for child in root.children() {
            if child.is_text() {
                if !child.text().unwrap_or("").trim().is_empty() {
                    return Err(Malformed(format!(
                        "The XML Patch document <{}> holds text between its operations; it holds \
                         only add, replace and remove elements",
                        root.tag_name().name()
                    )));
                }
                continue;
            }
            if !child.is_element() {
                continue;
            }
            operations.push(operation(child, &mut content)?);
        }
        if operations.is_empty() {
            return Err(Malformed(format!(
                "The XML Patch document <{}> has no operations (add, replace or remove)",
                root.tag_name().name()
            )));
        }
        Ok(Diff {
            operations,
            content: Arc::new(content),
        })
    }

    /// Applies the operations in order to `target` (left half-patched on error: callers
    /// discard it).
    pub fn apply(&self, target: &mut Dom) -> Result<(), XmlPatchError> {
        if target.root_element().is_none() {
            return Err(Unapplicable("There is no target document to patch".into()));
        }
        for operation in &self.operations {
            self.apply_one(operation, target)?;
        }
        Ok(())
    }

    /// Applies the diff to an XML document given as text; the patched document as text.
    pub fn apply_to_text(&self, target: &str) -> Result<String, XmlPatchError> {
        let document = super::read::well_formed(target.as_bytes())
            .map_err(|e| Unapplicable(format!("The target is not well-formed XML: {e}")))?;
        let mut dom = Dom::from_document(&document).map_err(|e| Unapplicable(e.0))?;
        self.apply(&mut dom)?;
        Ok(dom.to_xml())
    }

    /// Applies the diff to a resource: written as FHIR XML, patched, and read back as the
    /// server reads an XML body (a result that is no valid FHIR XML is unapplicable).
    pub fn apply_to_resource(&self, resource: &Value) -> Result<Value, XmlPatchError> {
        let xml = super::to_xml(resource, false).map_err(|e| {
            XmlPatchError::Unwritable(format!("The resource cannot be written as XML: {}", e.0))
        })?;
        let patched = self.apply_to_text(&xml)?;
        super::parse(patched.as_bytes()).map_err(|e| {
            Unapplicable(format!(
                "The patched document is not a valid FHIR resource in XML: {e}"
            ))
        })
    }

    fn apply_one(&self, op: &Operation, target: &mut Dom) -> Result<(), XmlPatchError> {
        let hits = op.selector.select(target);
        let hit = match hits.as_slice() {
            [hit] => hit.clone(),
            [] => {
                return Err(Unapplicable(format!(
                    "{}: the selector matches no node",
                    op.label
                )))
            }
            more => {
                return Err(Unapplicable(format!(
                    "{}: the selector matches {} nodes; it must match exactly one",
                    op.label,
                    more.len()
                )))
            }
        };
        match &op.directive {
            Directive::Add { pos, kind } => self.add(op, target, hit, *pos, kind.as_ref()),
            Directive::Replace => self.replace(op, target, hit),
            Directive::Remove { ws } => remove(op, target, hit, *ws),
        }
    }

    /// The operation's content copied into `target`, unlinked.
    fn copy_content(&self, op: &Operation, target: &mut Dom) -> Vec<NodeId> {
        op.content
            .iter()
            .map(|&node| target.copy_from(&self.content, node))
            .collect()
    }

    fn add(
        &self,
        op: &Operation,
        target: &mut Dom,
        hit: Hit,
        pos: Option<Position>,
        kind: Option<&AddType>,
    ) -> Result<(), XmlPatchError> {
        let Hit::Node(node) = hit else {
            return Err(Unapplicable(format!(
                "{}: the selector selects an attribute or namespace; add needs an element or, \
                 with pos before/after, a node",
                op.label
            )));
        };
        if let Some(kind) = kind {
            let Kind::Element {
                attributes,
                namespaces,
                ..
            } = target.kind_mut(node)
            else {
                return Err(Unapplicable(format!(
                    "{}: an attribute or namespace is added to an element, and the selector \
                     selects another node",
                    op.label
                )));
            };
            match kind {
                AddType::Attribute(name) => {
                    if attributes.iter().any(|a| a.name.same(name)) {
                        return Err(Unapplicable(format!(
                            "{}: the element already has the attribute '{}'; use replace",
                            op.label, name.local
                        )));
                    }
                    attributes.push(Attribute {
                        name: name.clone(),
                        value: op.text.clone(),
                    });
                }
                AddType::Namespace(prefix) => {
                    if namespaces.iter().any(|(p, _)| p.as_deref() == Some(prefix)) {
                        return Err(Unapplicable(format!(
                            "{}: the element already declares the prefix '{prefix}'",
                            op.label
                        )));
                    }
                    namespaces.push((Some(prefix.clone()), op.text.trim().to_owned()));
                }
            }
            return Ok(());
        }
        match pos {
            None | Some(Position::Prepend) => {
                if !target.is_element(node) {
                    return Err(Unapplicable(format!(
                        "{}: content is added to an element, and the selector selects another \
                         node",
                        op.label
                    )));
                }
                let index = match pos {
                    Some(Position::Prepend) => 0,
                    _ => target.children(node).len(),
                };
                let nodes = self.copy_content(op, target);
                target.insert(node, index, &nodes);
            }
            Some(position) => {
                let (parent, index) = target.index_in_parent(node).ok_or_else(|| {
                    Unapplicable(format!("{}: the selected node has no parent", op.label))
                })?;
                if parent == Dom::DOCUMENT && !only_comments_and_pis(&self.content, &op.content) {
                    return Err(Unapplicable(format!(
                        "{}: only comments and processing instructions can be added beside the \
                         root element",
                        op.label
                    )));
                }
                let at = if position == Position::Before {
                    index
                } else {
                    index + 1
                };
                let nodes = self.copy_content(op, target);
                target.insert(parent, at, &nodes);
            }
        }
        Ok(())
    }

    fn replace(&self, op: &Operation, target: &mut Dom, hit: Hit) -> Result<(), XmlPatchError> {
        let text_only = op
            .content
            .iter()
            .all(|&c| matches!(self.content.node(c).kind, Kind::Text(_)));
        if matches!(hit, Hit::Attribute(..) | Hit::Namespace(..)) && !text_only {
            return Err(Unapplicable(format!(
                "{}: an attribute value or a namespace URI is replaced by text only",
                op.label
            )));
        }
        match hit {
            Hit::Attribute(element, index) => {
                if let Kind::Element { attributes, .. } = target.kind_mut(element) {
                    attributes[index].value = op.text.clone();
                }
                Ok(())
            }
            Hit::Namespace(element, prefix) => {
                let uri = op.text.trim();
                if uri.is_empty() {
                    return Err(Unapplicable(format!(
                        "{}: a namespace declaration cannot be replaced by an empty URI",
                        op.label
                    )));
                }
                match target.kind_mut(element) {
                    Kind::Element { namespaces, .. } => {
                        match namespaces
                            .iter_mut()
                            .find(|(p, _)| p.as_deref() == Some(&prefix))
                        {
                            Some(declaration) => {
                                declaration.1 = uri.to_owned();
                                target.rebind_prefix(element, &prefix, uri);
                                Ok(())
                            }
                            None => Err(Unapplicable(format!(
                                "{}: the prefix '{prefix}' is declared on an ancestor, not on \
                                 the selected element",
                                op.label
                            ))),
                        }
                    }
                    _ => Err(Unapplicable(format!("{}: not an element", op.label))),
                }
            }
            Hit::Node(node) => {
                let (parent, index) = target.index_in_parent(node).ok_or_else(|| {
                    Unapplicable(format!("{}: the selected node has no parent", op.label))
                })?;
                let significant: Vec<NodeId> = op
                    .content
                    .iter()
                    .copied()
                    .filter(|&c| !is_whitespace(&self.content, c))
                    .collect();
                let fits = |wanted: fn(&Kind) -> bool| {
                    significant.len() == 1 && wanted(&self.content.node(significant[0]).kind)
                };
                match &target.node(node).kind {
                    Kind::Text(_) => {
                        if !text_only {
                            return Err(Unapplicable(format!(
                                "{}: a text node is replaced by text only",
                                op.label
                            )));
                        }
                        // Replaced by empty text, the text node is gone (an empty text node
                        // is no node).
                        target.detach(node);
                        let text = target.push(Kind::Text(op.text.clone()));
                        target.insert(parent, index, &[text]);
                        return Ok(());
                    }
                    Kind::Element { .. } => {
                        if !fits(|k| matches!(k, Kind::Element { .. })) {
                            return Err(Unapplicable(format!(
                                "{}: an element is replaced by exactly one element",
                                op.label
                            )));
                        }
                    }
                    Kind::Comment(_) => {
                        if !fits(|k| matches!(k, Kind::Comment(_))) {
                            return Err(Unapplicable(format!(
                                "{}: a comment is replaced by exactly one comment",
                                op.label
                            )));
                        }
                    }
                    Kind::ProcessingInstruction { .. } => {
                        if !fits(|k| matches!(k, Kind::ProcessingInstruction { .. })) {
                            return Err(Unapplicable(format!(
                                "{}: a processing instruction is replaced by exactly one \
                                 processing instruction",
                                op.label
                            )));
                        }
                    }
                    Kind::Document => {
                        return Err(Unapplicable(format!(
                            "{}: the document node cannot be replaced",
                            op.label
                        )))
                    }
                }
                let replacement = target.copy_from(&self.content, significant[0]);
                target.detach(node);
                target.insert(parent, index, &[replacement]);
                Ok(())
            }
        }
    }
}

fn remove(
    op: &Operation,
    target: &mut Dom,
    hit: Hit,
    ws: Option<Whitespace>,
) -> Result<(), XmlPatchError> {
    let node = match hit {
        Hit::Attribute(element, index) => {
            if ws.is_some() {
                return Err(ws_not_here(op));
            }
            if let Kind::Element { attributes, .. } = target.kind_mut(element) {
                attributes.remove(index);
            }
            return Ok(());
        }
        Hit::Namespace(element, prefix) => {
            if ws.is_some() {
                return Err(ws_not_here(op));
            }
            let declared = matches!(&target.node(element).kind,
                Kind::Element { namespaces, .. } if namespaces.iter().any(|(p, _)| p.as_deref() == Some(&prefix)));
            if !declared {
                return Err(Unapplicable(format!(
                    "{}: the prefix '{prefix}' is declared on an ancestor, not on the selected \
                     element",
                    op.label
                )));
            }
            if target.uses_prefix(element, Some(&prefix)) {
                return Err(Unapplicable(format!(
                    "{}: the prefix '{prefix}' is still used by the element or its content",
                    op.label
                )));
            }
            if let Kind::Element { namespaces, .. } = target.kind_mut(element) {
                namespaces.retain(|(p, _)| p.as_deref() != Some(&prefix));
            }
            return Ok(());
        }
        Hit::Node(node) => node,
    };
    let (parent, index) = target
        .index_in_parent(node)
        .ok_or_else(|| Unapplicable(format!("{}: the node has no parent", op.label)))?;
    if parent == Dom::DOCUMENT && target.is_element(node) {
        return Err(Unapplicable(format!(
            "{}: the root element cannot be removed",
            op.label
        )));
    }
    if let Some(ws) = ws {
        if matches!(target.node(node).kind, Kind::Text(_)) {
            return Err(ws_not_here(op));
        }
        let siblings = target.children(parent).to_vec();
        let before = index
            .checked_sub(1)
            .map(|i| siblings[i])
            .filter(|&s| is_whitespace(target, s));
        let after = siblings
            .get(index + 1)
            .copied()
            .filter(|&s| is_whitespace(target, s));
        let wanted: Vec<(Option<NodeId>, &str)> = match ws {
            Whitespace::Before => vec![(before, "before")],
            Whitespace::After => vec![(after, "after")],
            Whitespace::Both => vec![(before, "before"), (after, "after")],
        };
        for (found, side) in &wanted {
            if found.is_none() {
                return Err(Unapplicable(format!(
                    "{}: there is no white space {side} the node to remove (ws)",
                    op.label
                )));
            }
        }
        for (found, _) in wanted {
            target.detach(found.expect("checked above"));
        }
    }
    target.detach(node);
    Ok(())
}

fn ws_not_here(op: &Operation) -> XmlPatchError {
    Unapplicable(format!(
        "{}: ws removes the white space around an element, comment or processing instruction, \
         not around this node",
        op.label
    ))
}

fn is_whitespace(dom: &Dom, node: NodeId) -> bool {
    matches!(&dom.node(node).kind, Kind::Text(t) if t.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')))
}

fn only_comments_and_pis(dom: &Dom, nodes: &[NodeId]) -> bool {
    nodes.iter().all(|&n| {
        matches!(
            dom.node(n).kind,
            Kind::Comment(_) | Kind::ProcessingInstruction { .. }
        ) || is_whitespace(dom, n)
    })
}

/// Reads one operation element of the diff.
fn operation(element: XmlNode, content: &mut Dom) -> Result<Operation, XmlPatchError> {
    let name = element.tag_name().name();
    let mut sel = None;
    let mut pos = None;
    let mut add_type = None;
    let mut ws = None;
    for attribute in element.attributes() {
        let value = attribute.value();
        match (name, attribute.namespace(), attribute.name()) {
            (_, None, "sel") => sel = Some(value),
            ("add", None, "pos") => {
                pos = Some(match value {
                    "before" => Position::Before,
                    "after" => Position::After,
                    "prepend" => Position::Prepend,
                    other => {
                        return Err(Malformed(format!(
                            "<add pos=\"{other}\">: pos is before, after or prepend"
                        )))
                    }
                })
            }
            ("add", None, "type") => add_type = Some(value),
            ("remove", None, "ws") => {
                ws = Some(match value {
                    "before" => Whitespace::Before,
                    "after" => Whitespace::After,
                    "both" => Whitespace::Both,
                    other => {
                        return Err(Malformed(format!(
                            "<remove ws=\"{other}\">: ws is before, after or both"
                        )))
                    }
                })
            }
            (_, Some(_), _) => {}
            (_, None, other) if matches!(name, "add" | "replace" | "remove") => {
                return Err(Malformed(format!(
                    "<{name}> has no attribute '{other}' (RFC 5261)"
                )))
            }
            _ => {}
        }
    }
    if !matches!(name, "add" | "replace" | "remove") {
        return Err(Malformed(format!(
            "<{name}> is no XML Patch operation: the operations are add, replace and remove"
        )));
    }
    let sel = sel.ok_or_else(|| Malformed(format!("<{name}> needs a sel attribute")))?;
    let label = format!("<{name} sel=\"{sel}\">");
    let namespace = |prefix: Option<&str>| -> Option<String> {
        match prefix {
            None => element.default_namespace().map(str::to_owned),
            Some(prefix) => element
                .lookup_namespace_uri(Some(prefix))
                .map(str::to_owned)
                .or(match prefix {
                    "f" => Some(FHIR_NS.to_owned()),
                    "h" => Some(XHTML_NS.to_owned()),
                    _ => None,
                }),
        }
    };
    let selector =
        Selector::parse(sel, &namespace).map_err(|e| Malformed(format!("{label}: {e}")))?;
    let mut nodes = Vec::new();
    let mut text = String::new();
    for child in element.children() {
        if child.is_text() {
            text.push_str(child.text().unwrap_or(""));
        }
        nodes.push(
            content
                .import(child, 2)
                .map_err(|e| Malformed(format!("{label}: {e}")))?,
        );
    }
    let directive = match name {
        "add" => {
            let kind = match add_type {
                None => None,
                Some(t) => Some(if let Some(attribute) = t.strip_prefix('@') {
                    let (prefix, local) = match attribute.split_once(':') {
                        Some((p, l)) => (Some(p), l),
                        None => (None, attribute),
                    };
                    let namespace = match prefix {
                        None => None,
                        Some(p) => Some(namespace(Some(p)).ok_or_else(|| {
                            Malformed(format!("{label}: the prefix '{p}' is not declared"))
                        })?),
                    };
                    if !is_ncname(local) || prefix.is_some_and(|p| !is_ncname(p)) {
                        return Err(Malformed(format!(
                            "{label}: type=\"{t}\" is no attribute name"
                        )));
                    }
                    AddType::Attribute(Name {
                        namespace,
                        local: local.to_owned(),
                        prefix: prefix.map(str::to_owned),
                    })
                } else if let Some(prefix) = t.strip_prefix("namespace::") {
                    if !is_ncname(prefix) || prefix == "xml" || prefix == "xmlns" {
                        return Err(Malformed(format!(
                            "{label}: type=\"{t}\" is no namespace prefix"
                        )));
                    }
                    AddType::Namespace(prefix.to_owned())
                } else {
                    return Err(Malformed(format!(
                        "{label}: type is '@name' (an attribute) or 'namespace::prefix', not \
                         '{t}'"
                    )));
                }),
            };
            if kind.is_some() {
                if pos.is_some() {
                    return Err(Malformed(format!(
                        "{label}: pos does not go with type (an attribute or namespace has no \
                         position)"
                    )));
                }
                if element.children().any(|c| !c.is_text()) {
                    return Err(Malformed(format!(
                        "{label}: an attribute or namespace value is text only"
                    )));
                }
            } else if nodes.is_empty() {
                return Err(Malformed(format!("{label} has no content to add")));
            }
            Directive::Add { pos, kind }
        }
        "replace" => Directive::Replace,
        _ => {
            if element
                .children()
                .any(|c| !c.is_text() || !c.text().unwrap_or("").trim().is_empty())
            {
                return Err(Malformed(format!("{label}: remove has no content")));
            }
            Directive::Remove { ws }
        }
    };
    Ok(Operation {
        directive,
        selector,
        content: nodes,
        text,
        label,
    })
}

fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
