//! Parses FHIR search parameters (from a query string, a `_search` form body or conditional
//! criteria) into a [`SearchQuery`].
//!
//! Every parameter type of the official definitions, with the modifiers the search page defines
//! for it (a modifier it does not define for the type is a 400), composites split on `$`, and
//! the result parameters. Terminology modifiers (`:in`, `:not-in`, `:below`, `:above`) are left
//! as `Predicate::Terminology` for `search::terminology::resolve`, reference `:below`/`:above`
//! as `Predicate::Hierarchy` for `search::hierarchy::resolve`. A parameter the server does
//! not support is never silently dropped from conditional criteria (that could widen a
//! conditional delete); a search ignores it unless the client asked for
//! `Prefer: handling=strict`, and reports it.

use crate::error::FhirError;
use crate::fhir::datetime::parse_range;
use crate::fhir::{id, resource_types};
use crate::search::definitions::{Component, ParamType, Registry};
use crate::search::extract::{index_text, number_range};
use crate::search::query::{
    CanonicalQuantity, Contained, ContainedType, Cursor, IndexTable, Predicate, Prefix,
    RangeTarget, SearchQuery, SortColumn, SortKey, StringMatch, TerminologyOp, TokenSystem,
    UriMatch,
};
use crate::ucum;

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;
/// The most values one search may combine (ORs and ANDs together).
pub const MAX_VALUES: usize = 1000;

/// Keyset cursors of paging links (opaque to clients).
pub const CURSOR_AFTER: &str = "_cursor_after";
pub const CURSOR_BEFORE: &str = "_cursor_before";

/// How parameters the server does not support are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Ignore them and report them (search, `Prefer: handling=lenient`).
    Ignore,
    /// Refuse the request with 400 (`Prefer: handling=strict`, conditional interactions).
    Refuse,
}

/// `_total`: whether a search reports the number of matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Accurate,
}

#[derive(Debug)]
pub struct Parsed {
    pub query: SearchQuery,
    /// Parameters that were ignored, with the reason.
    pub ignored: Vec<String>,
    pub total: Total,
    /// `_include` and `_revinclude`, in request order.
    pub includes: Vec<Include>,
    /// `_summary` and `_elements`: which parts of the matches and included resources to return.
    pub subset: Subset,
}

/// `_summary` / `_elements` (search page, "Summary" and "Elements").
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Subset {
    #[default]
    Full,
    /// `_summary=count`: the total only, no entries.
    Count,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_summary=true`: the elements marked as summary (and mandatory ones).
    Summary,
    /// `_summary=text`: the narrative, `id`, `meta` and top-level mandatory elements.
    Text,
    /// `_elements=a,b,Type.c`: only these top-level elements (and `id`, `meta`).
    Elements(Vec<ElementName>),
}

/// One name of `_elements`. A plain name is an element of the searched type and subsets the
/// matches (R4: "a specific set of elements be returned as part of a resource in the search
/// results"); one prefixed with a type (`Patient.gender`, the R5 search page's form) subsets
/// every entry of that type, included resources too.
#[derive(Debug, Clone, PartialEq)]
pub struct ElementName {
    pub rtype: Option<String>,
    pub name: String,
}

/// Reads `_summary` (search page, "Summary").
pub fn summary(value: &str) -> Result<Subset, FhirError> {
    Ok(match value {
        "false" => Subset::Full,
        "true" => Subset::Summary,
        "text" => Subset::Text,
        "data" => Subset::Data,
        "count" => Subset::Count,
        other => {
            return Err(FhirError::invalid(format!(
                "_summary must be true, text, data, count or false, not '{other}'"
            )))
        }
    })
}

impl Subset {
    /// The part of a resource this subset returns: of a match, or of an `included` resource.
    /// `_summary` applies to both alike (the summary of a resource is defined for every type;
    /// `_summary=text` with includes is refused when parsed); `_elements` as its names say.
    pub fn apply(&self, resource: serde_json::Value, included: bool) -> serde_json::Value {
        use crate::fhir::subset;
        match self {
            Subset::Data => subset::without_text(resource),
            Subset::Summary => subset::summary(resource),
            Subset::Text => subset::text_only(resource),
            Subset::Elements(names) => {
                let rtype = resource["resourceType"].as_str().unwrap_or_default();
                let names: Vec<String> = names
                    .iter()
                    .filter(|n| match &n.rtype {
                        Some(t) => t == rtype,
                        None => !included,
                    })
                    .map(|n| n.name.clone())
                    .collect();
                if names.is_empty() {
                    resource
                } else {
                    subset::only_elements(resource, &names)
                }
            }
            Subset::Full | Subset::Count => resource,
        }
    }
}

/// An `_include` (`rev: false`) or `_revinclude` (`rev: true`) of `source:param[:target]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub rev: bool,
    /// `:iterate` (R4; `:recurse` in earlier versions): also applies to included resources.
    pub iterate: bool,
    pub source: String,
    /// `None` for `*`: every reference parameter of the source type.
    pub param: Option<String>,
    pub target: Option<String>,
}

