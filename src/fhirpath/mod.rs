//! FHIRPath (N1, <http://hl7.org/fhirpath/N1/>) evaluation on FHIR JSON.
//!
//! Why this exists: FHIR search indexes are defined by each SearchParameter's
//! FHIRPath `expression`, evaluated against the resource when it is written.
//! This module parses those expressions once ([`parse`]) and evaluates them
//! directly on `serde_json::Value` ([`Expression::evaluate`]), borrowing from
//! the resource so extraction does not copy it.
//!
//! Without a full StructureDefinition model, FHIR types are known only from
//! choice suffixes (`valueQuantity`), `resourceType`, JSON booleans and
//! literals (see `model`). Type tests that would need more return
//! [`FhirPathError::NeedsTypeModel`] rather than guessing.
//!
//! Deliberate deviation: `as` (operator and function) filters a collection
//! like `ofType()` instead of requiring a singleton, because the R4 search
//! expressions apply it to repeating elements
//! (`Observation.component.value as Quantity`).
//!
//! Layout: `lexer` → `parser` (tree, depth-capped) → `eval` (navigation,
//! variables) with `ops` (operators), `functions` (function library),
//! `model` (type tables), `datetime` and `decimal` (value semantics).

mod datetime;
mod decimal;
mod eval;
mod functions;
mod lexer;
mod model;
mod ops;
mod parser;

use serde_json::Value;

pub use decimal::Decimal;
pub use parser::MAX_DEPTH;

/// Errors from parsing or evaluating an expression.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum FhirPathError {
    #[error("FHIRPath syntax error at offset {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    #[error("FHIRPath expression nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("unknown FHIRPath function '{0}'")]
    UnknownFunction(String),
    #[error(
        "wrong number of arguments ({got}) for FHIRPath function '{function}' at offset {pos}"
    )]
    Arity {
        function: String,
        got: usize,
        pos: usize,
    },
    #[error("unknown FHIRPath variable '%{0}'")]
    UnknownVariable(String),
    #[error("{what} expects a single item but got {count}")]
    NotSingleton { what: String, count: usize },
    #[error("FHIRPath type error: {0}")]
    Type(String),
    #[error("type test against '{type_name}' needs the FHIR type model: the element's type is not recorded in the JSON (only choice suffixes, resourceType and booleans are)")]
    NeedsTypeModel { type_name: String },
    #[error("cannot navigate into '{reference}': resolve() only knows the type of resources outside this one")]
    UnresolvedContent { reference: String },
    #[error("FHIRPath feature not supported: {0}")]
    Unsupported(String),
}

/// A parsed FHIRPath expression; cheap to evaluate many times, shareable
/// across threads.
#[derive(Clone, Debug)]
pub struct Expression {
    root: parser::Expr,
    source: String,
}

/// Parses a FHIRPath expression. Unknown functions and wrong argument counts
/// are reported here; so is nesting deeper than [`MAX_DEPTH`].
pub fn parse(src: &str) -> Result<Expression, FhirPathError> {
    Ok(Expression {
        root: parser::parse_expr(src)?,
        source: src.to_string(),
    })
}

impl Expression {
    /// Evaluates against a resource (the expression's `%resource`,
    /// `%context` and initial `$this`). The result borrows from `resource`.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Result<Vec<Item<'a>>, FhirPathError> {
        eval::evaluate(&self.root, resource)
    }

    /// Evaluates against `resource` with environment variables of the caller's (a
    /// subscription topic's `%current` and `%previous`; a `None` value is an empty collection).
    pub fn evaluate_with<'a>(
        &self,
        resource: &'a Value,
        vars: Vec<(&'a str, Option<&'a Value>)>,
    ) -> Result<Vec<Item<'a>>, FhirPathError> {
        eval::evaluate_with(&self.root, resource, vars)
    }

    /// Evaluates with an element of `resource` as the input and `$this` (`%resource` stays the
    /// resource): how a composite search parameter reads its components from each element its
    /// own expression selects.
    pub fn evaluate_on<'a>(
        &self,
        resource: &'a Value,
        context: &Item<'a>,
    ) -> Result<Vec<Item<'a>>, FhirPathError> {
        eval::evaluate_on(&self.root, resource, resource, context)
    }

    /// [`Expression::evaluate_on`] inside a resource that may be contained: `resource` is
    /// `%resource`, `root_resource` is `%rootResource` (the containing resource for a contained
    /// one, else `resource` itself; FHIRPath's FHIR variables, used by invariants such as
    /// dom-3). References `#id` resolve among the contained resources of `root_resource`.
    pub fn evaluate_in<'a>(
        &self,
        resource: &'a Value,
        root_resource: &'a Value,
        context: &Item<'a>,
    ) -> Result<Vec<Item<'a>>, FhirPathError> {
        eval::evaluate_on(&self.root, resource, root_resource, context)
    }

    /// The source text this expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// An element of the resource, borrowed from its JSON.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// The JSON value (object, string, number or boolean; never an array).
    pub value: &'a Value,
    /// The FHIR type when known: from a choice suffix (`valueQuantity` →
    /// `Quantity`, `valueString` → `string`) or a `resourceType`.
    pub type_name: Option<&'a str>,
    /// The `_name` sibling of a primitive (its id/extensions), if any.
    pub(crate) ext: Option<&'a Value>,
}

