//! Number parameters (search page, "Number", https://hl7.org/fhir/R4/search.html#number): a stored
//! value compared with the search value, `eq` within the range its precision implies; quantities
//! compare their values the same way.

use super::Sql;
use crate::search::query::Prefix;

/// `param=[prefix]value` on the number row `al`, the value's precision `[lo, hi)`.
pub(super) fn push_number(
    sql: &mut Sql,
    al: &str,
    param: &str,
    prefix: Prefix,
    value: f64,
    lo: f64,
    hi: f64,
) {
    sql.push(&format!("{al}.param = "))
        .text(param)
        .push(" AND ");
    push_compare(sql, &format!("{al}.value"), prefix, value, lo, hi);
}

/// Compares a stored number with a search number: `eq` when the value lies in the range the
/// search value's precision implies, the other prefixes against the value itself.
pub(super) fn push_compare(
    sql: &mut Sql,
    column: &str,
    prefix: Prefix,
    value: f64,
    lo: f64,
    hi: f64,
) {
    match prefix {
        Prefix::Eq => sql
            .push("(")
            .push(column)
            .push(" >= ")
            .float(lo)
            .push(" AND ")
            .push(column)
            .push(" < ")
            .float(hi)
            .push(")"),
        Prefix::Ne => sql
            .push("NOT (")
            .push(column)
            .push(" >= ")
            .float(lo)
            .push(" AND ")
            .push(column)
            .push(" < ")
            .float(hi)
            .push(")"),
        Prefix::Gt | Prefix::Sa => sql.push(column).push(" > ").float(value),
        Prefix::Lt | Prefix::Eb => sql.push(column).push(" < ").float(value),
        Prefix::Ge => sql.push(column).push(" >= ").float(value),
        Prefix::Le => sql.push(column).push(" <= ").float(value),
        Prefix::Ap => {
            // Approximately: within 10% of the value (search page, prefix ap).
            let margin = (value * 0.1).abs().max(hi - lo);
            sql.push("(")
                .push(column)
                .push(" >= ")
                .float(value - margin)
                .push(" AND ")
                .push(column)
                .push(" <= ")
                .float(value + margin)
                .push(")")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_number_eq_is_within_the_precision_range() {
        assert_sql(
            |d| count(d, &one("RiskAssessment", number(Prefix::Eq))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND (n.value >= ? AND n.value < ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $2 AND (n.value >= $3 AND n.value < $4)))"#,
            r#""RiskAssessment", "probability", 0.245, 0.255"#,
        );
    }

    #[test]
    fn a_number_ne() {
        assert_sql(
            |d| count(d, &one("RiskAssessment", number(Prefix::Ne))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND NOT (n.value >= ? AND n.value < ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $2 AND NOT (n.value >= $3 AND n.value < $4)))"#,
            r#""RiskAssessment", "probability", 0.245, 0.255"#,
        );
    }

    #[test]
    fn a_number_gt_and_sa() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "RiskAssessment",
                        vec![vec![number(Prefix::Gt)], vec![number(Prefix::Sa)]],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND n.value > ?)) AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND n.value > ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $2 AND n.value > $3)) AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $4 AND n.value > $5))"#,
            r#""RiskAssessment", "probability", 0.25, "probability", 0.25"#,
        );
    }

    #[test]
    fn a_number_lt_and_eb() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "RiskAssessment",
                        vec![vec![number(Prefix::Lt)], vec![number(Prefix::Eb)]],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND n.value < ?)) AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND n.value < ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $2 AND n.value < $3)) AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $4 AND n.value < $5))"#,
            r#""RiskAssessment", "probability", 0.25, "probability", 0.25"#,
        );
    }

    #[test]
    fn a_number_ge_and_le() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "RiskAssessment",
                        vec![vec![number(Prefix::Ge)], vec![number(Prefix::Le)]],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND n.value >= ?)) AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND n.value <= ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $2 AND n.value >= $3)) AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $4 AND n.value <= $5))"#,
            r#""RiskAssessment", "probability", 0.25, "probability", 0.25"#,
        );
    }

    #[test]
    fn a_number_ap_is_within_ten_percent() {
        assert_sql(
            |d| count(d, &one("RiskAssessment", number(Prefix::Ap))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = ? AND (n.value >= ? AND n.value <= ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_number n WHERE n.rid = r.rid AND n.param = $2 AND (n.value >= $3 AND n.value <= $4)))"#,
            r#""RiskAssessment", "probability", 0.225, 0.275"#,
        );
    }
}
