//! The XPath 1.0 subset of XML Patch selectors (RFC 5261, section 3 and the `xpath` types of
//! its schema, section 8.2): an optional `/` or an `id('…')` start, then location steps on the
//! child axis — element name tests (`name`, `prefix:name`, `*`, `prefix:*`) with predicates — and
//! a last step that may select an attribute (`@name`), a namespace (`namespace::prefix`), a text
//! node (`text()`), a comment (`comment()`) or a processing instruction
//! (`processing-instruction('target')`). Predicates are positions (`[2]`), and a child element,
//! an attribute or the node itself, alone (`[name]`, `[@name]`) or compared with a string
//! literal (`[name='v']`, `[@name="v"]`, `[.='v']`).
//!
//! Prefixes are resolved when the selector is read, with the namespaces in scope at the patch
//! operation; an unprefixed element name is in the default namespace in scope there (RFC 5261,
//! 4.2.1), an unprefixed attribute name in none.

use super::dom::{Dom, Kind, Name, NodeId, XML_NS};

/// What a selector selects: a node of the tree, an attribute of an element (by index), or a
/// namespace in scope at an element (by prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    Node(NodeId),
    Attribute(NodeId, usize),
    Namespace(NodeId, String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone)]
enum NameTest {
    Any,
    AnyIn(Option<String>),
    Name(Option<String>, String),
}

impl NameTest {
    fn matches(&self, name: &Name) -> bool {
        match self {
            NameTest::Any => true,
            NameTest::AnyIn(ns) => &name.namespace == ns,
            NameTest::Name(ns, local) => &name.namespace == ns && &name.local == local,
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    Element(NameTest),
    Attribute(NameTest),
    Namespace(String),
    Text,
    Comment,
    ProcessingInstruction(Option<String>),
}

#[derive(Debug, Clone)]
enum Operand {
    Child(NameTest),
    Attribute(NameTest),
    Context,
}

#[derive(Debug, Clone)]
enum Predicate {
    Position(usize),
    Exists(Operand),
    Equals(Operand, String),
}

#[derive(Debug, Clone)]
struct Step {
    test: Test,
    predicates: Vec<Predicate>,
}

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    id: Option<String>,
    steps: Vec<Step>,
}

impl Selector {
    /// Reads a selector; `namespace` resolves a prefix (`None`: the default namespace) in
    /// scope at the operation.
    pub fn parse(
        text: &str,
        namespace: &dyn Fn(Option<&str>) -> Option<String>,
    ) -> Result<Selector, SelectorError> {
        let mut parser = Parser {
            text,
            at: 0,
            namespace,
        };
        let selector = parser.selector()?;
        Ok(selector)
    }

