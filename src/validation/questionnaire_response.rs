//! A QuestionnaireResponse against the Questionnaire it answers (`questionnaire`), as the R4
//! pages define the pair (questionnaire.html, questionnaireresponse.html): every item's
//! `linkId` is one of the Questionnaire's at that place in the tree; answers have the value
//! type the item's `type` calls for (questionnaire.html#item-types, the `item-type` code
//! system); `required` items are answered in a completed response; an item that does not
//! `repeats` has one answer; answers come from `answerOption` / `answerValueSet`; `maxLength`;
//! an item whose `enableWhen` is false has no answers; and the core extensions that constrain
//! answers (extensibility registry: `minValue`, `maxValue`, `minLength`, `maxDecimalPlaces`,
//! `regex`, `mimeType`, `maxSize`, `questionnaire-minOccurs`, `questionnaire-maxOccurs`,
//! `questionnaire-unitOption`, `questionnaire-unitValueSet`, `questionnaire-referenceResource`,
//! `questionnaire-optionExclusive`; and SDC's `sdc-questionnaire-minQuantity`/`maxQuantity`).
//!
//! The Questionnaire is looked up among the definitions (packages); one the server does not
//! hold is said as not checked.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::outcome::Outcome;
use super::Definitions;

mod enable_when;

const EXT: &str = "http://hl7.org/fhir/StructureDefinition/";
const SDC_EXT: &str = "http://hl7.org/fhir/uv/sdc/StructureDefinition/";

/// Checks `qr` (at `at`, `QuestionnaireResponse`) against its Questionnaire.
pub fn check(defs: &Definitions, qr: &Value, at: &str, out: &mut Outcome) {
    let Some(url) = qr.get("questionnaire").and_then(Value::as_str) else {
        return;
    };
    let Some(questionnaire) = defs.questionnaire(url) else {
        out.not_checked(
            format!("questionnaire {url}"),
            &format!("{at}.questionnaire"),
            format!(
                "The Questionnaire {url} is not known to this server, so the answers were not checked against it"
            ),
        );
        return;
    };
    let completed = matches!(
        qr.get("status").and_then(Value::as_str),
        Some("completed" | "amended")
    );
    let check = Check {
        defs,
        qr,
        completed,
    };
    check.items(
        items(questionnaire),
        qr.get("item")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
        at,
        out,
    );
}

fn items(v: &Value) -> &[Value] {
    v.get("item")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn answers(v: &Value) -> &[Value] {
    v.get("answer")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn link_id(v: &Value) -> Option<&str> {
    v.get("linkId").and_then(Value::as_str)
}

/// The values of the extensions of `item` with `url`.
fn extensions<'a>(item: &'a Value, url: &str) -> Vec<(&'a str, &'a Value)> {
    item.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
        .filter_map(|e| choice(e.as_object()?, "value"))
        .collect()
}

fn extension<'a>(item: &'a Value, url: &str) -> Option<(&'a str, &'a Value)> {
    extensions(item, url).into_iter().next()
}

/// The `value[x]` (`prefix[x]`) of an object: the type suffix (`Coding`) and the value.
fn choice<'a>(object: &'a Map<String, Value>, prefix: &str) -> Option<(&'a str, &'a Value)> {
    object.iter().find_map(|(k, v)| {
        let suffix = k.strip_prefix(prefix)?;
        suffix
            .starts_with(|c: char| c.is_ascii_uppercase())
            .then_some((suffix, v))
    })
}

/// The answer value types an item of `type` takes (questionnaire.html, QuestionnaireItemType).
fn answer_types(item_type: &str) -> &'static [&'static str] {
    match item_type {
        "boolean" => &["Boolean"],
        "decimal" => &["Decimal"],
        "integer" => &["Integer"],
        "date" => &["Date"],
        "dateTime" => &["DateTime"],
        "time" => &["Time"],
        "string" | "text" => &["String"],
        "url" => &["Uri"],
        "choice" => &["Coding"],
        "open-choice" => &["Coding", "String"],
        "attachment" => &["Attachment"],
        "reference" => &["Reference"],
        "quantity" => &["Quantity"],
        _ => &[],
    }
}

