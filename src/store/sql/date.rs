//! Date parameters (search page, "Date/DateTime", https://hl7.org/fhir/R4/search.html#date):
//! the stored range `[lo, hi)` compared with the search value's range under its prefix
//! ("prefixes", https://hl7.org/fhir/R4/search.html#prefix); `_lastUpdated` the same way.

use super::Sql;
use crate::search::query::Prefix;

/// `param=[prefix]value` on the date row `al`, the value's range `[lo, hi)` in ms.
pub(super) fn push_date(sql: &mut Sql, al: &str, param: &str, prefix: Prefix, lo: i64, hi: i64) {
    sql.push(&format!("{al}.param = "))
        .text(param)
        .push(" AND ");
    push_range(
        sql,
        &format!("{al}.lo"),
        &format!("{al}.hi"),
        prefix,
        lo,
        hi,
    );
}

/// Compares a stored range `[rlo, rhi)` with the search range `[lo, hi)` as FHIR's prefixes
/// define it (search page, "prefixes").
pub(super) fn push_range(sql: &mut Sql, rlo: &str, rhi: &str, prefix: Prefix, lo: i64, hi: i64) {
    let contained = |sql: &mut Sql| {
        sql.push("(")
            .push(rlo)
            .push(" >= ")
            .int(lo)
            .push(" AND ")
            .push(rhi)
            .push(" <= ")
            .int(hi);
        sql.push(")");
    };
    match prefix {
        Prefix::Eq => contained(sql),
        Prefix::Ne => {
            sql.push("NOT ");
            contained(sql);
        }
        Prefix::Gt => {
            sql.push(rhi).push(" > ").int(hi);
        }
        Prefix::Lt => {
            sql.push(rlo).push(" < ").int(lo);
        }
        Prefix::Ge => {
            sql.push("(").push(rhi).push(" > ").int(hi).push(" OR ");
            contained(sql);
            sql.push(")");
        }
        Prefix::Le => {
            sql.push("(").push(rlo).push(" < ").int(lo).push(" OR ");
            contained(sql);
            sql.push(")");
        }
        Prefix::Sa => {
            sql.push(rlo).push(" >= ").int(hi);
        }
        Prefix::Eb => {
            sql.push(rhi).push(" <= ").int(lo);
        }
        Prefix::Ap => {
            // Approximately: overlaps the search range widened by 10% of its distance from now
            // (the search page leaves the width to the server).
            let now = chrono::Utc::now().timestamp_millis();
            let margin = ((now - lo).abs() / 10).max(hi - lo);
            sql.push("(")
                .push(rlo)
                .push(" < ")
                .int(hi + margin)
                .push(" AND ")
                .push(rhi);
            sql.push(" > ").int(lo - margin).push(")");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_date_eq_is_a_range_within_the_search_range() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Eq))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND (d.lo >= ? AND d.hi <= ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND (d.lo >= $3 AND d.hi <= $4)))"#,
            r#""Observation", "date", 1577836800000, 1580515200000"#,
        );
    }

    #[test]
    fn a_date_ne() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Ne))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND NOT (d.lo >= ? AND d.hi <= ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND NOT (d.lo >= $3 AND d.hi <= $4)))"#,
            r#""Observation", "date", 1577836800000, 1580515200000"#,
        );
    }

    #[test]
    fn a_date_gt() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Gt))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND d.hi > ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND d.hi > $3))"#,
            r#""Observation", "date", 1580515200000"#,
        );
    }

    #[test]
    fn a_date_lt() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Lt))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND d.lo < ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND d.lo < $3))"#,
            r#""Observation", "date", 1577836800000"#,
        );
    }

    #[test]
    fn a_date_ge() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Ge))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND (d.hi > ? OR (d.lo >= ? AND d.hi <= ?))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND (d.hi > $3 OR (d.lo >= $4 AND d.hi <= $5))))"#,
            r#""Observation", "date", 1580515200000, 1577836800000, 1580515200000"#,
        );
    }

    #[test]
    fn a_date_le() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Le))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND (d.lo < ? OR (d.lo >= ? AND d.hi <= ?))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND (d.lo < $3 OR (d.lo >= $4 AND d.hi <= $5))))"#,
            r#""Observation", "date", 1577836800000, 1577836800000, 1580515200000"#,
        );
    }

    #[test]
    fn a_date_sa() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Sa))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND d.lo >= ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND d.lo >= $3))"#,
            r#""Observation", "date", 1580515200000"#,
        );
    }

    #[test]
    fn a_date_eb() {
        assert_sql(
            |d| count(d, &one("Observation", date(Prefix::Eb))),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = ? AND d.hi <= ?))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = $2 AND d.hi <= $3))"#,
            r#""Observation", "date", 1577836800000"#,
        );
    }

    #[test]
    fn last_updated_is_a_range_of_one_millisecond_on_the_resource_row() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        Predicate::Range {
                            target: RangeTarget::LastUpdated,
                            prefix: Prefix::Ge,
                            lo: 1000,
                            hi: 2000,
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (((r.last_updated + 1) > ? OR (r.last_updated >= ? AND (r.last_updated + 1) <= ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (((r.last_updated + 1) > $2 OR (r.last_updated >= $3 AND (r.last_updated + 1) <= $4)))"#,
            r#""Observation", 2000, 1000, 2000"#,
        );
    }

    /// `ap` widens the search range by a tenth of its distance from now: only the text is fixed.
    #[test]
    fn a_date_ap_overlaps_the_widened_range() {
        for (dialect, text) in [
            (Dialect::Sqlite, "(d.lo < ? AND d.hi > ?)"),
            (Dialect::Postgres, "(d.lo < $3 AND d.hi > $4)"),
        ] {
            let sql = count(dialect, &one("Observation", date(Prefix::Ap)));
            assert!(sql.text.contains(text), "{}", sql.text);
            let (Bind::Int(hi), Bind::Int(lo)) = (&sql.binds[2], &sql.binds[3]) else {
                panic!("{:?}", sql.binds)
            };
            assert!(*hi > 1_580_515_200_000 && *lo < 1_577_836_800_000);
        }
    }
}
