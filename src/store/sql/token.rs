//! Token parameters (search page, "Token", https://hl7.org/fhir/R4/search.html#token):
//! `[system]|[code]`, and the codes a terminology modifier (`:in`, `:below`, `:above`) stands for.

use super::Sql;
use crate::search::query::TokenSystem;

/// `param=[system]|[code]` on the token row `al`; no code matches any code of the system.
pub(super) fn push_token(
    sql: &mut Sql,
    al: &str,
    param: &str,
    system: &TokenSystem,
    code: Option<&str>,
) {
    sql.push(&format!("{al}.param = ")).text(param);
    if let Some(code) = code {
        sql.push(&format!(" AND {al}.code = ")).text(code);
    }
    match system {
        TokenSystem::Any => {}
        TokenSystem::None => {
            sql.push(&format!(" AND {al}.system IS NULL"));
        }
        TokenSystem::Is(system) => {
            sql.push(&format!(" AND {al}.system = ")).text(system);
        }
    }
}

/// A token whose `system|code` is one of `codes` (system, its codes): what `:in`, `:below` and
/// `:above` stand for once the terminology has resolved them.
pub(super) fn push_token_in(sql: &mut Sql, al: &str, param: &str, codes: &[(String, Vec<String>)]) {
    sql.push(&format!("{al}.param = "))
        .text(param)
        .push(" AND (");
    if codes.is_empty() {
        sql.push("1 = 0");
    }
    for (i, (system, codes)) in codes.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        // A `code` element has no system of its own: its binding gives it one.
        sql.push(&format!("(({al}.system = "))
            .text(system)
            .push(&format!(" OR {al}.system IS NULL) AND {al}.code IN ("));
        for (j, code) in codes.iter().enumerate() {
            if j > 0 {
                sql.push(", ");
            }
            sql.text(code);
        }
        sql.push("))");
    }
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_token_with_a_code_drives_the_search() {
        assert_sql(
            |d| count(d, &one("Observation", token("code", "1234-5"))),
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = ? AND t.param = ? AND t.code = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = $1 AND t.param = $2 AND t.code = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted"#,
            r#""Observation", "code", "1234-5", "Observation""#,
        );
    }

    #[test]
    fn a_token_with_system_and_code() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Token {
                            param: "code".into(),
                            system: TokenSystem::Is("http://loinc.org".into()),
                            code: Some("1234-5".into()),
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = ? AND t.param = ? AND t.code = ? AND t.system = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = $1 AND t.param = $2 AND t.code = $3 AND t.system = $4) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $5 AND NOT r.deleted"#,
            r#""Observation", "code", "1234-5", "http://loinc.org", "Observation""#,
        );
    }

    #[test]
    fn a_token_without_a_system() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Token {
                            param: "code".into(),
                            system: TokenSystem::None,
                            code: Some("1234-5".into()),
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = ? AND t.param = ? AND t.code = ? AND t.system IS NULL) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.rtype = $1 AND t.param = $2 AND t.code = $3 AND t.system IS NULL) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted"#,
            r#""Observation", "code", "1234-5", "Observation""#,
        );
    }

    #[test]
    fn a_token_of_a_system_with_any_code_is_probed() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Token {
                            param: "code".into(),
                            system: TokenSystem::Is("http://loinc.org".into()),
                            code: None,
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND t.system = ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $2 AND t.system = $3))"#,
            r#""Observation", "code", "http://loinc.org""#,
        );
    }

    #[test]
    fn a_token_in_a_set_of_codes() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::TokenIn {
                            param: "code".into(),
                            codes: vec![
                                (
                                    "http://loinc.org".into(),
                                    vec!["1234-5".into(), "2345-6".into()],
                                ),
                                ("http://snomed.info/sct".into(), vec!["271649006".into()]),
                            ],
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND (((t.system = ? OR t.system IS NULL) AND t.code IN (?, ?)) OR ((t.system = ? OR t.system IS NULL) AND t.code IN (?)))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $2 AND (((t.system = $3 OR t.system IS NULL) AND t.code IN ($4, $5)) OR ((t.system = $6 OR t.system IS NULL) AND t.code IN ($7)))))"#,
            r#""Observation", "code", "http://loinc.org", "1234-5", "2345-6", "http://snomed.info/sct", "271649006""#,
        );
    }

    #[test]
    fn a_token_in_no_codes_matches_nothing() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::TokenIn {
                            param: "code".into(),
                            codes: vec![],
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND (1 = 0)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $2 AND (1 = 0)))"#,
            r#""Observation", "code""#,
        );
    }
}
