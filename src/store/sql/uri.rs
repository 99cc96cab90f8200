//! Uri parameters (search page, "URI", https://hl7.org/fhir/R4/search.html#uri): exact, `:below`
//! (the stored uri starts with the value) and `:above` (the value starts with the stored uri).

use super::Sql;
use crate::search::query::UriMatch;

/// `param[:below|:above]=value` on the uri row `al`.
pub(super) fn push_uri(sql: &mut Sql, al: &str, param: &str, value: &str, mode: UriMatch) {
    sql.push(&format!("{al}.param = ")).text(param);
    match mode {
        UriMatch::Exact => sql.push(&format!(" AND {al}.value = ")).text(value),
        // substr rather than LIKE: LIKE ignores ASCII case on SQLite, not on PostgreSQL.
        UriMatch::Below => sql
            .push(&format!(" AND substr({al}.value, 1, CAST("))
            .int(value.chars().count() as i64)
            .push(" AS INTEGER)) = ")
            .text(value),
        UriMatch::Above => sql
            .push(" AND substr(")
            .text(value)
            .push(&format!(", 1, length({al}.value)) = {al}.value")),
    };
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_uri_exact() {
        assert_sql(
            |d| count(d, &one("ValueSet", uri(UriMatch::Exact))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_uri u WHERE u.rid = r.rid AND u.param = ? AND u.value = ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_uri u WHERE u.rid = r.rid AND u.param = $2 AND u.value = $3))"#,
            r#""ValueSet", "url", "http://example.org/fhir/ValueSet/a""#,
        );
    }

    #[test]
    fn a_uri_below_compares_a_prefix_of_the_stored_uri() {
        assert_sql(
            |d| count(d, &one("ValueSet", uri(UriMatch::Below))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_uri u WHERE u.rid = r.rid AND u.param = ? AND substr(u.value, 1, CAST(? AS INTEGER)) = ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_uri u WHERE u.rid = r.rid AND u.param = $2 AND substr(u.value, 1, CAST($3 AS INTEGER)) = $4))"#,
            r#""ValueSet", "url", 34, "http://example.org/fhir/ValueSet/a""#,
        );
    }

    #[test]
    fn a_uri_above_compares_a_prefix_of_the_value() {
        assert_sql(
            |d| count(d, &one("ValueSet", uri(UriMatch::Above))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_uri u WHERE u.rid = r.rid AND u.param = ? AND substr(?, 1, length(u.value)) = u.value))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_uri u WHERE u.rid = r.rid AND u.param = $2 AND substr($3, 1, length(u.value)) = u.value))"#,
            r#""ValueSet", "url", "http://example.org/fhir/ValueSet/a""#,
        );
    }
}