/// Parses `Type:param[:target]` or `*` (http://hl7.org/fhir/R4/search.html#include).
fn include(
    registry: &Registry,
    name: &str,
    value: &str,
    rtype: &str,
) -> Result<Include, FhirError> {
    let (base, modifier) = name.split_once(':').unwrap_or((name, ""));
    let iterate = match modifier {
        "" => false,
        "iterate" | "recurse" => true,
        other => {
            return Err(FhirError::invalid(format!(
                "{base}:{other} is not a valid modifier"
            )))
        }
    };
    let rev = base == "_revinclude";
    if value == "*" {
        let source = if rev {
            "*".to_owned()
        } else {
            rtype.to_owned()
        };
        return Ok(Include {
            rev,
            iterate,
            source,
            param: None,
            target: None,
        });
    }
    let mut parts = value.split(':');
    let source = parts.next().unwrap_or("");
    let param = parts.next().unwrap_or("");
    let target = parts.next();
    if !resource_types::is_resource_type(source) || parts.next().is_some() {
        return Err(FhirError::invalid(format!(
            "{base}={value}: expected Type:parameter[:targetType]"
        )));
    }
    let param = if param == "*" {
        None
    } else {
        match registry.get(source, param) {
            Some(p) if p.kind == ParamType::Reference => Some(param.to_owned()),
            _ => {
                return Err(FhirError::invalid(format!(
                    "{base}={value}: {source} has no reference search parameter '{param}'"
                )))
            }
        }
    };
    if let Some(t) = target {
        if !resource_types::is_resource_type(t) {
            return Err(FhirError::invalid(format!(
                "{base}={value}: '{t}' is not a resource type"
            )));
        }
    }
    Ok(Include {
        rev,
        iterate,
        source: source.to_owned(),
        param,
        target: target.map(str::to_owned),
    })
}

/// Parses search parameters for resource type `rtype`, those of `registry`.
pub fn parse(
    registry: &Registry,
    rtype: &str,
    params: &[(String, String)],
    unknown: Unknown,
    base: &str,
) -> Result<Parsed, FhirError> {
    let mut query = SearchQuery {
        rtype: rtype.to_owned(),
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let mut ignored = Vec::new();
    let mut total = Total::Accurate;
    let mut includes = Vec::new();
    let mut subset = Subset::Full;
    let mut cursor: Option<(bool, String)> = None;
    let mut values = 0usize;
    for (name, value) in params {
        if name.contains('\0') || value.contains('\0') {
            return Err(FhirError::invalid(format!(
                "{name}: search parameters cannot contain NUL characters"
            )));
        }
        // Result parameters (`_count`, `_include:iterate`, …) by their name without modifier.
        let code = name.split(':').next().unwrap_or(name);
        match code {
            "_count" => {
                query.count = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_COUNT)
                    .ok_or_else(|| {
                        FhirError::invalid(format!(
                            "_count must be a whole number from 0 to {MAX_COUNT}, not '{value}'"
                        ))
                    })?;
                continue;
            }
            CURSOR_AFTER | CURSOR_BEFORE => {
                // Decoded after the loop, once `_sort` is known.
                cursor = Some((code == CURSOR_AFTER, value.clone()));
                continue;
            }
            "_sort" => {
                query.sort = sort_keys(registry, rtype, value)?;
                continue;
            }
            "_include" | "_revinclude" => {
                includes.push(include(registry, name, value, rtype)?);
                continue;
            }
            "_summary" => {
                subset = summary(value)?;
                continue;
            }
            // Search page, "Contained Resources".
            "_contained" => {
                query.contained = match value.as_str() {
                    "false" => Contained::False,
                    "true" => Contained::True,
                    "both" => Contained::Both,
                    other => {
                        return Err(FhirError::invalid(format!(
                            "_contained must be false, true or both, not '{other}'"
                        )))
                    }
                };
                continue;
            }
            "_containedType" => {
                query.contained_type = match value.as_str() {
                    "container" => ContainedType::Container,
                    "contained" => ContainedType::Contained,
                    other => {
                        return Err(FhirError::invalid(format!(
                            "_containedType must be container or contained, not '{other}'"
                        )))
                    }
                };
                continue;
            }
            "_elements" => {
                subset = Subset::Elements(element_names(value)?);
                continue;
            }
            "_total" => {
                total = match value.as_str() {
                    "none" => Total::None,
                    // The exact count is as cheap as any estimate this server could make.
                    "estimate" | "accurate" => Total::Accurate,
                    other => {
                        return Err(FhirError::invalid(format!(
                            "_total must be none, estimate or accurate, not '{other}'"
                        )))
                    }
                };
                continue;
            }
            _ => {}
        }
        let alternatives = split_or(value);
        values += alternatives.len();
        if values > MAX_VALUES {
            return Err(FhirError::invalid(format!(
                "A search may combine at most {MAX_VALUES} values"
            )));
        }
        match parameter(registry, rtype, name, &alternatives, base, 0)? {
            Ok(parsed) => query.filters.extend(parsed.into_filters()),
            Err(reason) => refuse_or_ignore(unknown, reason, &mut ignored)?,
        }
    }
    if query.contained != Contained::False {
        check_contained(&includes)?;
    }
    if subset == Subset::Text && !includes.is_empty() {
        return Err(FhirError::invalid(
            "_summary=text cannot be combined with _include or _revinclude (search page, Summary)",
        ));
    }
    if let Some((after, text)) = cursor {
        let decoded = Cursor::decode(&text, &query.sort)
            // A search of contained resources has one key more: the hit's contained position.
            .filter(|c| {
                let extra = usize::from(query.contained != Contained::False);
                c.keys.len() == query.sort.len() + extra
            })
            .ok_or_else(|| FhirError::invalid("The paging cursor does not fit this search"))?;
        if after {
            query.after = Some(decoded);
        } else {
            query.before = Some(decoded);
        }
    }
    Ok(Parsed {
        query,
        ignored,
        total,
        includes,
        subset,
    })
}

