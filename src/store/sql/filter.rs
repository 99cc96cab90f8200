//! Filters (search page, "Search Parameters" and "Modifiers",
//! https://hl7.org/fhir/R4/search.html#combining): every parameter must hold (AND), any of its
//! comma-separated values (OR); `_id`, `_lastUpdated`, `:missing` and `:not` on the resource row,
//! and the index row each parameter type's file turns its values into a condition on.

use super::{chain, composite, date, number, quantity, reference, string, token, uri, Sql};
use crate::search::query::{IndexTable, Predicate, RangeTarget};

/// The resource row predicates apply to (its alias), and in a search of contained resources the
/// index row (`unit`) whose contained resource they are about: every index row a predicate
/// reads must then be of that same contained resource.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    pub(super) alias: &'a str,
    pub(super) unit: Option<&'a str>,
}

impl<'a> Row<'a> {
    pub(super) fn of(alias: &'a str) -> Self {
        Row { alias, unit: None }
    }

    /// The condition that index row `index` belongs to this row.
    pub(super) fn same(&self, index: &str) -> String {
        let a = self.alias;
        match self.unit {
            None => format!("{index}.rid = {a}.rid"),
            Some(u) => format!("{index}.rid = {a}.rid AND {index}.contained = {u}.contained"),
        }
    }
}

impl std::fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.alias)
    }
}

/// ` AND (p OR p …)` for every filter, on the resource row aliased `a`.
pub(super) fn push_filters(sql: &mut Sql, filters: &[Vec<Predicate>], a: Row<'_>) {
    for any_of in filters {
        sql.push(" AND ");
        push_any_of(sql, any_of, a);
    }
}

/// `(p OR p …)` as a balanced tree: SQLite refuses expressions nested 1,000 deep, which a flat
/// chain of a thousand ORs is.
pub(super) fn push_any_of(sql: &mut Sql, any_of: &[Predicate], a: Row<'_>) {
    match any_of {
        [] => {
            sql.push("1 = 0");
        }
        [one] => {
            sql.push("(");
            push_predicate(sql, one, a);
            sql.push(")");
        }
        many => {
            let (left, right) = many.split_at(many.len() / 2);
            sql.push("(");
            push_any_of(sql, left, a);
            sql.push(" OR ");
            push_any_of(sql, right, a);
            sql.push(")");
        }
    }
}

/// One predicate on the resource row `a`: on its columns, through a chain or `_has`, or as an
/// index row of the parameter's values (see [`push_condition`]).
pub(super) fn push_predicate(sql: &mut Sql, predicate: &Predicate, a: Row<'_>) {
    match predicate {
        Predicate::Id(id) => {
            sql.push(&format!("{a}.id = ")).text(id);
        }
        Predicate::Compartment(patient) => {
            sql.push(&format!("{a}.compartment = ")).text(patient);
        }
        Predicate::Type(rtype) => {
            sql.push(&format!("{a}.rtype = ")).text(rtype);
        }
        Predicate::Range {
            target: RangeTarget::LastUpdated,
            prefix,
            lo,
            hi,
        } => {
            // A point in time is the range [t, t + 1 ms).
            date::push_range(
                sql,
                &format!("{a}.last_updated"),
                &format!("({a}.last_updated + 1)"),
                *prefix,
                *lo,
                *hi,
            );
        }
        Predicate::Missing {
            table,
            param,
            missing,
        } => {
            sql.push(if *missing { "NOT EXISTS" } else { "EXISTS" });
            sql.push(" (SELECT 1 FROM ")
                .push(table_name(*table))
                .push(&format!(" m WHERE {} AND m.param = ", a.same("m")))
                .text(param)
                .push(")");
        }
        Predicate::Not(inner) => {
            sql.push("NOT (");
            push_predicate(sql, inner, a);
            sql.push(")");
        }
        Predicate::Chain {
            param,
            target_type,
            filters,
        } => chain::push_chain(sql, param, target_type, filters, a),
        Predicate::Has {
            source_type,
            param,
            target_type,
            filters,
        } => chain::push_has(sql, source_type, param, target_type, filters, a),
        Predicate::Composite(components) => composite::push_composite(sql, components, a, None),
        // Resolved into `TokenIn` (`Reference`s) before a search reaches the store; unresolved,
        // nothing matches.
        Predicate::Terminology { .. } | Predicate::Hierarchy { .. } => {
            sql.push("1 = 0");
        }
        indexed => {
            let (table, alias) = index_of(indexed).expect("an index predicate");
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM {} {alias} WHERE {} AND ",
                table_name(table),
                a.same(alias)
            ));
            push_condition(sql, indexed, alias);
            sql.push(")");
        }
    }
}

/// The index table a predicate on one parameter's values looks in, and the alias it uses.
pub(super) fn index_of(predicate: &Predicate) -> Option<(IndexTable, &'static str)> {
    Some(match predicate {
        Predicate::Range {
            target: RangeTarget::Date(_),
            ..
        } => (IndexTable::Date, "d"),
        Predicate::Token { .. } | Predicate::TokenIn { .. } => (IndexTable::Token, "t"),
        Predicate::String { .. } => (IndexTable::String, "s"),
        Predicate::Reference { .. } => (IndexTable::Reference, "x"),
        Predicate::Uri { .. } => (IndexTable::Uri, "u"),
        Predicate::Number { .. } => (IndexTable::Number, "n"),
        Predicate::Quantity { .. } => (IndexTable::Quantity, "q"),
        _ => return None,
    })
}

