//! String parameters (search page, "String", https://hl7.org/fhir/R4/search.html#string): starts
//! with (the default) and `:contains` on case- and accent-normalized text, `:exact` on the text.
//! The value comes normalised from the parser (`search::param::string::value`).

use super::Sql;
use crate::search::query::StringMatch;

/// `param[:contains|:exact]=value` on the string row `al`.
pub(super) fn push_string(sql: &mut Sql, al: &str, param: &str, value: &str, mode: StringMatch) {
    sql.push(&format!("{al}.param = ")).text(param);
    match mode {
        StringMatch::Exact => sql.push(&format!(" AND {al}.exact = ")).text(value),
        StringMatch::StartsWith => sql
            .push(&format!(" AND {al}.normalized LIKE "))
            .text(&like_prefix(value))
            .push(" ESCAPE '\\'"),
        StringMatch::Contains => sql
            .push(&format!(" AND {al}.normalized LIKE "))
            .text(&format!("%{}", like_prefix(value)))
            .push(" ESCAPE '\\'"),
    };
}

/// A LIKE pattern for "starts with" on normalized text, with LIKE's wildcards escaped.
fn like_prefix(value: &str) -> String {
    let mut pattern = value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_string_starts_with_its_value_escaped_for_like() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Patient",
                        Predicate::String {
                            param: "name".into(),
                            value: "eve_5%".into(),
                            mode: StringMatch::StartsWith,
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.param = $2 AND s.normalized LIKE $3 ESCAPE '\'))"#,
            r#""Patient", "name", "eve\\_5\\%%""#,
        );
    }

    #[test]
    fn a_string_contains() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Patient",
                        Predicate::String {
                            param: "name".into(),
                            value: "eve".into(),
                            mode: StringMatch::Contains,
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.param = $2 AND s.normalized LIKE $3 ESCAPE '\'))"#,
            r#""Patient", "name", "%eve%""#,
        );
    }

    #[test]
    fn a_string_exact() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Patient",
                        Predicate::String {
                            param: "name".into(),
                            value: "Ève".into(),
                            mode: StringMatch::Exact,
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.param = ? AND s.exact = ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.param = $2 AND s.exact = $3))"#,
            r#""Patient", "name", "Ève""#,
        );
    }
}