/// What a search of contained resources (`_contained=true|both`) cannot do, refused rather than
/// guessed at: `_include`/`_revinclude` (of which resource: the container or the contained
/// one?).
fn check_contained(includes: &[Include]) -> Result<(), FhirError> {
    if !includes.is_empty() {
        return Err(FhirError::invalid(
            "_include and _revinclude cannot be combined with _contained=true or both",
        ));
    }
    Ok(())
}

/// `_elements=a,b,Type.c`: top-level element names, each plain or prefixed with a resource type.
fn element_names(value: &str) -> Result<Vec<ElementName>, FhirError> {
    let is_name =
        |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let mut names = Vec::new();
    for item in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let parts: Vec<&str> = item.split('.').collect();
        let name = match parts.as_slice() {
            [name] if is_name(name) => ElementName {
                rtype: None,
                name: (*name).to_owned(),
            },
            [rtype, name] if is_name(name) => {
                if !crate::fhir::resource_types::is_resource_type(rtype) {
                    return Err(FhirError::invalid(format!(
                        "_elements={value}: '{rtype}' is not a resource type"
                    )));
                }
                ElementName {
                    rtype: Some((*rtype).to_owned()),
                    name: (*name).to_owned(),
                }
            }
            [_, _, _, ..] => {
                return Err(FhirError::invalid(format!(
                    "_elements={value}: '{item}': only top-level elements can be named (name or Type.name)"
                )))
            }
            _ => {
                return Err(FhirError::invalid(format!(
                    "_elements={value}: expected element names (name or Type.name) separated by commas"
                )))
            }
        };
        names.push(name);
    }
    Ok(names)
}

/// `_sort=a,-b`: sort keys in order, `-` for descending (search page, "Sorting").
fn sort_keys(registry: &Registry, rtype: &str, value: &str) -> Result<Vec<SortKey>, FhirError> {
    let mut keys = Vec::new();
    for item in value.split(',') {
        let (descending, code) = match item.strip_prefix('-') {
            Some(code) => (true, code),
            None => (false, item),
        };
        let column = match code {
            "_id" => SortColumn::Id,
            "_lastUpdated" => SortColumn::LastUpdated,
            _ => {
                let table = match registry.get(rtype, code).map(|p| p.kind) {
                    Some(ParamType::Token) => IndexTable::Token,
                    Some(ParamType::String) => IndexTable::String,
                    Some(ParamType::Date) => IndexTable::Date,
                    Some(ParamType::Reference) => IndexTable::Reference,
                    Some(ParamType::Uri) => IndexTable::Uri,
                    Some(ParamType::Number) => IndexTable::Number,
                    Some(ParamType::Quantity) => IndexTable::Quantity,
                    _ => {
                        return Err(FhirError::invalid(format!(
                            "_sort: '{code}' is not a sortable search parameter of {rtype}"
                        )))
                    }
                };
                SortColumn::Index {
                    table,
                    param: code.to_owned(),
                }
            }
        };
        keys.push(SortKey { column, descending });
    }
    if keys.len() > 8 {
        return Err(FhirError::invalid("_sort takes at most 8 keys"));
    }
    Ok(keys)
}

/// How deep chains and `_has` may nest.
const MAX_CHAIN_DEPTH: usize = 4;

/// The predicates of one parameter occurrence `name=values` on `rtype`: `Ok(Err(reason))` when
/// the server does not support it (ignored or refused by the caller), `Err` when it is wrong.
fn parameter(
    registry: &Registry,
    rtype: &str,
    name: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Result<Parsed1, String>, FhirError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(FhirError::invalid(format!(
            "{name}: chains and _has nest at most {MAX_CHAIN_DEPTH} deep"
        )));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return has(registry, rtype, rest, values, base, depth).map(Ok);
    }
    if name == "_list" || name.starts_with("_list:") {
        return list(registry, rtype, name, values, base, depth).map(Ok);
    }
    if let Some((head, tail)) = name.split_once('.') {
        return chain(registry, rtype, head, tail, values, base, depth).map(Ok);
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let kind = match code {
        "_id" => Kind::Id,
        "_lastUpdated" => Kind::LastUpdated,
        _ => match registry.get(rtype, code) {
            // `_text`, `_content`, `_filter`, `_query`: refusing is honest, ignoring is not.
            Some(param) if param.expression.is_none() => {
                return Err(FhirError::invalid(format!(
                    "The search parameter {code} is not supported by this server"
                )))
            }
            Some(param) => Kind::Param(param.kind),
            None => return Ok(Err(format!("{code}: no such search parameter for {rtype}"))),
        },
    };
    if let Some(m) = modifier {
        check_modifier(name, kind, m)?;
    }
    if let (Kind::Param(ParamType::Composite), None) = (kind, modifier) {
        let Some(param) = registry.get(rtype, code) else {
            return Ok(Err(format!("{code}: no such search parameter for {rtype}")));
        };
        let any_of = values
            .iter()
            .map(|v| composite(code, &param.components, v, base))
            .collect::<Result<_, _>>()?;
        return Ok(Ok(Parsed1::AnyOf(any_of)));
    }
    if let (Kind::Param(ParamType::Reference), Some(m @ ("below" | "above"))) = (kind, modifier) {
        let any_of = values
            .iter()
            .map(|v| hierarchy(registry, rtype, code, m == "above", v, base))
            .collect::<Result<_, _>>()?;
        return Ok(Ok(Parsed1::AnyOf(any_of)));
    }
    // Only composites keep `\$` escaped: it separates their components.
    let values: Vec<String> = values.iter().map(|v| v.replace("\\$", "$")).collect();
    let values = &values[..];
    Ok(match predicates(code, kind, modifier, values, base)? {
        Some(parsed) => Ok(parsed),
        None => Err(match modifier {
            Some(m) => format!("{name}: the modifier ':{m}' is not supported for this parameter"),
            None => format!("{code}: searching on this parameter type is not supported yet"),
        }),
    })
}