/// The condition on one index row (aliased `al`) of a predicate on a parameter's values: the
/// file of the parameter's type writes it.
pub(super) fn push_condition(sql: &mut Sql, predicate: &Predicate, al: &str) {
    match predicate {
        Predicate::Range {
            prefix,
            lo,
            hi,
            target: RangeTarget::Date(param),
        } => date::push_date(sql, al, param, *prefix, *lo, *hi),
        Predicate::Token {
            param,
            system,
            code,
        } => token::push_token(sql, al, param, system, code.as_deref()),
        Predicate::TokenIn { param, codes } => token::push_token_in(sql, al, param, codes),
        Predicate::String { param, value, mode } => {
            string::push_string(sql, al, param, value, *mode)
        }
        Predicate::Reference {
            param,
            target_type,
            target_id,
            url,
        } => reference::push_reference(
            sql,
            al,
            param,
            target_type.as_deref(),
            target_id.as_deref(),
            url.as_deref(),
        ),
        Predicate::Uri { param, value, mode } => uri::push_uri(sql, al, param, value, *mode),
        Predicate::Number {
            param,
            prefix,
            value,
            lo,
            hi,
        } => number::push_number(sql, al, param, *prefix, *value, *lo, *hi),
        Predicate::Quantity { .. } => quantity::push_quantity(sql, al, predicate),
        _ => {
            sql.push("1 = 0");
        }
    }
}

/// The table of the index rows of one parameter type.
pub(super) fn table_name(table: IndexTable) -> &'static str {
    match table {
        IndexTable::Token => "idx_token",
        IndexTable::String => "idx_string",
        IndexTable::Date => "idx_date",
        IndexTable::Reference => "idx_reference",
        IndexTable::Uri => "idx_uri",
        IndexTable::Number => "idx_number",
        IndexTable::Quantity => "idx_quantity",
    }
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn id_and_compartment_are_columns_of_the_resource_row() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![
                            vec![Predicate::Id("o1".into())],
                            vec![Predicate::Compartment("p1".into())],
                        ],
                    ),
                )
            },
            // The compartment (a patient-bound token's) drives: see `search::push_from_where`.
            r#"SELECT COUNT(*) FROM (SELECT c.rid FROM resource c WHERE c.compartment = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted AND (r.id = ?)"#,
            r#"SELECT COUNT(*) FROM (SELECT c.rid FROM resource c WHERE c.compartment = $1) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $2 AND NOT r.deleted AND (r.id = $3)"#,
            r#""p1", "Observation", "o1""#,
        );
    }

    #[test]
    fn missing_true_and_false() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![
                            vec![Predicate::Missing {
                                table: IndexTable::Date,
                                param: "date".into(),
                                missing: true,
                            }],
                            vec![Predicate::Missing {
                                table: IndexTable::Token,
                                param: "code".into(),
                                missing: false,
                            }],
                        ],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (NOT EXISTS (SELECT 1 FROM idx_date m WHERE m.rid = r.rid AND m.param = ?)) AND (EXISTS (SELECT 1 FROM idx_token m WHERE m.rid = r.rid AND m.param = ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (NOT EXISTS (SELECT 1 FROM idx_date m WHERE m.rid = r.rid AND m.param = $2)) AND (EXISTS (SELECT 1 FROM idx_token m WHERE m.rid = r.rid AND m.param = $3))"#,
            r#""Observation", "date", "code""#,
        );
    }

    #[test]
    fn not_negates_the_inner_predicate() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Not(Box::new(token("status", "final"))),
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (NOT (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND t.code = ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (NOT (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $2 AND t.code = $3)))"#,
            r#""Observation", "status", "final""#,
        );
    }

    #[test]
    fn values_of_one_parameter_are_ored_as_a_balanced_tree() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![vec![
                            token("status", "final"),
                            token("status", "amended"),
                            token("status", "corrected"),
                        ]],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND ((EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND t.code = ?)) OR ((EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND t.code = ?)) OR (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = ? AND t.code = ?))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND ((EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $2 AND t.code = $3)) OR ((EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $4 AND t.code = $5)) OR (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = $6 AND t.code = $7))))"#,
            r#""Observation", "status", "final", "status", "amended", "status", "corrected""#,
        );
    }

    #[test]
    fn no_values_match_nothing() {
        assert_sql(
            |d| count(d, &query("Observation", vec![vec![]])),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND 1 = 0"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND 1 = 0"#,
            r#""Observation""#,
        );
    }

    #[test]
    fn unresolved_terminology_and_hierarchy_match_nothing() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![
                            vec![Predicate::Terminology {
                                param: "code".into(),
                                op: TerminologyOp::In("http://example.org/vs".into()),
                            }],
                            vec![Predicate::Hierarchy {
                                param: "location".into(),
                                target_type: "Location".into(),
                                id: "l1".into(),
                                via: "partof".into(),
                                above: false,
                            }],
                        ],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (1 = 0) AND (1 = 0)"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (1 = 0) AND (1 = 0)"#,
            r#""Observation""#,
        );
    }
}
