//! Tree-walking evaluation: navigation over JSON, variables, type tests.
//!
//! Every expression maps an input collection to an output collection. Path
//! steps flatten JSON arrays, find choice elements by suffix, and keep the
//! `_name` sibling of primitives so `extension()` works on them. Operators
//! live in `ops`, functions in `functions`; this file wires them together.

use std::slice;

use serde_json::Value;

use crate::fhir::member::{field, member, underscored};

use super::decimal::Decimal;
use super::model::{
    choice_suffix_type, fhir_type_matches, is_choice_element, is_datatype, is_resource_type,
    SYSTEM_TYPES,
};
use super::parser::{Expr, Literal, TypeOp, TypeSpec};
use super::{functions, ops, FhirPathError, Item, Node};

pub(crate) type Res<T> = Result<T, FhirPathError>;

/// Evaluation-wide state: the resource the expression runs on, and the environment variables
/// the caller defines (`%current`, `%previous`: an empty collection when `None`).
pub(crate) struct Evaluator<'a> {
    /// `%resource` (and `%context`).
    pub root: &'a Value,
    /// `%rootResource`: the resource that contains `root` when `root` is a contained resource,
    /// else `root` itself.
    pub root_resource: &'a Value,
    pub vars: Vec<(&'a str, Option<&'a Value>)>,
}

/// Per-scope variables: `$this`, `$index`, `$total`.
pub(crate) struct Env<'e, 'a> {
    pub this: &'e Item<'a>,
    pub index: Option<i64>,
    pub total: Option<&'e [Item<'a>]>,
}

pub(crate) fn evaluate<'a>(expr: &Expr, root: &'a Value) -> Res<Vec<Item<'a>>> {
    evaluate_with(expr, root, Vec::new())
}

/// [`evaluate`] with environment variables defined by the caller.
pub(crate) fn evaluate_with<'a>(
    expr: &Expr,
    root: &'a Value,
    vars: Vec<(&'a str, Option<&'a Value>)>,
) -> Res<Vec<Item<'a>>> {
    let ev = Evaluator {
        root,
        root_resource: root,
        vars,
    };
    let this = Item::node(root, None, None);
    let env = Env {
        this: &this,
        index: None,
        total: None,
    };
    ev.eval(expr, slice::from_ref(&this), &env)
}

/// Evaluates with `context` as the input and `$this`, `root` staying `%resource` and
/// `root_resource` being `%rootResource`.
pub(crate) fn evaluate_on<'a>(
    expr: &Expr,
    root: &'a Value,
    root_resource: &'a Value,
    context: &Item<'a>,
) -> Res<Vec<Item<'a>>> {
    let ev = Evaluator {
        root,
        root_resource,
        vars: Vec::new(),
    };
    let env = Env {
        this: context,
        index: None,
        total: None,
    };
    ev.eval(expr, slice::from_ref(context), &env)
}

impl<'a> Evaluator<'a> {
    pub(crate) fn eval(
        &self,
        expr: &Expr,
        input: &[Item<'a>],
        env: &Env<'_, 'a>,
    ) -> Res<Vec<Item<'a>>> {
        Ok(match expr {
            Expr::Empty => vec![],
            Expr::Literal(l) => vec![literal(l)?],
            Expr::Ident(name) => {
                let mut out = vec![];
                for it in input {
                    if let Some(hit) = type_filter(it, name) {
                        if hit {
                            out.push(it.clone());
                        }
                        continue;
                    }
                    children(it, name, &mut out)?;
                }
                out
            }
            Expr::Member(target, name) => {
                let focus = self.eval(target, input, env)?;
                let mut out = vec![];
                for it in &focus {
                    children(it, name, &mut out)?;
                }
                out
            }
            Expr::Call { target, name, args } => {
                let focus = match target {
                    Some(t) => self.eval(t, input, env)?,
                    None => input.to_vec(),
                };
                functions::call(self, name, focus, args, env)?
            }
            Expr::Type { op, target, spec } => {
                let focus = match target {
                    Some(t) => self.eval(t, input, env)?,
                    None => input.to_vec(),
                };
                self.type_op(*op, focus, spec)?
            }
            Expr::Index(target, idx) => {
                let focus = self.eval(target, input, env)?;
                let i = self.eval(idx, input, env)?;
                match ops::singleton(&i, "indexer")? {
                    None => vec![],
                    Some(Item::Integer(n)) => usize::try_from(*n)
                        .ok()
                        .and_then(|n| focus.into_iter().nth(n))
                        .into_iter()
                        .collect(),
                    Some(_) => {
                        return Err(FhirPathError::Type("indexer must be an integer".into()))
                    }
                }
            }
            Expr::This => vec![env.this.clone()],
            Expr::IndexVar => env.index.map(Item::Integer).into_iter().collect(),
            Expr::Total => env.total.map(<[_]>::to_vec).unwrap_or_default(),
            Expr::External(name) => self.external(name)?,
            Expr::Negate(e) => {
                let v = self.eval(e, input, env)?;
                match ops::singleton(&v, "unary minus")? {
                    None => vec![],
                    Some(it) => vec![ops::negate(it)?],
                }
            }
            Expr::Binary(op, l, r) => ops::binary(self, *op, l, r, input, env)?,
        })
    }