/// `reference:below=[Type/]id` (`:above`), search page "Searching Hierarchies": a reference to
/// the resource or to one below (above) it in a strict hierarchy of its type. The hierarchy is
/// the type's `partOf` (`Location.partOf`, `Organization.partOf`, `Encounter.partOf`, …: a
/// reference parameter of the type to itself); a type without one is a 400.
fn hierarchy(
    registry: &Registry,
    rtype: &str,
    code: &str,
    above: bool,
    value: &str,
    base: &str,
) -> Result<Predicate, FhirError> {
    let modifier = if above { "above" } else { "below" };
    let targets = registry
        .get(rtype, code)
        .map(|p| p.target.clone())
        .unwrap_or_default();
    let (target_type, id) = match reference(code, None, value, base) {
        Predicate::Reference {
            target_type: Some(t),
            target_id: Some(id),
            ..
        } => (t, id),
        Predicate::Reference {
            target_type: None,
            target_id: Some(id),
            url: None,
            ..
        } if targets.len() == 1 => (targets[0].clone(), id),
        _ => {
            return Err(FhirError::invalid(format!(
                "{code}:{modifier}={value}: give the resource of this server as Type/id \
                 (the hierarchy is searched among the resources held here)"
            )))
        }
    };
    if !crate::fhir::id::is_valid(&id) {
        return Err(FhirError::invalid(format!(
            "{code}:{modifier}={value}: '{id}' is not a valid id"
        )));
    }
    let part_of = format!("{target_type}.partOf");
    let via = registry
        .params(&target_type)
        .find(|p| {
            p.kind == ParamType::Reference
                && p.target == [target_type.clone()]
                && p.expression.as_ref().is_some_and(|e| e.source() == part_of)
        })
        .map(|p| p.code.clone())
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "{code}:{modifier}={value}: {target_type} resources form no hierarchy \
                 (:above and :below follow a type's partOf, as Location.partOf)"
            ))
        })?;
    Ok(Predicate::Hierarchy {
        param: code.to_owned(),
        target_type,
        id,
        via,
        above,
    })
}

/// Refuses a modifier the search page does not define for the parameter's type (400): unlike
/// an unknown parameter, it cannot be ignored without changing what the client asked.
fn check_modifier(name: &str, kind: Kind, modifier: &str) -> Result<(), FhirError> {
    let (type_name, allowed): (&str, &[&str]) = match kind {
        Kind::Id => ("_id", &["missing", "not"]),
        Kind::LastUpdated => ("_lastUpdated", &["missing"]),
        Kind::Param(t) => match t {
            ParamType::String => ("string", &["missing", "exact", "contains"]),
            ParamType::Token => (
                "token",
                &[
                    "missing", "text", "not", "above", "below", "in", "not-in", "of-type",
                ],
            ),
            ParamType::Reference => ("reference", &["missing", "identifier", "above", "below"]),
            ParamType::Uri => ("uri", &["missing", "below", "above"]),
            ParamType::Date => ("date", &["missing"]),
            ParamType::Number => ("number", &["missing"]),
            ParamType::Quantity => ("quantity", &["missing"]),
            ParamType::Composite => ("composite", &["missing"]),
            ParamType::Special => ("special", &["missing"]),
        },
    };
    let is_type = matches!(kind, Kind::Param(ParamType::Reference))
        && resource_types::is_resource_type(modifier);
    if is_type || allowed.contains(&modifier) {
        return Ok(());
    }
    Err(FhirError::invalid(format!(
        "{name}: ':{modifier}' is not a modifier of {type_name} parameters (allowed: {})",
        allowed
            .iter()
            .map(|m| format!(":{m}"))
            .collect::<Vec<_>>()
            .join(" ")
    )))
}