/// One item of a FHIRPath result collection.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    /// A node of the resource.
    Node(Node<'a>),
    Boolean(bool),
    Integer(i64),
    Decimal(Decimal),
    String(String),
    /// Date text without the `@` (`2015-02-04`).
    Date(String),
    /// DateTime text without the `@` (`2015-02-04T14:34:28+10:00`).
    DateTime(String),
    /// Time text without the `@T` (`14:34:28`).
    Time(String),
    /// A quantity: value and unit (UCUM code or calendar keyword).
    Quantity {
        value: Decimal,
        unit: String,
    },
    /// What `resolve()` returns for a reference to a resource outside the one
    /// being evaluated: only its type (from `Patient/123`, an absolute URL or
    /// `Reference.type`) is known.
    Resolved {
        resource_type: &'a str,
        reference: &'a str,
    },
}

impl<'a> Item<'a> {
    /// The FHIR type name for nodes (when known), the System type name for
    /// computed values, or the resource type for resolved references.
    pub fn type_name(&self) -> Option<&str> {
        Some(match self {
            Item::Node(n) => {
                return n
                    .type_name
                    .or(matches!(n.value, Value::Bool(_)).then_some("boolean"))
            }
            Item::Boolean(_) => "Boolean",
            Item::Integer(_) => "Integer",
            Item::Decimal(_) => "Decimal",
            Item::String(_) => "String",
            Item::Date(_) => "Date",
            Item::DateTime(_) => "DateTime",
            Item::Time(_) => "Time",
            Item::Quantity { .. } => "Quantity",
            Item::Resolved { resource_type, .. } => resource_type,
        })
    }

