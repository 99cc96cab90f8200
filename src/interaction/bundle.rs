//! The Bundles the interactions answer with (searchset, history, batch-response,
//! transaction-response), built in one place so that each is valid FHIR JSON: an array has at
//! least one item, so a Bundle without entries leaves `entry` out (JSON page, "arrays").

use serde_json::{json, Value};

use crate::error::Issue;

/// A Bundle of type `kind` with its `total` (searchsets), `link`s and entries, leaving out what
/// it does not have.
pub fn bundle(kind: &str, total: Option<u64>, links: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut bundle = json!({"resourceType": "Bundle", "type": kind});
    if let Some(total) = total {
        bundle["total"] = json!(total);
    }
    if !links.is_empty() {
        bundle["link"] = Value::Array(links);
    }
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

/// A warning about the request (an ignored parameter, a cut-short answer), with its issue type.
pub fn warning(code: &'static str, diagnostics: String) -> Issue {
    Issue {
        severity: "warning",
        code,
        diagnostics,
        expression: None,
    }
}

/// Information about the answer (a page size capped at the maximum).
pub fn information(diagnostics: String) -> Issue {
    Issue {
        severity: "information",
        code: "informational",
        diagnostics,
        expression: None,
    }
}

/// A searchset entry (`search.mode = outcome`) holding the issues, if there are any.
pub fn outcome_entry(issues: Vec<Issue>) -> Option<Value> {
    if issues.is_empty() {
        return None;
    }
    Some(json!({"resource": crate::error::outcome(&issues), "search": {"mode": "outcome"}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_entries_or_links_has_no_empty_arrays() {
        let empty = bundle("searchset", Some(0), Vec::new(), Vec::new());
        assert_eq!(
            empty,
            json!({"resourceType": "Bundle", "type": "searchset", "total": 0})
        );
        let one = bundle(
            "history",
            None,
            vec![json!({"relation": "self", "url": "u"})],
            vec![json!({})],
        );
        assert_eq!(one["link"].as_array().unwrap().len(), 1);
        assert_eq!(one["entry"].as_array().unwrap().len(), 1);
        assert!(one.get("total").is_none());
    }

    #[test]
    fn no_issues_no_outcome_entry() {
        assert!(outcome_entry(Vec::new()).is_none());
        let entry = outcome_entry(vec![information("capped".into())]).unwrap();
        assert_eq!(entry["search"]["mode"], "outcome");
        assert_eq!(entry["resource"]["issue"][0]["severity"], "information");
    }
}