/// A composite value `a$b[$c]`: one value per component, each parsed by its component's type,
/// all matched in the same element (search page, "Composite Search Parameters").
fn composite(
    code: &str,
    components: &[Component],
    value: &str,
    base: &str,
) -> Result<Predicate, FhirError> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                chars.next();
                parts.last_mut().unwrap().push('$');
            }
            '$' => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    if parts.len() != components.len() || parts.iter().any(String::is_empty) {
        return Err(FhirError::invalid(format!(
            "{code}={value}: a composite value has {} parts separated by '$'",
            components.len()
        )));
    }
    let predicates = components
        .iter()
        .zip(&parts)
        .enumerate()
        .map(|(i, (component, part))| {
            single(&format!("{code}${i}"), component.kind, part, base)?.ok_or_else(|| {
                FhirError::invalid(format!(
                    "{code}: its component {} cannot be searched",
                    i + 1
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Predicate::Composite(predicates))
}

/// The predicate of one plain (unmodified) value of a parameter of type `kind`, `None` for
/// types without values of their own (composite, special).
fn single(
    code: &str,
    kind: ParamType,
    value: &str,
    base: &str,
) -> Result<Option<Predicate>, FhirError> {
    let param = code.to_owned();
    Ok(Some(match kind {
        ParamType::Date => range(RangeTarget::Date(param), code, value)?,
        ParamType::Token => token(code, value),
        ParamType::String => Predicate::String {
            param,
            value: index_text(value),
            mode: StringMatch::StartsWith,
        },
        ParamType::Uri => Predicate::Uri {
            param,
            value: index_text(value),
            mode: UriMatch::Exact,
        },
        ParamType::Reference => reference(code, None, value, base),
        ParamType::Number => {
            let (prefix, number) = Prefix::split(value);
            let (value, lo, hi) = number_range(number)
                .ok_or_else(|| FhirError::invalid(format!("{code}: '{number}' is not a number")))?;
            Predicate::Number {
                param,
                prefix,
                value,
                lo,
                hi,
            }
        }
        ParamType::Quantity => quantity(code, value)?,
        ParamType::Composite | ParamType::Special => return Ok(None),
    }))
}

/// `:in=url` / `:not-in=url`: the codes of a ValueSet held by the server (search page, token).
fn value_set(code: &str, modifier: &str, value: &str) -> Result<Predicate, FhirError> {
    let url = value.split('|').next().unwrap_or(value);
    if url.is_empty() {
        return Err(FhirError::invalid(format!(
            "{code}:{modifier}: expected the url of a value set"
        )));
    }
    Ok(Predicate::Terminology {
        param: code.to_owned(),
        op: TerminologyOp::In(url.to_owned()),
    })
}

/// `:below=system|code` / `:above=system|code`: the code and the codes below (above) it in its
/// code system's is-a hierarchy.
fn subsumption(code: &str, modifier: &str, value: &str) -> Result<Predicate, FhirError> {
    let (system, concept) = match value.split_once('|') {
        Some((s, c)) if !s.is_empty() && !c.is_empty() => (s.to_owned(), c.to_owned()),
        _ => {
            return Err(FhirError::invalid(format!(
            "{code}:{modifier}={value}: expected system|code (the hierarchy is the code system's)"
        )))
        }
    };
    let op = if modifier == "below" {
        TerminologyOp::Below {
            system,
            code: concept,
        }
    } else {
        TerminologyOp::Above {
            system,
            code: concept,
        }
    };
    Ok(Predicate::Terminology {
        param: code.to_owned(),
        op,
    })
}

/// `identifier:of-type=system|code|value`: an Identifier whose type has that coding and whose
/// value is `value` (search page, token `:of-type`).
fn of_type(code: &str, value: &str) -> Result<Predicate, FhirError> {
    let parts: Vec<&str> = value.splitn(3, '|').collect();
    let [system, type_code, id_value] = parts[..] else {
        return Err(FhirError::invalid(format!(
            "{code}:of-type={value}: expected system|code|value"
        )));
    };
    if type_code.is_empty() || id_value.is_empty() {
        return Err(FhirError::invalid(format!(
            "{code}:of-type={value}: the type code and the value are required"
        )));
    }
    Ok(Predicate::Composite(vec![
        Predicate::Token {
            param: format!("{code}:of-type$0"),
            system: if system.is_empty() {
                TokenSystem::Any
            } else {
                TokenSystem::Is(index_text(system))
            },
            code: Some(index_text(type_code)),
        },
        Predicate::Token {
            param: format!("{code}:of-type$1"),
            system: TokenSystem::Any,
            code: Some(index_text(id_value)),
        },
    ]))
}

/// A chained parameter `ref[:Type].rest=values`: resources whose reference `ref` points at a
/// resource (of `Type`, or any target type that has the parameter) matching `rest=values`.
fn chain(
    registry: &Registry,
    rtype: &str,
    head: &str,
    tail: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Parsed1, FhirError> {
    let (code, type_modifier) = match head.split_once(':') {
        Some((c, t)) => (c, Some(t)),
        None => (head, None),
    };
    let param = registry
        .get(rtype, code)
        .filter(|p| p.kind == ParamType::Reference)
        .ok_or_else(|| {
            FhirError::invalid(format!(
                "{head}.{tail}: {rtype} has no reference parameter '{code}' to chain from"
            ))
        })?;
    let targets: Vec<String> = match type_modifier {
        Some(t) if resource_types::is_resource_type(t) => vec![t.to_owned()],
        Some(t) => {
            return Err(FhirError::invalid(format!(
                "{head}.{tail}: '{t}' is not a resource type"
            )))
        }
        None => param.target.clone(),
    };
    let tail_code = tail.split(['.', ':']).next().unwrap_or(tail);
    let mut any_of = Vec::new();
    for target in targets {
        let known = tail_code == "_id"
            || tail_code == "_lastUpdated"
            || tail.starts_with("_has:")
            || registry.get(&target, tail_code).is_some();
        if !known {
            continue;
        }
        match parameter(registry, &target, tail, values, base, depth + 1)? {
            Ok(inner) => any_of.push(Predicate::Chain {
                param: code.to_owned(),
                target_type: target,
                filters: inner.into_filters(),
            }),
            Err(reason) => return Err(FhirError::invalid(format!("{head}.{tail}: {reason}"))),
        }
    }
    if any_of.is_empty() {
        return Err(FhirError::invalid(format!(
            "{head}.{tail}: no target of {rtype}.{code} has a search parameter '{tail_code}'"
        )));
    }
    Ok(Parsed1::AnyOf(any_of))
}

/// Reverse chaining `_has:Type:ref:rest=values`: resources referenced through `ref` by a resource
/// of `Type` that matches `rest=values` (which may be another `_has`).
fn has(
    registry: &Registry,
    rtype: &str,
    rest: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Parsed1, FhirError> {
    let mut parts = rest.splitn(3, ':');
    let (source, param, tail) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(p), Some(t)) if !t.is_empty() => (s, p, t),
        _ => {
            return Err(FhirError::invalid(format!(
                "_has:{rest}: expected _has:Type:reference:parameter"
            )))
        }
    };
    if !resource_types::is_resource_type(source) {
        return Err(FhirError::invalid(format!(
            "_has:{rest}: '{source}' is not a resource type"
        )));
    }
    match registry.get(source, param) {
        Some(p) if p.kind == ParamType::Reference => {}
        _ => {
            return Err(FhirError::invalid(format!(
                "_has:{rest}: {source} has no reference parameter '{param}'"
            )))
        }
    }
    let inner = match parameter(registry, source, tail, values, base, depth + 1)? {
        Ok(inner) => Predicate::Has {
            source_type: source.to_owned(),
            param: param.to_owned(),
            target_type: rtype.to_owned(),
            filters: inner.into_filters(),
        },
        Err(reason) => return Err(FhirError::invalid(format!("_has:{rest}: {reason}"))),
    };
    Ok(Parsed1::AnyOf(vec![inner]))
}

/// `_list=id` (search page, "_list"): the resources a List on this server names in its entries,
/// that is `_has:List:item:_id=id`. Functional lists (`$current-problems`, …) need a definition
/// of what is current that this server does not have: refused.
fn list(
    registry: &Registry,
    rtype: &str,
    name: &str,
    values: &[String],
    base: &str,
    depth: usize,
) -> Result<Parsed1, FhirError> {
    if name != "_list" {
        return Err(FhirError::invalid(format!(
            "{name}: _list takes no modifier"
        )));
    }
    if let Some(functional) = values.iter().find(|v| v.starts_with('$')) {
        return Err(FhirError::invalid(format!(
            "_list={functional}: functional lists are not supported; name a List by its id"
        )));
    }
    if let Some(bad) = values.iter().find(|v| !id::is_valid(v)) {
        return Err(FhirError::invalid(format!("_list={bad}: not a List id")));
    }
    has(registry, rtype, "List:item:_id", values, base, depth)
}

/// What a parameter name stands for.
#[derive(Clone, Copy)]
enum Kind {
    Id,
    LastUpdated,
    Param(ParamType),
}

/// The predicates of one parameter: any of them (comma), or all of them (`:not` of a list).
enum Parsed1 {
    AnyOf(Vec<Predicate>),
    AllOf(Vec<Predicate>),
}

impl Parsed1 {
    /// As query filters: an AND of ORs.
    fn into_filters(self) -> Vec<Vec<Predicate>> {
        match self {
            Parsed1::AnyOf(any_of) => vec![any_of],
            Parsed1::AllOf(all_of) => all_of.into_iter().map(|p| vec![p]).collect(),
        }
    }
}

/// The predicates for one parameter occurrence, or `None` when the combination of type and
/// modifier is not supported.
fn predicates(
    code: &str,
    kind: Kind,
    modifier: Option<&str>,
    values: &[String],
    base: &str,
) -> Result<Option<Parsed1>, FhirError> {
    let param = code.to_owned();
    let each =
        |f: &dyn Fn(&str) -> Result<Predicate, FhirError>| -> Result<Option<Parsed1>, FhirError> {
            Ok(Some(Parsed1::AnyOf(
                values.iter().map(|v| f(v)).collect::<Result<_, _>>()?,
            )))
        };
    if modifier == Some("missing") {
        let table = match kind {
            Kind::Param(ParamType::Token) => IndexTable::Token,
            Kind::Param(ParamType::String) => IndexTable::String,
            Kind::Param(ParamType::Date) => IndexTable::Date,
            Kind::Param(ParamType::Reference) => IndexTable::Reference,
            Kind::Param(ParamType::Uri) => IndexTable::Uri,
            Kind::Param(ParamType::Number) => IndexTable::Number,
            Kind::Param(ParamType::Quantity) => IndexTable::Quantity,
            _ => return Ok(None),
        };
        return each(&|v| match v {
            "true" => Ok(Predicate::Missing {
                table,
                param: param.clone(),
                missing: true,
            }),
            "false" => Ok(Predicate::Missing {
                table,
                param: param.clone(),
                missing: false,
            }),
            other => Err(FhirError::invalid(format!(
                "{code}:missing must be true or false, not '{other}'"
            ))),
        });
    }
    match (kind, modifier) {
        (Kind::Id, None) => each(&|v| Ok(Predicate::Id(v.to_owned()))),
        (Kind::LastUpdated, None) => each(&|v| range(RangeTarget::LastUpdated, code, v)),
        (Kind::Param(t), None) if t != ParamType::Composite && t != ParamType::Special => {
            each(&|v| Ok(single(code, t, v, base)?.expect("a plain value")))
        }
        (Kind::Param(ParamType::Token), Some("not")) => Ok(Some(Parsed1::AllOf(
            values
                .iter()
                .map(|v| Predicate::Not(Box::new(token(code, v))))
                .collect(),
        ))),
        // `:text`: the display texts, matched like a string (case- and accent-insensitive,
        // starts with).
        (Kind::Param(ParamType::Token), Some("text")) => each(&|v| {
            Ok(Predicate::String {
                param: format!("{code}:text"),
                value: index_text(v),
                mode: StringMatch::StartsWith,
            })
        }),
        (Kind::Param(ParamType::Token), Some("of-type")) => each(&|v| of_type(code, v)),
        (Kind::Param(ParamType::Token), Some("in")) => each(&|v| value_set(code, "in", v)),
        // Not in any of the value sets.
        (Kind::Param(ParamType::Token), Some("not-in")) => Ok(Some(Parsed1::AllOf(
            values
                .iter()
                .map(|v| Ok(Predicate::Not(Box::new(value_set(code, "not-in", v)?))))
                .collect::<Result<_, FhirError>>()?,
        ))),
        (Kind::Param(ParamType::Token), Some(m @ ("below" | "above"))) => {
            each(&|v| subsumption(code, m, v))
        }
        // `:identifier`: `Reference.identifier`, matched like a token.
        (Kind::Param(ParamType::Reference), Some("identifier")) => {
            each(&|v| Ok(token(&format!("{code}:identifier"), v)))
        }
        (Kind::Param(ParamType::String), Some("exact") | Some("contains")) => {
            let mode = match modifier {
                Some("exact") => StringMatch::Exact,
                _ => StringMatch::Contains,
            };
            each(&|v| {
                Ok(Predicate::String {
                    param: param.clone(),
                    value: index_text(v),
                    mode,
                })
            })
        }
        (Kind::Param(ParamType::Uri), Some("below") | Some("above")) => {
            let mode = match modifier {
                Some("below") => UriMatch::Below,
                _ => UriMatch::Above,
            };
            each(&|v| {
                Ok(Predicate::Uri {
                    param: param.clone(),
                    value: index_text(v),
                    mode,
                })
            })
        }
        (Kind::Param(ParamType::Reference), Some(t)) if resource_types::is_resource_type(t) => {
            each(&|v| Ok(reference(code, Some(t), v, base)))
        }
        _ => Ok(None),
    }
}

/// `[type/]id`, an absolute URL (of this server: split into type and id), or `:Type` + id.
fn reference(code: &str, modifier_type: Option<&str>, value: &str, base: &str) -> Predicate {
    let local = value
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(value);
    let local = local.split("/_history/").next().unwrap_or(local);
    let param = code.to_owned();
    match local.split_once('/') {
        Some((t, id)) if !local.contains(':') && resource_types::is_resource_type(t) => {
            Predicate::Reference {
                param,
                target_type: Some(t.to_owned()),
                target_id: Some(id.to_owned()),
                url: None,
            }
        }
        _ if local.contains(':') => Predicate::Reference {
            param,
            target_type: None,
            target_id: None,
            url: Some(index_text(value)),
        },
        _ => Predicate::Reference {
            param,
            target_type: modifier_type.map(str::to_owned),
            target_id: Some(local.to_owned()),
            url: None,
        },
    }
}

/// `[prefix]number|system|code`, `[prefix]number||code` or `[prefix]number`.
fn quantity(code: &str, value: &str) -> Result<Predicate, FhirError> {
    let (prefix, rest) = Prefix::split(value);
    let mut parts = rest.splitn(3, '|');
    let number = parts.next().unwrap_or("");
    let (value, lo, hi) = number_range(number)
        .ok_or_else(|| FhirError::invalid(format!("{code}: '{number}' is not a number")))?;
    let (system, unit) = match (parts.next(), parts.next()) {
        (None, _) => (TokenSystem::Any, None),
        (Some(unit), None) => (TokenSystem::Any, Some(unit)),
        (Some(""), Some(unit)) => (TokenSystem::None, Some(unit)),
        (Some(system), Some(unit)) => (TokenSystem::Is(system.to_owned()), Some(unit)),
    };
    let unit = unit.filter(|u| !u.is_empty());
    // A unit UCUM cannot convert (`[pH]`, a typo) is still matched as written.
    let canonical = match (&system, unit) {
        (TokenSystem::Is(system), Some(unit)) if system == ucum::SYSTEM => {
            canonical_quantity(value, lo, hi, unit)
        }
        _ => None,
    };
    Ok(Predicate::Quantity {
        param: code.to_owned(),
        prefix,
        value,
        lo,
        hi,
        system,
        code: unit.map(str::to_owned),
        canonical,
    })
}

/// The search value and its precision range in canonical UCUM units (conversions are
/// increasing, so the range stays a range).
fn canonical_quantity(value: f64, lo: f64, hi: f64, unit: &str) -> Option<CanonicalQuantity> {
    let at = |v: f64| ucum::canonical(v, unit).ok();
    let (value, lo, hi) = (at(value)?, at(lo)?, at(hi)?);
    Some(CanonicalQuantity {
        unit: value.unit,
        value: value.value,
        lo: lo.value,
        hi: hi.value,
    })
}

fn refuse_or_ignore(
    unknown: Unknown,
    reason: String,
    ignored: &mut Vec<String>,
) -> Result<(), FhirError> {
    match unknown {
        Unknown::Refuse => Err(FhirError::invalid(format!(
            "Unsupported search parameter {reason}"
        ))),
        Unknown::Ignore => {
            ignored.push(reason);
            Ok(())
        }
    }
}

/// Splits a value on commas that are not escaped (`\,`), unescaping `\,` and `\\`; `\$` stays
/// escaped until the parameter's type is known (it separates the components of a composite).
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '\\')) => out.last_mut().unwrap().push(next),
                Some(next) => {
                    let last = out.last_mut().unwrap();
                    last.push('\\');
                    last.push(next);
                }
                None => out.last_mut().unwrap().push('\\'),
            },
            ',' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn token(param: &str, value: &str) -> Predicate {
    // Split at the first `|` that is not escaped.
    let mut split = None;
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            split = Some(i);
            break;
        }
    }
    // Compared with index text, which is cut at `MAX_INDEXED_BYTES`.
    let unescape = |s: &str| index_text(&s.replace("\\|", "|"));
    let (system, code) = match split {
        None => (TokenSystem::Any, Some(unescape(value))),
        Some(0) => (TokenSystem::None, Some(unescape(&value[1..]))),
        Some(i) => {
            let code = &value[i + 1..];
            (
                TokenSystem::Is(unescape(&value[..i])),
                (!code.is_empty()).then(|| unescape(code)),
            )
        }
    };
    Predicate::Token {
        param: param.to_owned(),
        system,
        code,
    }
}

