//! A small mutable XML tree for XML Patch (RFC 5261): roxmltree's trees are read-only, and a
//! patch inserts, replaces and removes nodes. Nodes live in an arena and are addressed by index;
//! removed nodes are only unlinked. Names keep their namespace and the prefix they were written
//! with; writing the tree back declares whatever prefix a name needs that is not in scope
//! (namespace fix-up), so nodes moved from the diff into the target keep their namespaces.

use roxmltree::{Document, Node as XmlNode};

use super::write::{escape_attribute, escape_text};

/// The namespace the `xml` prefix is bound to, always, without a declaration.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// A node's place in the arena.
pub type NodeId = usize;

/// An element or attribute name: namespace, local name, and the prefix it was written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub namespace: Option<String>,
    pub local: String,
    pub prefix: Option<String>,
}

impl Name {
    /// Whether two names are the same expanded name (the prefix does not count).
    pub fn same(&self, other: &Name) -> bool {
        self.namespace == other.namespace && self.local == other.local
    }

    fn written(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}:{}", self.local),
            None => self.local.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: Name,
    pub value: String,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// The document node: the parent of the root element (and of comments around it).
    Document,
    Element {
        name: Name,
        attributes: Vec<Attribute>,
        /// Namespace declarations made on this element: (prefix, `None` for the default, URI).
        namespaces: Vec<(Option<String>, String)>,
    },
    Text(String),
    Comment(String),
    ProcessingInstruction {
        target: String,
        value: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
}

/// An XML document (or the content of a diff operation) as a mutable tree.
#[derive(Debug, Clone)]
pub struct Dom {
    nodes: Vec<Node>,
}

/// The deepest element nesting read into a tree: the resources the server writes stay far
/// below it (JSON's limit is 128), and it bounds the recursion of every walk over the tree.
pub const MAX_DEPTH: usize = 512;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DepthError(pub String);

impl Dom {
    /// The document node.
    pub const DOCUMENT: NodeId = 0;

    /// An empty document.
    pub fn new() -> Dom {
        Dom {
            nodes: vec![Node {
                kind: Kind::Document,
                parent: None,
                children: Vec::new(),
            }],
        }
    }

    /// The tree of a parsed document (its children: the root element, comments, PIs).
    pub fn from_document(document: &Document) -> Result<Dom, DepthError> {
        let mut dom = Dom::new();
        for child in document.root().children() {
            dom.import_under(Dom::DOCUMENT, child, 1)?;
        }
        Ok(dom)
    }

    /// Copies `node` (of a parsed document) and its subtree into this arena, unlinked; returns
    /// its id. Used for the content of diff operations.
    pub fn import(&mut self, node: XmlNode, depth: usize) -> Result<NodeId, DepthError> {
        if depth > MAX_DEPTH {
            return Err(DepthError(format!(
                "The XML nests deeper than {MAX_DEPTH} elements"
            )));
        }
        let kind = if node.is_element() {
            let text = node.document().input_text();
            let parent_scope: Vec<(Option<&str>, &str)> = node
                .parent_element()
                .map(|p| p.namespaces().map(|n| (n.name(), n.uri())).collect())
                .unwrap_or_default();
            let namespaces = node
                .namespaces()
                .filter(|n| n.name() != Some("xml"))
                .filter(|n| !parent_scope.contains(&(n.name(), n.uri())))
                .map(|n| (n.name().map(str::to_owned), n.uri().to_owned()))
                .collect();
            let qname = &text[node.range().start + 1..];
            let qname = &qname[..qname
                .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .unwrap_or(qname.len())];
            let prefix = qname.split_once(':').map(|(p, _)| p.to_owned());
            let attributes = node
                .attributes()
                .map(|a| {
                    let qname = &text[a.range_qname()];
                    Attribute {
                        name: Name {
                            namespace: a.namespace().map(str::to_owned),
                            local: a.name().to_owned(),
                            prefix: qname.split_once(':').map(|(p, _)| p.to_owned()),
                        },
                        value: a.value().to_owned(),
                    }
                })
                .collect();
            Kind::Element {
                name: Name {
                    namespace: node.tag_name().namespace().map(str::to_owned),
                    local: node.tag_name().name().to_owned(),
                    prefix,
                },
                attributes,
                namespaces,
            }
        } else if node.is_text() {
            Kind::Text(node.text().unwrap_or("").to_owned())
        } else if node.is_comment() {
            Kind::Comment(node.text().unwrap_or("").to_owned())
        } else if let Some(pi) = node.pi() {
            Kind::ProcessingInstruction {
                target: pi.target.to_owned(),
                value: pi.value.map(str::to_owned),
            }
        } else {
            Kind::Document
        };
        let id = self.push(kind);
        for child in node.children() {
            self.import_under(id, child, depth + 1)?;
        }
        Ok(id)
    }