struct Check<'a> {
    defs: &'a Definitions,
    qr: &'a Value,
    completed: bool,
}

impl Check<'_> {
    /// The response items `given` (at `at`) against the Questionnaire items `defined` at the
    /// same place.
    fn items(&self, defined: &[Value], given: &[Value], at: &str, out: &mut Outcome) {
        for (i, item) in given.iter().enumerate() {
            let Some(id) = link_id(item) else { continue };
            if !defined.iter().any(|d| link_id(d) == Some(id)) {
                out.error(
                    "structure",
                    &format!("{at}.item[{i}]"),
                    format!("The linkId '{id}' is not an item of the Questionnaire here"),
                );
            }
        }
        for d in defined {
            let Some(id) = link_id(d) else { continue };
            let found: Vec<(usize, &Value)> = given
                .iter()
                .enumerate()
                .filter(|(_, g)| link_id(g) == Some(id))
                .collect();
            self.item(d, id, &found, at, out);
        }
    }

    /// The response items `found` for the Questionnaire item `d` (linkId `id`).
    fn item(&self, d: &Value, id: &str, found: &[(usize, &Value)], at: &str, out: &mut Outcome) {
        let item_type = d.get("type").and_then(Value::as_str).unwrap_or("");
        let enabled = self.enabled(d);
        if !enabled {
            for (i, g) in found {
                if has_answers(g) {
                    out.error(
                        "business-rule",
                        &format!("{at}.item[{i}]"),
                        format!(
                            "The item '{id}' has answers although its enableWhen condition is false"
                        ),
                    );
                }
            }
            return;
        }
        let required = d.get("required").and_then(Value::as_bool) == Some(true);
        let repeats = d.get("repeats").and_then(Value::as_bool) == Some(true);
        if required && self.completed && found.iter().all(|(_, g)| !has_answers(g)) {
            let message = match (item_type, found.is_empty()) {
                ("group", false) => format!("The required group '{id}' has no answered items"),
                _ => format!("The required item '{id}' has no answer"),
            };
            out.error("required", at, message);
        }
        if item_type == "group" && !repeats && found.len() > 1 {
            out.error(
                "structure",
                &format!("{at}.item[{}]", found[1].0),
                format!(
                    "The group '{id}' does not repeat, but occurs {} times",
                    found.len()
                ),
            );
        }
        let all_answers: usize = found.iter().map(|(_, g)| answers(g).len()).sum();
        if !matches!(item_type, "group" | "display") {
            if !repeats && all_answers > 1 {
                out.error(
                    "structure",
                    &format!("{at}.item[{}]", found[0].0),
                    format!("The item '{id}' does not repeat, but has {all_answers} answers"),
                );
            }
            if !found.is_empty() {
                if let Some(min) = extension(d, &format!("{EXT}questionnaire-minOccurs"))
                    .and_then(|(_, v)| v.as_u64())
                {
                    if (all_answers as u64) < min {
                        out.error(
                            "required",
                            &format!("{at}.item[{}]", found[0].0),
                            format!(
                                "The item '{id}' needs at least {min} answers, found {all_answers}"
                            ),
                        );
                    }
                }
                if let Some(max) = extension(d, &format!("{EXT}questionnaire-maxOccurs"))
                    .and_then(|(_, v)| v.as_u64())
                {
                    if all_answers as u64 > max {
                        out.error(
                            "structure",
                            &format!("{at}.item[{}]", found[0].0),
                            format!(
                                "The item '{id}' allows at most {max} answers, found {all_answers}"
                            ),
                        );
                    }
                }
            }
        }
        for (i, g) in found {
            let here = format!("{at}.item[{i}]");
            if matches!(item_type, "group" | "display") && !answers(g).is_empty() {
                out.error(
                    "structure",
                    &here,
                    format!("The item '{id}' is of type {item_type}, which has no answers"),
                );
            }
            let given_answers = answers(g);
            if !matches!(item_type, "group" | "display") {
                for (a, answer) in given_answers.iter().enumerate() {
                    self.answer(
                        d,
                        item_type,
                        answer,
                        given_answers.len(),
                        &format!("{here}.answer[{a}]"),
                        out,
                    );
                }
            }
            // Children: a group's under `item`; a question's under each answer's `item`.
            if item_type == "group" || !items(g).is_empty() {
                self.items(items(d), items(g), &here, out);
            }
            if item_type != "group" {
                for (a, answer) in given_answers.iter().enumerate() {
                    if !items(answer).is_empty() {
                        self.items(items(d), items(answer), &format!("{here}.answer[{a}]"), out);
                    }
                }
            }
        }
    }

    /// One answer (at `at`) to the question `d` of type `item_type`.
    fn answer(
        &self,
        d: &Value,
        item_type: &str,
        answer: &Value,
        count: usize,
        at: &str,
        out: &mut Outcome,
    ) {
        let Some((suffix, value)) = answer.as_object().and_then(|o| choice(o, "value")) else {
            return;
        };
        let at = format!("{at}.value{suffix}");
        let options: Vec<(&str, &Value, &Value)> = d
            .get("answerOption")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| {
                let (s, v) = choice(o.as_object()?, "value")?;
                Some((s, v, o))
            })
            .collect();
        let mut allowed: Vec<&str> = answer_types(item_type).to_vec();
        if matches!(item_type, "choice" | "open-choice") {
            // R4 answerOption.value[x] is integer, date, time, string or Coding.
            for (s, _, _) in &options {
                if !allowed.contains(s) {
                    allowed.push(s);
                }
            }
            if !options.is_empty() && item_type == "choice" {
                allowed.retain(|t| options.iter().any(|(s, _, _)| s == t));
            }
        }
        if allowed.is_empty() {
            return;
        }
        if !allowed.contains(&suffix) {
            out.error(
                "structure",
                &at,
                format!(
                    "An answer to an item of type {item_type} must be of type {}, not {suffix}",
                    allowed.join(" or ")
                ),
            );
            return;
        }
        // answerOption: the answer is one of the options of its type (open-choice: a string
        // is the free-text part).
        let same_type: Vec<&(&str, &Value, &Value)> =
            options.iter().filter(|(s, _, _)| *s == suffix).collect();
        if !same_type.is_empty() && !(item_type == "open-choice" && suffix == "String") {
            match same_type
                .iter()
                .find(|(_, v, _)| same_value(suffix, v, value))
            {
                None => out.error(
                    "code-invalid",
                    &at,
                    format!(
                        "The answer {} is not one of the item's answerOption values",
                        show(value)
                    ),
                ),
                Some((_, _, option)) => {
                    let exclusive =
                        extension(option, &format!("{EXT}questionnaire-optionExclusive"))
                            .and_then(|(_, v)| v.as_bool())
                            == Some(true);
                    if exclusive && count > 1 {
                        out.error(
                            "business-rule",
                            &at,
                            format!("The answer {} is an exclusive option: no other answer may be given with it", show(value)),
                        );
                    }
                }
            }
        }
        if suffix == "Coding" {
            if let Some(vs) = d.get("answerValueSet").and_then(Value::as_str) {
                self.in_value_set(vs, value, &at, "answerValueSet", out);
            }
        }
        match suffix {
            "String" => self.string(d, value, &at, out),
            "Integer" | "Decimal" => self.number(d, suffix, value, &at, out),
            "Date" | "DateTime" | "Time" => self.date(d, suffix, value, &at, out),
            "Quantity" => self.quantity(d, value, &at, out),
            "Attachment" => self.attachment(d, value, &at, out),
            "Reference" => self.reference(d, value, &at, out),
            _ => {}
        }
    }

    /// `Coding` `value` is in the value set `url`, when the server can expand it.
    fn in_value_set(&self, url: &str, value: &Value, at: &str, what: &str, out: &mut Outcome) {
        let (Some(system), Some(code)) = (
            value.get("system").and_then(Value::as_str),
            value.get("code").and_then(Value::as_str),
        ) else {
            return;
        };
        let url = url.split('|').next().unwrap_or(url);
        match self.defs.expansion(url) {
            Ok(codes) => {
                if !codes.get(system).is_some_and(|s| s.contains(code)) {
                    out.error(
                        "code-invalid",
                        at,
                        format!(
                            "{system}#{code} is not in the value set {url} of the item's {what}"
                        ),
                    );
                }
            }
            Err(reason) => out.not_checked(
                format!("{what} {url}"),
                at,
                format!("The {what} {url} was not checked: {reason}"),
            ),
        }
    }

    fn string(&self, d: &Value, value: &Value, at: &str, out: &mut Outcome) {
        let Some(s) = value.as_str() else { return };
        let len = s.chars().count() as u64;
        if let Some(max) = d.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                out.error(
                    "value",
                    at,
                    format!(
                        "The answer is {len} characters long, more than the item's maxLength {max}"
                    ),
                );
            }
        }
        if let Some(min) = extension(d, &format!("{EXT}minLength")).and_then(|(_, v)| v.as_u64()) {
            if len < min {
                out.error(
                    "value",
                    at,
                    format!(
                        "The answer is {len} characters long, less than the item's minLength {min}"
                    ),
                );
            }
        }
        if let Some(pattern) = extension(d, &format!("{EXT}regex")).and_then(|(_, v)| v.as_str()) {
            match regex::Regex::new(&format!("^(?:{pattern})$")) {
                Ok(re) if !re.is_match(s) => out.error(
                    "value",
                    at,
                    format!("The answer '{s}' does not match the item's regex {pattern}"),
                ),
                Ok(_) => {}
                Err(e) => out.not_checked(
                    format!("regex {pattern}"),
                    at,
                    format!("The item's regex {pattern} was not checked: {e}"),
                ),
            }
        }
    }

    fn number(&self, d: &Value, suffix: &str, value: &Value, at: &str, out: &mut Outcome) {
        let Some(n) = value.as_f64() else { return };
        self.bounds(
            d,
            at,
            out,
            |bound_type, bound| {
                (bound_type == "Integer" || bound_type == "Decimal")
                    .then(|| bound.as_f64())
                    .flatten()
                    .and_then(|b| n.partial_cmp(&b))
            },
            &value.to_string(),
        );
        if suffix == "Decimal" {
            if let Some(places) =
                extension(d, &format!("{EXT}maxDecimalPlaces")).and_then(|(_, v)| v.as_u64())
            {
                // The number as written (decimals keep their precision, R4 datatypes.html).
                let text = value.to_string();
                let decimals = text
                    .split(['e', 'E'])
                    .next()
                    .and_then(|m| m.split_once('.'))
                    .map_or(0, |(_, f)| f.len() as u64);
                if decimals > places {
                    out.error(
                        "value",
                        at,
                        format!("The answer {text} has {decimals} decimal places, more than the item's maxDecimalPlaces {places}"),
                    );
                }
            }
        }
    }

    fn date(&self, d: &Value, suffix: &str, value: &Value, at: &str, out: &mut Outcome) {
        let Some(s) = value.as_str() else { return };
        self.bounds(
            d,
            at,
            out,
            |bound_type, bound| {
                (bound_type == suffix)
                    .then(|| bound.as_str())
                    .flatten()
                    .and_then(|b| compare_dates(s, b))
            },
            s,
        );
    }

    /// `minValue` / `maxValue`: `compare` orders the answer against a bound of a type, or says
    /// it cannot (`None`: another type, or dates of different precision that overlap).
    fn bounds(
        &self,
        d: &Value,
        at: &str,
        out: &mut Outcome,
        compare: impl Fn(&str, &Value) -> Option<Ordering>,
        shown: &str,
    ) {
        if let Some((t, b)) = extension(d, &format!("{EXT}minValue")) {
            if compare(t, b) == Some(Ordering::Less) {
                out.error(
                    "value",
                    at,
                    format!(
                        "The answer {shown} is less than the item's minValue {}",
                        show(b)
                    ),
                );
            }
        }
        if let Some((t, b)) = extension(d, &format!("{EXT}maxValue")) {
            if compare(t, b) == Some(Ordering::Greater) {
                out.error(
                    "value",
                    at,
                    format!(
                        "The answer {shown} is greater than the item's maxValue {}",
                        show(b)
                    ),
                );
            }
        }
    }

    fn quantity(&self, d: &Value, value: &Value, at: &str, out: &mut Outcome) {
        let options = extensions(d, &format!("{EXT}questionnaire-unitOption"));
        let unit = (
            value.get("system").and_then(Value::as_str),
            value.get("code").and_then(Value::as_str),
        );
        if !options.is_empty()
            && !options.iter().any(|(_, o)| {
                (
                    o.get("system").and_then(Value::as_str),
                    o.get("code").and_then(Value::as_str),
                ) == unit
            })
        {
            out.error(
                "code-invalid",
                at,
                format!(
                    "The unit of the answer {} is not one of the item's unitOption units",
                    show(value)
                ),
            );
        }
        if let Some((_, vs)) = extension(d, &format!("{EXT}questionnaire-unitValueSet")) {
            if let Some(vs) = vs.as_str() {
                if unit.1.is_none() {
                    out.error(
                        "code-invalid",
                        at,
                        format!("The answer {} has no unit code, and the item's unitValueSet {vs} asks for one", show(value)),
                    );
                } else {
                    self.in_value_set(vs, value, at, "unitValueSet", out);
                }
            }
        }
        let bounds = [
            ("minValue", format!("{EXT}minValue"), Ordering::Less),
            ("maxValue", format!("{EXT}maxValue"), Ordering::Greater),
            (
                "minQuantity",
                format!("{SDC_EXT}sdc-questionnaire-minQuantity"),
                Ordering::Less,
            ),
            (
                "maxQuantity",
                format!("{SDC_EXT}sdc-questionnaire-maxQuantity"),
                Ordering::Greater,
            ),
        ];
        for (name, url, wrong) in bounds {
            let Some(("Quantity", bound)) = extension(d, &url) else {
                continue;
            };
            match compare_quantities(value, bound) {
                Some(order) if order == wrong => out.error(
                    "value",
                    at,
                    format!(
                        "The answer {} is {} the item's {name} {}",
                        show(value),
                        if wrong == Ordering::Less { "less than" } else { "greater than" },
                        show(bound)
                    ),
                ),
                Some(_) => {}
                None => out.error(
                    "value",
                    at,
                    format!(
                        "The answer {} cannot be compared with the item's {name} {} (no common UCUM unit)",
                        show(value),
                        show(bound)
                    ),
                ),
            }
        }
    }

    fn attachment(&self, d: &Value, value: &Value, at: &str, out: &mut Outcome) {
        let types: Vec<&str> = extensions(d, &format!("{EXT}mimeType"))
            .into_iter()
            .filter_map(|(_, v)| v.as_str())
            .collect();
        if let Some(ct) = value.get("contentType").and_then(Value::as_str) {
            let base = ct.split(';').next().unwrap_or(ct).trim();
            if !types.is_empty() && !types.contains(&base) {
                out.error(
                    "value",
                    at,
                    format!(
                        "The content type {ct} is not one the item allows ({})",
                        types.join(", ")
                    ),
                );
            }
        }
        if let Some(max) = extension(d, &format!("{EXT}maxSize")).and_then(|(_, v)| v.as_f64()) {
            let size = value
                .get("data")
                .and_then(Value::as_str)
                .and_then(super::attachment::decoded_len)
                .or_else(|| value.get("size").and_then(Value::as_u64));
            if let Some(size) = size {
                if size as f64 > max {
                    out.error(
                        "value",
                        at,
                        format!(
                            "The attachment has {size} bytes, more than the item's maxSize {max}"
                        ),
                    );
                }
            }
        }
    }

    fn reference(&self, d: &Value, value: &Value, at: &str, out: &mut Outcome) {
        let types: Vec<&str> = extensions(d, &format!("{EXT}questionnaire-referenceResource"))
            .into_iter()
            .filter_map(|(_, v)| v.as_str())
            .collect();
        if types.is_empty() {
            return;
        }
        let Some(reference) = value.get("reference").and_then(Value::as_str) else {
            return;
        };
        if let Some(t) = super::reference::type_of(reference) {
            if !types.contains(&t) {
                out.error(
                    "structure",
                    at,
                    format!(
                        "The reference {reference} is to a {t}, but the item allows only {}",
                        types.join(", ")
                    ),
                );
            }
        }
    }
}