fn range(target: RangeTarget, code: &str, value: &str) -> Result<Predicate, FhirError> {
    let (prefix, date) = Prefix::split(value);
    let (lo, hi) = parse_range(date).map_err(|e| FhirError::invalid(format!("{code}: {e}")))?;
    Ok(Predicate::Range {
        target,
        prefix,
        lo,
        hi,
    })
}

/// Parses the criteria of a conditional interaction (`If-None-Exist`, `PUT/DELETE Type?…`):
/// every parameter must be understood, and at least one must be given.
pub fn criteria(
    registry: &Registry,
    rtype: &str,
    params: &[(String, String)],
    base: &str,
) -> Result<SearchQuery, FhirError> {
    if params.is_empty() {
        return Err(FhirError::invalid(
            "A conditional interaction needs search criteria",
        ));
    }
    let mut parsed = parse(registry, rtype, params, Unknown::Refuse, base)?;
    if parsed.query.contained != Contained::False {
        return Err(FhirError::invalid(
            "Conditional criteria cannot use _contained: a contained resource is no resource to create, update or delete on its own",
        ));
    }
    if crate::search::terminology::uses_terminology(&parsed.query.filters) {
        return Err(FhirError::invalid(
            "Conditional criteria cannot use :in, :not-in, :below or :above on tokens; search first, then use the id",
        ));
    }
    if crate::search::hierarchy::uses_hierarchy(&parsed.query.filters) {
        return Err(FhirError::invalid(
            "Conditional criteria cannot use :below or :above on references; search first, then use the id",
        ));
    }
    // Two hits are enough to tell "one" from "many".
    parsed.query.count = 2;
    parsed.query.after = None;
    parsed.query.before = None;
    parsed.query.sort.clear();
    Ok(parsed.query)
}

/// The key under which concurrent conditional interactions with the same criteria serialise.
pub fn criteria_key(rtype: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    format!("{rtype}?{}", sorted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_commas_do_not_split() {
        assert_eq!(
            split_or(r"a\,b,c"),
            vec!["a,b".to_string(), "c".to_string()]
        );
    }

    #[test]
    fn tokens_take_the_system_before_the_bar() {
        assert_eq!(
            token("identifier", "http://x|1"),
            Predicate::Token {
                param: "identifier".into(),
                system: TokenSystem::Is("http://x".into()),
                code: Some("1".into())
            }
        );
        assert_eq!(
            token("code", "|1"),
            Predicate::Token {
                param: "code".into(),
                system: TokenSystem::None,
                code: Some("1".into())
            }
        );
        assert_eq!(
            token("code", "http://x|"),
            Predicate::Token {
                param: "code".into(),
                system: TokenSystem::Is("http://x".into()),
                code: None
            }
        );
    }
}
