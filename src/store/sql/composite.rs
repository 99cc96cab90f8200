//! Composite parameters (search page, "Composite", https://hl7.org/fhir/R4/search.html#composite):
//! every component matches an index row of the same group (the element it came from).

use super::filter::{index_of, push_condition, table_name, Row};
use super::Sql;
use crate::search::query::Predicate;

/// Composite: one EXISTS per component, each in the group (element) of the first.
pub(super) fn push_composite(
    sql: &mut Sql,
    components: &[Predicate],
    a: Row<'_>,
    group_of: Option<&str>,
) {
    let Some((first, rest)) = components.split_first() else {
        sql.push("1 = 1");
        return;
    };
    let Some((table, _)) = index_of(first) else {
        sql.push("1 = 0");
        return;
    };
    let alias = format!("{a}g{}", components.len());
    sql.push(&format!(
        "EXISTS (SELECT 1 FROM {} {alias} WHERE {} AND ",
        table_name(table),
        a.same(&alias)
    ));
    match group_of {
        Some(g) => sql.push(&format!("{alias}.grp = {g}.grp AND ")),
        None => sql.push(&format!("{alias}.grp IS NOT NULL AND ")),
    };
    push_condition(sql, first, &alias);
    if !rest.is_empty() {
        sql.push(" AND ");
        push_composite(sql, rest, a, Some(&alias));
    }
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_composite_reads_every_component_from_one_group() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Composite(vec![
                            Predicate::Token {
                                param: "code-value-quantity$0".into(),
                                system: TokenSystem::Any,
                                code: Some("1234-5".into()),
                            },
                            quantity(TokenSystem::Any, None, None),
                        ]),
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token rg2 WHERE rg2.rid = r.rid AND rg2.grp IS NOT NULL AND rg2.param = ? AND rg2.code = ? AND EXISTS (SELECT 1 FROM idx_quantity rg1 WHERE rg1.rid = r.rid AND rg1.grp = rg2.grp AND rg1.param = ? AND (rg1.value >= ? AND rg1.value < ?))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token rg2 WHERE rg2.rid = r.rid AND rg2.grp IS NOT NULL AND rg2.param = $2 AND rg2.code = $3 AND EXISTS (SELECT 1 FROM idx_quantity rg1 WHERE rg1.rid = r.rid AND rg1.grp = rg2.grp AND rg1.param = $4 AND (rg1.value >= $5 AND rg1.value < $6))))"#,
            r#""Observation", "code-value-quantity$0", "1234-5", "value-quantity", 4.95, 5.05"#,
        );
    }

    #[test]
    fn a_composite_of_three_components_nests_in_the_first_group() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Composite(vec![
                            token("a$0", "x"),
                            token("a$1", "y"),
                            token("a$2", "z"),
                        ]),
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token rg3 WHERE rg3.rid = r.rid AND rg3.grp IS NOT NULL AND rg3.param = ? AND rg3.code = ? AND EXISTS (SELECT 1 FROM idx_token rg2 WHERE rg2.rid = r.rid AND rg2.grp = rg3.grp AND rg2.param = ? AND rg2.code = ? AND EXISTS (SELECT 1 FROM idx_token rg1 WHERE rg1.rid = r.rid AND rg1.grp = rg2.grp AND rg1.param = ? AND rg1.code = ?))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_token rg3 WHERE rg3.rid = r.rid AND rg3.grp IS NOT NULL AND rg3.param = $2 AND rg3.code = $3 AND EXISTS (SELECT 1 FROM idx_token rg2 WHERE rg2.rid = r.rid AND rg2.grp = rg3.grp AND rg2.param = $4 AND rg2.code = $5 AND EXISTS (SELECT 1 FROM idx_token rg1 WHERE rg1.rid = r.rid AND rg1.grp = rg2.grp AND rg1.param = $6 AND rg1.code = $7))))"#,
            r#""Observation", "a$0", "x", "a$1", "y", "a$2", "z""#,
        );
    }

    #[test]
    fn a_composite_without_components_matches_everything() {
        assert_sql(
            |d| count(d, &one("Observation", Predicate::Composite(vec![]))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (1 = 1)"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (1 = 1)"#,
            r#""Observation""#,
        );
    }
}
