//! Reference parameters (search page, "Reference", https://hl7.org/fhir/R4/search.html#reference):
//! `[type]/[id]`, `[id]` of any type, or an absolute url.

use super::Sql;

/// `param=[type]/[id]` (type optional) or `param=[url]` on the reference row `al`.
pub(super) fn push_reference(
    sql: &mut Sql,
    al: &str,
    param: &str,
    target_type: Option<&str>,
    target_id: Option<&str>,
    url: Option<&str>,
) {
    sql.push(&format!("{al}.param = ")).text(param);
    if let Some(id) = target_id {
        sql.push(&format!(" AND {al}.target_id = ")).text(id);
    }
    if let Some(t) = target_type {
        sql.push(&format!(" AND {al}.target_type = ")).text(t);
    }
    if let Some(url) = url {
        sql.push(&format!(" AND {al}.url = ")).text(url);
    }
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_reference_to_one_resource_drives_the_search() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one("Observation", reference("subject", "Patient", "p1")),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ? AND x.target_type = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2 AND x.target_type = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted"#,
            r#""subject", "p1", "Patient", "Observation""#,
        );
    }

    #[test]
    fn a_reference_by_id_of_any_type() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Reference {
                            param: "subject".into(),
                            target_type: None,
                            target_id: Some("p1".into()),
                            url: None,
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $3 AND NOT r.deleted"#,
            r#""subject", "p1", "Observation""#,
        );
    }

    #[test]
    fn a_reference_by_url_is_probed() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Reference {
                            param: "subject".into(),
                            target_type: None,
                            target_id: None,
                            url: Some("http://example.org/fhir/Patient/p1".into()),
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference x WHERE x.rid = r.rid AND x.param = ? AND x.url = ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference x WHERE x.rid = r.rid AND x.param = $2 AND x.url = $3))"#,
            r#""Observation", "subject", "http://example.org/fhir/Patient/p1""#,
        );
    }

    #[test]
    fn a_reference_before_a_token_drives() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![
                            vec![token("code", "1234-5")],
                            vec![reference("subject", "Patient", "p1")],
                        ],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ? AND x.target_type = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND t.code = ?))"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2 AND x.target_type = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $5 AND t.code = $6))"#,
            r#""subject", "p1", "Patient", "Observation", "code", "1234-5""#,
        );
    }
}