    fn import_under(
        &mut self,
        parent: NodeId,
        node: XmlNode,
        depth: usize,
    ) -> Result<(), DepthError> {
        let id = self.import(node, depth)?;
        self.nodes[id].parent = Some(parent);
        self.nodes[parent].children.push(id);
        Ok(())
    }

    /// A new unlinked node.
    pub fn push(&mut self, kind: Kind) -> NodeId {
        self.nodes.push(Node {
            kind,
            parent: None,
            children: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Copies `node` of `other` (with its subtree) into this arena, unlinked.
    pub fn copy_from(&mut self, other: &Dom, node: NodeId) -> NodeId {
        let id = self.push(other.nodes[node].kind.clone());
        for &child in &other.nodes[node].children {
            let copied = self.copy_from(other, child);
            self.nodes[copied].parent = Some(id);
            self.nodes[id].children.push(copied);
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn kind_mut(&mut self, id: NodeId) -> &mut Kind {
        &mut self.nodes[id].kind
    }

    pub fn children(&self, id: NodeId) -> &[NodeId] {
        &self.nodes[id].children
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.nodes[id].parent
    }

    pub fn is_element(&self, id: NodeId) -> bool {
        matches!(self.nodes[id].kind, Kind::Element { .. })
    }

    /// The root element of a document.
    pub fn root_element(&self) -> Option<NodeId> {
        self.children(Dom::DOCUMENT)
            .iter()
            .copied()
            .find(|&c| self.is_element(c))
    }

    /// The position of `id` among its parent's children.
    pub fn index_in_parent(&self, id: NodeId) -> Option<(NodeId, usize)> {
        let parent = self.parent(id)?;
        let index = self.nodes[parent].children.iter().position(|&c| c == id)?;
        Some((parent, index))
    }

    /// Inserts unlinked nodes as children of `parent` at `index`.
    pub fn insert(&mut self, parent: NodeId, index: usize, nodes: &[NodeId]) {
        for (offset, &node) in nodes.iter().enumerate() {
            self.nodes[node].parent = Some(parent);
            self.nodes[parent].children.insert(index + offset, node);
        }
        self.merge_texts(parent);
    }

    /// Unlinks a node from its parent.
    pub fn detach(&mut self, id: NodeId) {
        if let Some((parent, index)) = self.index_in_parent(id) {
            self.nodes[parent].children.remove(index);
            self.nodes[id].parent = None;
            self.merge_texts(parent);
        }
    }

    /// Adjacent text nodes become one, and empty ones go, as in the XPath data model (a parsed
    /// document never has two text nodes side by side).
    fn merge_texts(&mut self, parent: NodeId) {
        let children = std::mem::take(&mut self.nodes[parent].children);
        let mut merged: Vec<NodeId> = Vec::with_capacity(children.len());
        for child in children {
            if let Kind::Text(text) = &self.nodes[child].kind {
                if text.is_empty() {
                    self.nodes[child].parent = None;
                    continue;
                }
                if let Some(&last) = merged.last() {
                    if let Kind::Text(_) = self.nodes[last].kind {
                        let text = text.clone();
                        if let Kind::Text(previous) = &mut self.nodes[last].kind {
                            previous.push_str(&text);
                        }
                        self.nodes[child].parent = None;
                        continue;
                    }
                }
            }
            merged.push(child);
        }
        self.nodes[parent].children = merged;
    }

    /// The namespace URI `prefix` (`None`: the default namespace) is bound to at `id`: the
    /// declarations of `id` and its ancestors; `xml` is always bound.
    pub fn lookup_namespace(&self, id: NodeId, prefix: Option<&str>) -> Option<String> {
        if prefix == Some("xml") {
            return Some(XML_NS.to_owned());
        }
        let mut at = Some(id);
        while let Some(node) = at {
            if let Kind::Element { namespaces, .. } = &self.nodes[node].kind {
                if let Some((_, uri)) = namespaces.iter().find(|(p, _)| p.as_deref() == prefix) {
                    return Some(uri.clone());
                }
            }
            at = self.nodes[node].parent;
        }
        None
    }

    /// The XPath string-value of a node: the text of all its descendants for an element.
    pub fn string_value(&self, id: NodeId) -> String {
        let mut out = String::new();
        self.collect_text(id, &mut out);
        out
    }

    fn collect_text(&self, id: NodeId, out: &mut String) {
        match &self.nodes[id].kind {
            Kind::Text(text) => out.push_str(text),
            Kind::Element { .. } | Kind::Document => {
                for &child in &self.nodes[id].children {
                    if matches!(self.nodes[child].kind, Kind::Text(_) | Kind::Element { .. }) {
                        self.collect_text(child, out);
                    }
                }
            }
            Kind::Comment(text) => out.push_str(text),
            Kind::ProcessingInstruction { value, .. } => {
                out.push_str(value.as_deref().unwrap_or(""))
            }
        }
    }

    /// Whether the element `id` or anything inside it (element names, attributes) uses
    /// `prefix` where it is not declared again.
    pub fn uses_prefix(&self, id: NodeId, prefix: Option<&str>) -> bool {
        let Kind::Element {
            name, attributes, ..
        } = &self.nodes[id].kind
        else {
            return false;
        };
        if name.prefix.as_deref() == prefix
            || (prefix.is_some()
                && attributes
                    .iter()
                    .any(|a| a.name.prefix.as_deref() == prefix))
        {
            return true;
        }
        self.nodes[id].children.iter().any(|&child| {
            let redeclared = matches!(&self.nodes[child].kind,
                Kind::Element { namespaces, .. } if namespaces.iter().any(|(p, _)| p.as_deref() == prefix));
            !redeclared && self.uses_prefix(child, prefix)
        })
    }

    /// After the URI of `prefix`'s declaration on `id` changed to `uri`: the element and what
    /// is inside it that is named with `prefix` (where it is not declared again) are now in
    /// `uri`, as the document written with the new declaration reads.
    pub fn rebind_prefix(&mut self, id: NodeId, prefix: &str, uri: &str) {
        if let Kind::Element {
            name, attributes, ..
        } = &mut self.nodes[id].kind
        {
            if name.prefix.as_deref() == Some(prefix) {
                name.namespace = Some(uri.to_owned());
            }
            for attribute in attributes {
                if attribute.name.prefix.as_deref() == Some(prefix) {
                    attribute.name.namespace = Some(uri.to_owned());
                }
            }
        }
        for child in self.nodes[id].children.clone() {
            let redeclared = matches!(&self.nodes[child].kind,
                Kind::Element { namespaces, .. } if namespaces.iter().any(|(p, _)| p.as_deref() == Some(prefix)));
            if !redeclared {
                self.rebind_prefix(child, prefix, uri);
            }
        }
    }

    /// The document written as XML, declaring what each name needs (namespace fix-up).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        let mut scope: Vec<(Option<String>, String)> = Vec::new();
        for &child in &self.nodes[Dom::DOCUMENT].children {
            self.write(child, &mut scope, &mut out);
        }
        out
    }

    fn write(&self, id: NodeId, scope: &mut Vec<(Option<String>, String)>, out: &mut String) {
        match &self.nodes[id].kind {
            Kind::Document => {
                for &child in &self.nodes[id].children {
                    self.write(child, scope, out);
                }
            }
            Kind::Text(text) => escape_text(text, out),
            Kind::Comment(text) => {
                out.push_str("<!--");
                out.push_str(text);
                out.push_str("-->");
            }
            Kind::ProcessingInstruction { target, value } => {
                out.push_str("<?");
                out.push_str(target);
                if let Some(value) = value {
                    out.push(' ');
                    out.push_str(value);
                }
                out.push_str("?>");
            }
            Kind::Element {
                name,
                attributes,
                namespaces,
            } => {
                let depth = scope.len();
                let mut declarations: Vec<(Option<String>, String)> = Vec::new();
                for (prefix, uri) in namespaces {
                    declarations.push((prefix.clone(), uri.clone()));
                    scope.push((prefix.clone(), uri.clone()));
                }
                let bound = |scope: &Vec<(Option<String>, String)>, prefix: Option<&str>| {
                    if prefix == Some("xml") {
                        return Some(XML_NS.to_owned());
                    }
                    scope
                        .iter()
                        .rev()
                        .find(|(p, _)| p.as_deref() == prefix)
                        .map(|(_, u)| u.clone())
                };
                // The element's own name: its prefix must be bound to its namespace here.
                let mut element_name = name.clone();
                let wanted = name.namespace.clone().unwrap_or_default();
                let have = bound(scope, name.prefix.as_deref()).unwrap_or_default();
                if have != wanted {
                    if name.prefix.is_none() || !wanted.is_empty() {
                        declarations.push((name.prefix.clone(), wanted.clone()));
                        scope.push((name.prefix.clone(), wanted));
                    } else {
                        // A prefixed name without a namespace cannot be written: unprefix it.
                        element_name.prefix = None;
                        if bound(scope, None).unwrap_or_default() != "" {
                            declarations.push((None, String::new()));
                            scope.push((None, String::new()));
                        }
                    }
                }
                // Attributes in a namespace need a (non-default) prefix bound to it.
                let mut written_attributes = Vec::with_capacity(attributes.len());
                for attribute in attributes {
                    let mut attribute_name = attribute.name.clone();
                    match &attribute.name.namespace {
                        None => attribute_name.prefix = None,
                        Some(uri) => {
                            let ok = attribute.name.prefix.as_deref().is_some_and(|p| {
                                bound(scope, Some(p)).as_deref() == Some(uri.as_str())
                            });
                            if !ok {
                                let found = scope
                                    .iter()
                                    .rev()
                                    .find(|(p, u)| {
                                        p.is_some()
                                            && u == uri
                                            && bound(scope, p.as_deref()).as_deref()
                                                == Some(uri.as_str())
                                    })
                                    .and_then(|(p, _)| p.clone());
                                let prefix = match found {
                                    Some(prefix) => prefix,
                                    None => {
                                        let mut prefix = attribute
                                            .name
                                            .prefix
                                            .clone()
                                            .filter(|p| bound(scope, Some(p.as_str())).is_none())
                                            .unwrap_or_else(|| "ns1".to_owned());
                                        let mut n = 1;
                                        while bound(scope, Some(prefix.as_str())).is_some() {
                                            n += 1;
                                            prefix = format!("ns{n}");
                                        }
                                        declarations.push((Some(prefix.clone()), uri.clone()));
                                        scope.push((Some(prefix.clone()), uri.clone()));
                                        prefix
                                    }
                                };
                                attribute_name.prefix = Some(prefix);
                            }
                        }
                    }
                    written_attributes.push((attribute_name.written(), &attribute.value));
                }
                out.push('<');
                let qname = element_name.written();
                out.push_str(&qname);
                for (prefix, uri) in &declarations {
                    match prefix {
                        Some(prefix) => {
                            out.push_str(" xmlns:");
                            out.push_str(prefix);
                        }
                        None => out.push_str(" xmlns"),
                    }
                    out.push_str("=\"");
                    escape_attribute(uri, out);
                    out.push('"');
                }
                for (name, value) in written_attributes {
                    out.push(' ');
                    out.push_str(&name);
                    out.push_str("=\"");
                    escape_attribute(value, out);
                    out.push('"');
                }
                if self.nodes[id].children.is_empty() {
                    out.push_str("/>");
                } else {
                    out.push('>');
                    for &child in &self.nodes[id].children {
                        self.write(child, scope, out);
                    }
                    out.push_str("</");
                    out.push_str(&qname);
                    out.push('>');
                }
                scope.truncate(depth);
            }
        }
    }
}

impl Default for Dom {
    fn default() -> Self {
        Dom::new()
    }
}