    /// The JSON of a node, or `None` for computed values.
    pub fn as_json(&self) -> Option<&'a Value> {
        match self {
            Item::Node(n) => Some(n.value),
            _ => None,
        }
    }

    /// Wraps a JSON value as a node, taking its type from `resourceType`.
    pub(crate) fn node(
        value: &'a Value,
        type_name: Option<&'a str>,
        ext: Option<&'a Value>,
    ) -> Item<'a> {
        let type_name = type_name.or_else(|| value.get("resourceType").and_then(Value::as_str));
        Item::Node(Node {
            value,
            type_name,
            ext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_of_the_caller() {
        let current = json!({"resourceType": "Encounter", "status": "finished"});
        let previous = json!({"resourceType": "Encounter", "status": "in-progress"});
        let e = parse("%previous.status != 'finished' and %current.status = 'finished'").unwrap();
        let vars = vec![("current", Some(&current)), ("previous", Some(&previous))];
        let out = e.evaluate_with(&current, vars).unwrap();
        assert!(matches!(out.as_slice(), [Item::Boolean(true)]));
        let e = parse("%previous.exists()").unwrap();
        let out = e.evaluate_with(&current, vec![("previous", None)]).unwrap();
        assert!(matches!(out.as_slice(), [Item::Boolean(false)]));
    }

    #[test]
    fn untyped_date_times_compare_as_instants_with_their_offsets() {
        // A Period reached without its type: start 05:46Z, end 06:31Z (per-1 holds).
        let period =
            json!({"start": "1989-10-29T01:46:40-04:00", "end": "1989-10-29T01:31:40-05:00"});
        let e = parse("start <= end").unwrap();
        let out = e.evaluate(&period).unwrap();
        assert!(matches!(out.as_slice(), [Item::Boolean(true)]), "{out:?}");
        let e = parse("end < start").unwrap();
        let out = e.evaluate(&period).unwrap();
        assert!(matches!(out.as_slice(), [Item::Boolean(false)]), "{out:?}");
    }

    fn eval_strs(expr: &str, res: &Value) -> Vec<String> {
        parse(expr)
            .unwrap()
            .evaluate(res)
            .unwrap()
            .iter()
            .map(|i| match i {
                Item::Node(n) => n.value.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn nesting_up_to_the_limit_evaluates_without_overflow() {
        let r = json!({"resourceType": "Patient", "a": {"a": 1}});
        let n = MAX_DEPTH - 2;
        for src in [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}a{}", "a.where(".repeat(n / 2), ")".repeat(n / 2)),
            vec!["a"; n].join(" | "),
            format!("{}1", "-".repeat(n)),
        ] {
            let e = parse(&src).unwrap();
            e.evaluate(&r).unwrap();
        }
        assert!(matches!(
            parse(&"(".repeat(100_000)),
            Err(FhirPathError::TooDeep { .. })
        ));
    }

    #[test]
    fn expression_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Expression>();
    }

    #[test]
    fn union_of_type_filtered_paths_works_on_any_resource_type() {
        let r = json!({"resourceType": "CarePlan", "subject": {"reference": "Patient/1"}});
        let out = eval_strs(
            "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient)",
            &r,
        );
        assert_eq!(out, vec![r#"{"reference":"Patient/1"}"#]);
    }

    #[test]
    fn choice_navigation_records_the_type() {
        // (json! would go through f64; parse text to keep the literal digits.)
        let r: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "valueQuantity": {"value": 1.50, "unit": "kg"}}"#,
        )
        .unwrap();
        let items = parse("Observation.value").unwrap().evaluate(&r).unwrap();
        assert_eq!(items[0].type_name(), Some("Quantity"));
        assert_eq!(
            eval_strs("(Observation.value as Quantity).value", &r),
            vec!["1.50"]
        );
        assert!(eval_strs("Observation.value as Period", &r).is_empty());
    }

    #[test]
    fn decimals_keep_their_text() {
        let r: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "valueQuantity": {"value": 0.1000000000000000055}}"#,
        )
        .unwrap();
        assert_eq!(
            eval_strs("Observation.value.value", &r),
            vec!["0.1000000000000000055"]
        );
        let out = parse("Observation.value.value + 0.1")
            .unwrap()
            .evaluate(&r)
            .unwrap();
        assert!(matches!(&out[0], Item::Decimal(d) if d.to_string() == "0.2000000000000000055"));
    }

    #[test]
    fn type_test_without_model_is_an_error_not_a_guess() {
        let r = json!({"resourceType": "Patient", "gender": "male"});
        let err = parse("Patient.gender is code")
            .unwrap()
            .evaluate(&r)
            .unwrap_err();
        assert!(matches!(err, FhirPathError::NeedsTypeModel { .. }));
        // A type that a non-resource node can never be is a plain `false`.
        let out = parse("Patient.gender is Patient")
            .unwrap()
            .evaluate(&r)
            .unwrap();
        assert!(matches!(out[..], [Item::Boolean(false)]));
    }

    #[test]
    fn root_resource_is_the_container_of_a_contained_resource() {
        let container = json!({"resourceType": "Observation",
            "contained": [{"resourceType": "Patient", "id": "p1",
                "generalPractitioner": [{"reference": "#pr1"}]},
                {"resourceType": "Practitioner", "id": "pr1"}]});
        let patient = &container["contained"][0];
        let at = Item::node(&patient["generalPractitioner"][0], Some("Reference"), None);
        let e = parse("reference.substring(1) in %rootResource.contained.id").unwrap();
        let out = e.evaluate_in(patient, &container, &at).unwrap();
        assert!(matches!(out.as_slice(), [Item::Boolean(true)]));
        let e = parse("%resource.id").unwrap();
        let out = e.evaluate_in(patient, &container, &at).unwrap();
        assert_eq!(out[0].as_json(), Some(&json!("p1")));
        let out = parse("resolve().id")
            .unwrap()
            .evaluate_in(patient, &container, &at)
            .unwrap();
        assert_eq!(out[0].as_json(), Some(&json!("pr1")));
    }

    #[test]
    fn html_checks_apply_the_narrative_rules() {
        let ok = json!({"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"});
        let bad = json!({"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick=\"x()\">x</p></div>"});
        let e = parse("div.htmlChecks()").unwrap();
        assert!(matches!(
            e.evaluate(&ok).unwrap().as_slice(),
            [Item::Boolean(true)]
        ));
        assert!(matches!(
            e.evaluate(&bad).unwrap().as_slice(),
            [Item::Boolean(false)]
        ));
    }

    #[test]
    fn resolve_uses_reference_text_contained_and_type() {
        let r = json!({"resourceType": "Observation",
            "contained": [{"resourceType": "Patient", "id": "p1"}],
            "performer": [{"reference": "#p1"}, {"reference": "http://x.org/fhir/Practitioner/9/_history/2"},
                          {"type": "Organization", "identifier": {"value": "1"}}, {"display": "no ref"}]});
        let out = parse("Observation.performer.resolve()")
            .unwrap()
            .evaluate(&r)
            .unwrap();
        let types: Vec<_> = out
            .iter()
            .map(|i| i.type_name().unwrap().to_string())
            .collect();
        assert_eq!(types, vec!["Patient", "Practitioner", "Organization"]);
        assert_eq!(
            eval_strs("Observation.performer.first().resolve().id", &r)[0],
            "\"p1\""
        );
        let err = parse("Observation.performer[1].resolve().id")
            .unwrap()
            .evaluate(&r)
            .unwrap_err();
        assert!(matches!(err, FhirPathError::UnresolvedContent { .. }));
    }
}