    /// The selector as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every node the selector selects in `dom`, in document order.
    pub fn select(&self, dom: &Dom) -> Vec<Hit> {
        let mut context: Vec<Hit> = match &self.id {
            None => vec![Hit::Node(Dom::DOCUMENT)],
            Some(id) => {
                let mut found = Vec::new();
                elements_with_xml_id(dom, Dom::DOCUMENT, id, &mut found);
                found.into_iter().map(Hit::Node).collect()
            }
        };
        for step in &self.steps {
            let mut next = Vec::new();
            for hit in &context {
                let Hit::Node(node) = *hit else { continue };
                let mut candidates = candidates(dom, node, &step.test);
                for predicate in &step.predicates {
                    candidates = candidates
                        .into_iter()
                        .enumerate()
                        .filter(|(index, hit)| holds(dom, hit, *index + 1, predicate))
                        .map(|(_, hit)| hit)
                        .collect();
                }
                next.extend(candidates);
            }
            context = next;
        }
        context
    }
}

/// Elements whose `xml:id` is `id` (without a DTD, the only attributes of type ID).
fn elements_with_xml_id(dom: &Dom, node: NodeId, id: &str, found: &mut Vec<NodeId>) {
    if let Kind::Element { attributes, .. } = &dom.node(node).kind {
        if attributes.iter().any(|a| {
            a.name.namespace.as_deref() == Some(XML_NS) && a.name.local == "id" && a.value == id
        }) {
            found.push(node);
        }
    }
    for &child in dom.children(node) {
        elements_with_xml_id(dom, child, id, found);
    }
}

fn candidates(dom: &Dom, node: NodeId, test: &Test) -> Vec<Hit> {
    let children = dom.children(node).iter().copied();
    match test {
        Test::Element(name) => children
            .filter(|&c| matches!(&dom.node(c).kind, Kind::Element { name: n, .. } if name.matches(n)))
            .map(Hit::Node)
            .collect(),
        Test::Text => children
            .filter(|&c| matches!(dom.node(c).kind, Kind::Text(_)))
            .map(Hit::Node)
            .collect(),
        Test::Comment => children
            .filter(|&c| matches!(dom.node(c).kind, Kind::Comment(_)))
            .map(Hit::Node)
            .collect(),
        Test::ProcessingInstruction(target) => children
            .filter(|&c| matches!(&dom.node(c).kind, Kind::ProcessingInstruction { target: t, .. } if target.as_ref().is_none_or(|w| w == t)))
            .map(Hit::Node)
            .collect(),
        Test::Attribute(name) => match &dom.node(node).kind {
            Kind::Element { attributes, .. } => attributes
                .iter()
                .enumerate()
                .filter(|(_, a)| name.matches(&a.name))
                .map(|(i, _)| Hit::Attribute(node, i))
                .collect(),
            _ => Vec::new(),
        },
        Test::Namespace(prefix) => {
            if dom.is_element(node) && dom.lookup_namespace(node, Some(prefix)).is_some() {
                vec![Hit::Namespace(node, prefix.clone())]
            } else {
                Vec::new()
            }
        }
    }
}

fn holds(dom: &Dom, hit: &Hit, position: usize, predicate: &Predicate) -> bool {
    match predicate {
        Predicate::Position(n) => position == *n,
        Predicate::Exists(operand) => !values(dom, hit, operand).is_empty(),
        Predicate::Equals(operand, literal) => {
            values(dom, hit, operand).iter().any(|v| v == literal)
        }
    }
}

/// The string values an operand stands for at a hit (a node-set, as strings).
fn values(dom: &Dom, hit: &Hit, operand: &Operand) -> Vec<String> {
    match (operand, hit) {
        (Operand::Context, Hit::Node(node)) => vec![dom.string_value(*node)],
        (Operand::Context, Hit::Attribute(node, index)) => match &dom.node(*node).kind {
            Kind::Element { attributes, .. } => vec![attributes[*index].value.clone()],
            _ => Vec::new(),
        },
        (Operand::Context, Hit::Namespace(node, prefix)) => dom
            .lookup_namespace(*node, Some(prefix))
            .into_iter()
            .collect(),
        (Operand::Child(name), Hit::Node(node)) => dom
            .children(*node)
            .iter()
            .filter(
                |&&c| matches!(&dom.node(c).kind, Kind::Element { name: n, .. } if name.matches(n)),
            )
            .map(|&c| dom.string_value(c))
            .collect(),
        (Operand::Attribute(name), Hit::Node(node)) => match &dom.node(*node).kind {
            Kind::Element { attributes, .. } => attributes
                .iter()
                .filter(|a| name.matches(&a.name))
                .map(|a| a.value.clone())
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    namespace: &'a dyn Fn(Option<&str>) -> Option<String>,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> SelectorError {
        SelectorError(format!(
            "The selector '{}' is not in XML Patch's XPath subset (RFC 5261): {what} at \
             character {}",
            self.text,
            self.at + 1
        ))
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start_matches([' ', '\t', '\r', '\n']);
        self.at = self.text.len() - trimmed.len();
    }

    fn selector(&mut self) -> Result<Selector, SelectorError> {
        let mut id = None;
        let mut steps = Vec::new();
        if self.eat("id(") {
            self.skip_space();
            id = Some(self.literal()?);
            self.skip_space();
            if !self.eat(")") {
                return Err(self.error("')' expected after the id"));
            }
            if self.at == self.text.len() {
                return Ok(Selector {
                    text: self.text.to_owned(),
                    id,
                    steps,
                });
            }
            if !self.eat("/") {
                return Err(self.error("'/' expected after id(…)"));
            }
        } else {
            self.eat("/");
        }
        loop {
            if self.rest().starts_with('/') {
                return Err(self.error("'//' (the descendant axis) is not in the subset"));
            }
            let step = self.step()?;
            let last = !matches!(step.test, Test::Element(_));
            steps.push(step);
            if self.at == self.text.len() {
                break;
            }
            if last {
                return Err(self.error(
                    "an attribute, namespace, text, comment or processing instruction step \
                     must be the last",
                ));
            }
            if !self.eat("/") {
                return Err(self.error("'/' or '[' expected"));
            }
        }
        Ok(Selector {
            text: self.text.to_owned(),
            id,
            steps,
        })
    }

    fn step(&mut self) -> Result<Step, SelectorError> {
        let test = if self.eat("@") {
            Test::Attribute(self.name_test(false)?)
        } else if self.eat("namespace::") {
            let prefix = self
                .ncname()
                .ok_or_else(|| self.error("a prefix expected"))?;
            Test::Namespace(prefix)
        } else if self.eat("text()") {
            Test::Text
        } else if self.eat("comment()") {
            Test::Comment
        } else if self.eat("processing-instruction(") {
            self.skip_space();
            let target = if self.rest().starts_with(['\'', '"']) {
                Some(self.literal()?)
            } else {
                None
            };
            self.skip_space();
            if !self.eat(")") {
                return Err(self.error("')' expected"));
            }
            Test::ProcessingInstruction(target)
        } else {
            Test::Element(self.name_test(true)?)
        };
        let mut predicates = Vec::new();
        while self.eat("[") {
            self.skip_space();
            predicates.push(self.predicate()?);
            self.skip_space();
            if !self.eat("]") {
                return Err(self.error("']' expected"));
            }
        }
        Ok(Step { test, predicates })
    }

    fn predicate(&mut self) -> Result<Predicate, SelectorError> {
        let digits: String = self
            .rest()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if !digits.is_empty() {
            self.at += digits.len();
            let n = digits
                .parse::<usize>()
                .map_err(|_| self.error("a position too large"))?;
            return Ok(Predicate::Position(n));
        }
        let operand = if self.eat("@") {
            Operand::Attribute(self.name_test(false)?)
        } else if self.eat(".") {
            Operand::Context
        } else {
            Operand::Child(self.name_test(true)?)
        };
        self.skip_space();
        if self.eat("=") {
            self.skip_space();
            let literal = self.literal()?;
            Ok(Predicate::Equals(operand, literal))
        } else {
            Ok(Predicate::Exists(operand))
        }
    }

    fn literal(&mut self) -> Result<String, SelectorError> {
        let quote = self
            .rest()
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or_else(|| self.error("a quoted string expected"))?;
        let body = &self.rest()[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| self.error("an unterminated string"))?;
        let literal = body[..end].to_owned();
        self.at += end + 2;
        Ok(literal)
    }

    fn ncname(&mut self) -> Option<String> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        if !(first.is_alphabetic() || first == '_') {
            return None;
        }
        let end = chars
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '\u{B7}')))
            .map_or(rest.len(), |(i, _)| i);
        let name = rest[..end].to_owned();
        self.at += end;
        Some(name)
    }

    /// `*`, `prefix:*`, `name` or `prefix:name`; an unprefixed element name is in the default
    /// namespace in scope, an unprefixed attribute name in none.
    fn name_test(&mut self, element: bool) -> Result<NameTest, SelectorError> {
        if self.eat("*") {
            return Ok(NameTest::Any);
        }
        let first = self.ncname().ok_or_else(|| self.error("a name expected"))?;
        if self.rest().starts_with(':') && !self.rest().starts_with("::") {
            self.at += 1;
            let namespace = self.resolve(&first)?;
            if self.eat("*") {
                return Ok(NameTest::AnyIn(Some(namespace)));
            }
            let local = self
                .ncname()
                .ok_or_else(|| self.error("a local name expected after the prefix"))?;
            return Ok(NameTest::Name(Some(namespace), local));
        }
        if self.rest().starts_with("::") || self.rest().starts_with('(') {
            return Err(self.error(&format!(
                "'{first}' (an axis or function) is not in the subset"
            )));
        }
        let namespace = if element {
            (self.namespace)(None).filter(|ns| !ns.is_empty())
        } else {
            None
        };
        Ok(NameTest::Name(namespace, first))
    }

    fn resolve(&self, prefix: &str) -> Result<String, SelectorError> {
        (self.namespace)(Some(prefix)).ok_or_else(|| {
            SelectorError(format!(
                "The selector '{}' uses the prefix '{prefix}', which is not declared in the \
                 patch",
                self.text
            ))
        })
    }
}