    /// Evaluates a function argument in the current scope (`$this`).
    pub(crate) fn eval_arg(&self, arg: &Expr, env: &Env<'_, 'a>) -> Res<Vec<Item<'a>>> {
        self.eval(arg, slice::from_ref(env.this), env)
    }

    fn external(&self, name: &str) -> Res<Vec<Item<'a>>> {
        let s = |v: &str| Ok(vec![Item::String(v.to_string())]);
        match name {
            "resource" | "context" => Ok(vec![Item::node(self.root, None, None)]),
            "rootResource" => Ok(vec![Item::node(self.root_resource, None, None)]),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some((_, value)) = self.vars.iter().find(|(n, _)| *n == name) {
                    return Ok(value
                        .map(|v| Item::node(v, None, None))
                        .into_iter()
                        .collect());
                }
                if let Some(vs) = name.strip_prefix("vs-") {
                    s(&format!("http://hl7.org/fhir/ValueSet/{vs}"))
                } else if let Some(ext) = name.strip_prefix("ext-") {
                    s(&format!("http://hl7.org/fhir/StructureDefinition/{ext}"))
                } else {
                    Err(FhirPathError::UnknownVariable(name.to_string()))
                }
            }
        }
    }

    fn type_op(&self, op: TypeOp, focus: Vec<Item<'a>>, spec: &TypeSpec) -> Res<Vec<Item<'a>>> {
        match op {
            TypeOp::Is => match ops::singleton(&focus, "is")? {
                None => Ok(vec![]),
                Some(it) => Ok(vec![Item::Boolean(is_type(it, spec)?)]),
            },
            // `as` filters like `ofType` (see the module docs of `fhirpath`).
            TypeOp::As | TypeOp::OfType => {
                let mut out = vec![];
                for it in focus {
                    if is_type(&it, spec)? {
                        out.push(it);
                    }
                }
                Ok(out)
            }
        }
    }
}

fn literal<'a>(l: &Literal) -> Res<Item<'a>> {
    let bad = |t: &str| FhirPathError::Syntax {
        pos: 0,
        msg: format!("invalid literal {t}"),
    };
    Ok(match l {
        Literal::Boolean(b) => Item::Boolean(*b),
        Literal::String(s) => Item::String(s.clone()),
        Literal::Integer(i) => Item::Integer(*i),
        Literal::Decimal(d) => Item::Decimal(Decimal::parse(d).ok_or_else(|| bad(d))?),
        Literal::Date(d) => Item::Date(d.clone()),
        Literal::DateTime(d) => Item::DateTime(d.clone()),
        Literal::Time(d) => Item::Time(d.clone()),
        Literal::Quantity(v, u) => Item::Quantity {
            value: Decimal::parse(v).ok_or_else(|| bad(v))?,
            unit: u.clone(),
        },
    })
}

/// For an identifier at the head of a path: `Some(matches)` when `name` is
/// used as a type name on a resource (`Patient.name` on a Patient → keep it,
/// on an Observation → drop it), `None` when it is an ordinary element name.
fn type_filter(it: &Item<'_>, name: &str) -> Option<bool> {
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    match it {
        Item::Node(n) => {
            if let Some(rt) = field(n.value, "resourceType").and_then(Value::as_str) {
                return Some(fhir_type_matches(rt, true, name));
            }
            // FHIR element names never start upper-case; a type name that is
            // not this node's (unknown) type yields nothing.
            if field(n.value, name).is_some() {
                return None;
            }
            Some(n.type_name == Some(name))
        }
        Item::Resolved { resource_type, .. } => Some(fhir_type_matches(resource_type, true, name)),
        _ => Some(false),
    }
}