/// Whether a response item has an answer, itself or in its nested items.
fn has_answers(item: &Value) -> bool {
    !answers(item).is_empty() || items(item).iter().any(has_answers)
}

/// Two values of type `suffix` are the same answer: Codings by system and code, others by
/// value.
fn same_value(suffix: &str, a: &Value, b: &Value) -> bool {
    match suffix {
        "Coding" => a.get("system") == b.get("system") && a.get("code") == b.get("code"),
        "Integer" | "Decimal" => a.as_f64().is_some() && a.as_f64() == b.as_f64(),
        _ => a == b,
    }
}

/// Orders two dates, date-times or times on their common precision; `None` when they agree
/// on it but differ in precision (FHIRPath: the comparison is empty).
fn compare_dates(a: &str, b: &str) -> Option<Ordering> {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        Ordering::Equal if a.len() != b.len() => None,
        order => Some(order),
    }
}

/// Orders two Quantities: in UCUM when both have UCUM codes, else when their codes (or, with
/// neither, units) are the same; `None` when they cannot be compared.
fn compare_quantities(a: &Value, b: &Value) -> Option<Ordering> {
    let value = |q: &Value| q.get("value").and_then(Value::as_f64);
    let (va, vb) = (value(a)?, value(b)?);
    fn code(q: &Value) -> Option<&str> {
        q.get("code").and_then(Value::as_str)
    }
    let ucum = |q: &Value| q.get("system").and_then(Value::as_str) == Some(crate::ucum::SYSTEM);
    match (code(a), code(b)) {
        (Some(ca), Some(cb)) if ucum(a) && ucum(b) => {
            let converted = crate::ucum::convert(va, ca, cb).ok()?;
            converted.partial_cmp(&vb)
        }
        (Some(ca), Some(cb)) if ca == cb && a.get("system") == b.get("system") => {
            va.partial_cmp(&vb)
        }
        _ => None,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("code") || o.contains_key("value") => {
            let value = o.get("value").map(|v| v.to_string());
            let code = o.get("code").and_then(Value::as_str);
            let system = o.get("system").and_then(Value::as_str);
            match (value, system, code) {
                (Some(v), _, Some(c)) => format!("{v} {c}"),
                (Some(v), _, None) => format!(
                    "{v} {}",
                    o.get("unit").and_then(Value::as_str).unwrap_or("")
                )
                .trim()
                .to_owned(),
                (None, Some(s), Some(c)) => format!("{s}#{c}"),
                (None, None, Some(c)) => c.to_owned(),
                _ => v.to_string(),
            }
        }
        _ => v.to_string(),
    }
}