/// Appends the children called `name` of `it` (arrays flattened, nulls
/// skipped, choice elements found by suffix).
pub(crate) fn children<'a>(it: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) -> Res<()> {
    match it {
        Item::Node(Node {
            value: Value::Object(map),
            ..
        }) => {
            if let Some(v) = member(map, name) {
                push_values(v, underscored(map, name), None, out);
            } else if let Some(x) = underscored(map, name) {
                push_without_value(x, None, out);
            } else if is_choice_element(name) {
                for (k, v) in map {
                    if let Some(t) = choice_suffix_type(k, name) {
                        push_values(v, underscored(map, k), Some(t), out);
                    } else if let Some(bare) = k.strip_prefix('_') {
                        if member(map, bare).is_none() {
                            if let Some(t) = choice_suffix_type(bare, name) {
                                push_without_value(v, Some(t), out);
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        Item::Resolved { reference, .. } => Err(FhirPathError::UnresolvedContent {
            reference: reference.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A primitive that has only its `_name` sibling (an id or extensions, no value): the element
/// exists, with those children and no value (`hasValue()` is false), as in FHIR's model of a
/// primitive. R4's ext-1 (`extension.exists() != value.exists()`) relies on it for an
/// extension whose `_valueString` carries a translation.
fn push_without_value<'a>(x: &'a Value, ty: Option<&'static str>, out: &mut Vec<Item<'a>>) {
    match x {
        Value::Array(arr) => out.extend(
            arr.iter()
                .filter(|e| e.is_object())
                .map(|e| Item::node(e, ty, None)),
        ),
        Value::Object(_) => out.push(Item::node(x, ty, None)),
        _ => {}
    }
}

fn push_values<'a>(
    v: &'a Value,
    ext: Option<&'a Value>,
    ty: Option<&'static str>,
    out: &mut Vec<Item<'a>>,
) {
    match v {
        Value::Array(arr) => {
            for (i, e) in arr.iter().enumerate() {
                if !e.is_null() {
                    let x = ext.and_then(|x| x.get(i)).filter(|x| !x.is_null());
                    out.push(Item::node(e, ty, x));
                }
            }
        }
        Value::Null => {}
        _ => out.push(Item::node(v, ty, ext)),
    }
}

/// `item is spec`. Errors when the answer depends on a FHIR type that the
/// JSON does not record.
pub(crate) fn is_type(it: &Item<'_>, spec: &TypeSpec) -> Res<bool> {
    let name = spec.name.as_str();
    let ns = spec.namespace.as_deref();
    let system_name = ns == Some("System") || (ns.is_none() && SYSTEM_TYPES.contains(&name));
    let fhir_name = ns != Some("System") && (is_datatype(name) || is_resource_type(name));
    if !system_name && !fhir_name {
        return Err(FhirPathError::Type(format!("unknown type '{name}'")));
    }
    match it {
        Item::Node(n) => {
            if ns == Some("System") {
                return Ok(false);
            }
            let known = n
                .type_name
                .or(matches!(n.value, Value::Bool(_)).then_some("boolean"));
            let is_resource = field(n.value, "resourceType").and_then(Value::as_str) == n.type_name
                && n.type_name.is_some();
            match known {
                Some(t) => Ok(fhir_type_matches(t, is_resource, name)),
                None if system_name && name != "Quantity" => Ok(false),
                None if is_datatype(name) => Err(FhirPathError::NeedsTypeModel {
                    type_name: name.to_string(),
                }),
                // Not a data type: a resource type (or unknown name); a node
                // without resourceType is not a resource.
                None => Ok(false),
            }
        }
        Item::Resolved { resource_type, .. } => {
            Ok(ns != Some("System") && fhir_type_matches(resource_type, true, name))
        }
        _ => {
            if ns == Some("FHIR") {
                return Ok(false);
            }
            let actual = it.type_name().unwrap_or("");
            Ok(actual == name)
        }
    }
}
