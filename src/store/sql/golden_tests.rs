//! Golden SQL of today's statements, before they move into one file each.

mod builder {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn placeholders_are_question_marks_on_sqlite_and_numbered_on_postgresql() {
        assert_sql(
            |d| {
                let mut sql = Sql::new(d);
                sql.push("SELECT ")
                    .text("a")
                    .push(", ")
                    .int(1)
                    .push(", ")
                    .float(0.5);
                sql.push(", ").opt(&None).push(", ").bind(Bind::Bool(true));
                sql.push(", ").bind(Bind::OptInt(Some(2)));
                sql
            },
            "SELECT ?, ?, ?, ?, ?, ?",
            "SELECT $1, $2, $3, $4, $5, $6",
            r#""a", 1, 0.5, None, true, Some(2)"#,
        );
    }

    #[test]
    fn a_statement_with_more_than_max_binds_values_is_refused() {
        let mut sql = Sql::new(Dialect::Postgres);
        for i in 0..MAX_BINDS {
            sql.int(i as i64);
        }
        assert!(check(&sql).is_ok());
        sql.int(0);
        assert!(matches!(
            check(&sql),
            Err(crate::store::StoreError::TooComplex(_))
        ));
    }
}

mod token {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn a_token_with_a_code_drives_the_search() {
        assert_sql(
            |d| count(d, &one("Observation", token("code", "1234-5"))),
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = ? AND t.code = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = $1 AND t.code = $2) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $3 AND NOT r.deleted"#,
            r#""code", "1234-5", "Observation""#,
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
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = ? AND t.code = ? AND t.system = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = $1 AND t.code = $2 AND t.system = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted"#,
            r#""code", "1234-5", "http://loinc.org", "Observation""#,
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
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = ? AND t.code = ? AND t.system IS NULL) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = $1 AND t.code = $2 AND t.system IS NULL) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $3 AND NOT r.deleted"#,
            r#""code", "1234-5", "Observation""#,
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

mod string {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn a_string_starts_with_its_normalized_value_escaped_for_like() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Patient",
                        Predicate::String {
                            param: "name".into(),
                            value: "Ève_5%".into(),
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

mod date {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

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

mod reference {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

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

mod number {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

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

mod quantity {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn a_quantity_with_system_and_code() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        quantity(
                            TokenSystem::Is("http://unitsofmeasure.org".into()),
                            Some("mg"),
                            None,
                        ),
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = ? AND q.system = ? AND q.code = ? AND (q.value >= ? AND q.value < ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = $2 AND q.system = $3 AND q.code = $4 AND (q.value >= $5 AND q.value < $6)))"#,
            r#""Observation", "value-quantity", "http://unitsofmeasure.org", "mg", 4.95, 5.05"#,
        );
    }

    #[test]
    fn a_quantity_with_a_code_alone_matches_code_or_unit() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one("Observation", quantity(TokenSystem::None, Some("mg"), None)),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = ? AND (q.code = ? OR q.unit = ?) AND (q.value >= ? AND q.value < ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = $2 AND (q.code = $3 OR q.unit = $4) AND (q.value >= $5 AND q.value < $6)))"#,
            r#""Observation", "value-quantity", "mg", "mg", 4.95, 5.05"#,
        );
    }

    #[test]
    fn a_quantity_without_a_unit() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one("Observation", quantity(TokenSystem::Any, None, None)),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = ? AND (q.value >= ? AND q.value < ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = $2 AND (q.value >= $3 AND q.value < $4)))"#,
            r#""Observation", "value-quantity", 4.95, 5.05"#,
        );
    }

    #[test]
    fn a_ucum_quantity_compares_canonical_values() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Observation",
                        quantity(
                            TokenSystem::Is("http://unitsofmeasure.org".into()),
                            Some("mg"),
                            Some(CanonicalQuantity {
                                unit: "g".into(),
                                value: 0.005,
                                lo: 0.0045,
                                hi: 0.0055,
                            }),
                        ),
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = ? AND q.canonical_unit = ? AND (q.canonical_value >= ? AND q.canonical_value < ?)))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_quantity q WHERE q.rid = r.rid AND q.param = $2 AND q.canonical_unit = $3 AND (q.canonical_value >= $4 AND q.canonical_value < $5)))"#,
            r#""Observation", "value-quantity", "g", 0.0045, 0.0055"#,
        );
    }
}

mod uri {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

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

mod composite {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

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

mod filter {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

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
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (r.id = ?) AND (r.compartment = ?)"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (r.id = $2) AND (r.compartment = $3)"#,
            r#""Observation", "o1", "p1""#,
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

mod chain {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn a_chain_drives_the_search_from_its_matches() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one("Observation", chain("subject", "Patient", "name", "eve")),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = ? AND dr0c.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.param = ? AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = $1 AND dr0c.rtype = $2 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = $3 AND s.normalized LIKE $4 ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.param = $5 AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = $6 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = $7 AND s.normalized LIKE $8 ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $9 AND NOT r.deleted"#,
            r#""subject", "Patient", "name", "eve%", "Patient#_id", "subject", "Patient#name", "eve%", "Observation""#,
        );
    }

    #[test]
    fn a_chain_over_two_target_types_drives_with_both() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![vec![
                            chain("subject", "Patient", "name", "eve"),
                            chain("subject", "Group", "name", "eve"),
                        ]],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = ? AND dr0c.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.param = ? AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr1cx.rid FROM idx_reference dr1cx JOIN resource dr1c ON dr1c.rtype = dr1cx.target_type AND dr1c.id = dr1cx.target_id WHERE NOT dr1c.deleted AND dr1cx.param = ? AND dr1c.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1c.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr1cl.rid FROM idx_reference dr1cl JOIN resource dr1co ON dr1co.rid = dr1cl.rid JOIN idx_token dr1ci ON dr1ci.rid = dr1cl.rid AND dr1ci.param = ? AND dr1cl.url = '#' || dr1ci.code WHERE dr1cl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1co.rid AND s.contained = dr1ci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = $1 AND dr0c.rtype = $2 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = $3 AND s.normalized LIKE $4 ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.param = $5 AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = $6 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = $7 AND s.normalized LIKE $8 ESCAPE '\')) UNION ALL SELECT dr1cx.rid FROM idx_reference dr1cx JOIN resource dr1c ON dr1c.rtype = dr1cx.target_type AND dr1c.id = dr1cx.target_id WHERE NOT dr1c.deleted AND dr1cx.param = $9 AND dr1c.rtype = $10 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1c.rid AND s.param = $11 AND s.normalized LIKE $12 ESCAPE '\')) UNION ALL SELECT dr1cl.rid FROM idx_reference dr1cl JOIN resource dr1co ON dr1co.rid = dr1cl.rid JOIN idx_token dr1ci ON dr1ci.rid = dr1cl.rid AND dr1ci.param = $13 AND dr1cl.url = '#' || dr1ci.code WHERE dr1cl.param = $14 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1co.rid AND s.contained = dr1ci.contained AND s.param = $15 AND s.normalized LIKE $16 ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $17 AND NOT r.deleted"#,
            r#""subject", "Patient", "name", "eve%", "Patient#_id", "subject", "Patient#name", "eve%", "subject", "Group", "name", "eve%", "Group#_id", "subject", "Group#name", "eve%", "Observation""#,
        );
    }

    #[test]
    fn a_chain_is_an_in_filter_when_a_reference_drives() {
        assert_sql(
            |d| {
                count(
                    d,
                    &query(
                        "Observation",
                        vec![
                            vec![reference("performer", "Practitioner", "pr1")],
                            vec![chain("subject", "Patient", "name", "eve")],
                        ],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ? AND x.target_type = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted AND (r.rid IN (SELECT rcx.rid FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE NOT rc.deleted AND rcx.param = ? AND rc.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT rcl.rid FROM idx_reference rcl JOIN resource rco ON rco.rid = rcl.rid JOIN idx_token rci ON rci.rid = rcl.rid AND rci.param = ? AND rcl.url = '#' || rci.code WHERE rcl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rco.rid AND s.contained = rci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))))"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2 AND x.target_type = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted AND (r.rid IN (SELECT rcx.rid FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE NOT rc.deleted AND rcx.param = $5 AND rc.rtype = $6 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = $7 AND s.normalized LIKE $8 ESCAPE '\')) UNION ALL SELECT rcl.rid FROM idx_reference rcl JOIN resource rco ON rco.rid = rcl.rid JOIN idx_token rci ON rci.rid = rcl.rid AND rci.param = $9 AND rcl.url = '#' || rci.code WHERE rcl.param = $10 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rco.rid AND s.contained = rci.contained AND s.param = $11 AND s.normalized LIKE $12 ESCAPE '\'))))"#,
            r#""performer", "pr1", "Practitioner", "Observation", "subject", "Patient", "name", "eve%", "Patient#_id", "subject", "Patient#name", "eve%""#,
        );
    }

    #[test]
    fn has_finds_a_referencing_resource_that_matches() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one(
                        "Patient",
                        Predicate::Has {
                            source_type: "Observation".into(),
                            param: "subject".into(),
                            target_type: "Patient".into(),
                            filters: vec![vec![token("code", "1234-5")]],
                        },
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference rhx JOIN resource rh ON rh.rid = rhx.rid WHERE rhx.target_id = r.id AND NOT rh.deleted AND rhx.target_type = ? AND rhx.param = ? AND rh.rtype = ? AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = rh.rid AND t.param = ? AND t.code = ?))))"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference rhx JOIN resource rh ON rh.rid = rhx.rid WHERE rhx.target_id = r.id AND NOT rh.deleted AND rhx.target_type = $2 AND rhx.param = $3 AND rh.rtype = $4 AND (EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = rh.rid AND t.param = $5 AND t.code = $6))))"#,
            r#""Patient", "Patient", "subject", "Observation", "code", "1234-5""#,
        );
    }
}

mod contained {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn contained_true_returns_containers() {
        assert_sql(
            |d| {
                search(
                    d,
                    &contained(
                        Contained::True,
                        ContainedType::Container,
                        vec![vec![token("code", "abc")]],
                        vec![],
                    ),
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = ? AND cu.code = ? AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = $1 AND cu.code = $2 AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.rid ASC, t.cid ASC LIMIT $3) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#""Medication#code", "abc", 11"#,
        );
    }

    #[test]
    fn contained_true_returns_contained_resources_sorted() {
        assert_sql(
            |d| {
                search(
                    d,
                    &contained(
                        Contained::True,
                        ContainedType::Contained,
                        vec![vec![token("code", "abc")]],
                        vec![sort(
                            SortColumn::Index {
                                table: IndexTable::String,
                                param: "name".into(),
                            },
                            false,
                        )],
                    ),
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.normalized) FROM idx_string s WHERE s.rid = r.rid AND s.contained = h.cid AND s.param = ?) AS k0, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = ? AND cu.code = ? AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.normalized) FROM idx_string s WHERE s.rid = r.rid AND s.contained = h.cid AND s.param = $1) AS k0, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = $2 AND cu.code = $3 AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#""Medication#name", "Medication#code", "abc", 11"#,
        );
    }

    #[test]
    fn contained_both_returns_resources_and_containers() {
        assert_sql(
            |d| {
                search(
                    d,
                    &contained(
                        Contained::Both,
                        ContainedType::Container,
                        vec![],
                        vec![sort(SortColumn::Id, true)],
                    ),
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, CASE WHEN h.cid = -1 THEN r.id ELSE r.id END AS k0, h.cid FROM (SELECT u.rid, MAX(u.cid) AS cid FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = ? AND NOT r.deleted UNION ALL SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = ? AND NOT r.deleted) u GROUP BY u.rid) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, CASE WHEN h.cid = -1 THEN r.id ELSE r.id END AS k0, h.cid FROM (SELECT u.rid, MAX(u.cid) AS cid FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = $1 AND NOT r.deleted UNION ALL SELECT DISTINCT cu.rid, CAST(-2 AS BIGINT) AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = $2 AND NOT r.deleted) u GROUP BY u.rid) h CROSS JOIN resource r WHERE r.rid = h.rid) t ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC LIMIT $3) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.rid ASC, t.cid ASC"#,
            r#""Medication", "Medication#_id", 11"#,
        );
    }

    #[test]
    fn contained_both_counts_resources_and_contained_resources() {
        assert_sql(
            |d| {
                count(
                    d,
                    &contained(
                        Contained::Both,
                        ContainedType::Contained,
                        vec![vec![Predicate::Id("m1".into())]],
                        vec![],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = ? AND NOT r.deleted AND (r.id = ?) UNION ALL SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = ? AND cu.code = ? AND NOT r.deleted) h"#,
            r#"SELECT COUNT(*) FROM (SELECT r.rid, CAST(-1 AS BIGINT) AS cid FROM resource r WHERE r.rtype = $1 AND NOT r.deleted AND (r.id = $2) UNION ALL SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = $3 AND cu.code = $4 AND NOT r.deleted) h"#,
            r#""Medication", "m1", "Medication#_id", "m1""#,
        );
    }

    #[test]
    fn a_chain_from_a_contained_resource_follows_its_own_references() {
        assert_sql(
            |d| {
                count(
                    d,
                    &contained(
                        Contained::True,
                        ContainedType::Contained,
                        vec![
                            vec![token("code", "abc")],
                            vec![chain("manufacturer", "Organization", "name", "acme")],
                            vec![Predicate::Has {
                                source_type: "MedicationRequest".into(),
                                param: "medication".into(),
                                target_type: "Medication".into(),
                                filters: vec![],
                            }],
                        ],
                        vec![],
                    ),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = ? AND cu.code = ? AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE rcx.rid = r.rid AND rcx.contained = cu.contained AND NOT rc.deleted AND rcx.param = ? AND rc.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')))) AND (1 = 0)) h"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = $1 AND cu.code = $2 AND NOT r.deleted AND (EXISTS (SELECT 1 FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE rcx.rid = r.rid AND rcx.contained = cu.contained AND NOT rc.deleted AND rcx.param = $3 AND rc.rtype = $4 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = $5 AND s.normalized LIKE $6 ESCAPE '\')))) AND (1 = 0)) h"#,
            r#""Medication#code", "abc", "Medication#manufacturer", "Organization", "name", "acme%""#,
        );
    }

    #[test]
    fn contained_after_a_cursor_breaks_ties_by_position() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        after: Some(Cursor {
                            keys: vec![KeyValue::Int(2)],
                            rid: 40,
                        }),
                        ..contained(Contained::True, ContainedType::Contained, vec![], vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = ? AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t WHERE (((t.rid > ? OR (t.rid = ? AND t.cid > ?)))) ORDER BY t.rid ASC, t.cid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.cid FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, h.cid FROM (SELECT DISTINCT cu.rid, cu.contained AS cid FROM idx_token cu JOIN resource r ON r.rid = cu.rid WHERE cu.param = $1 AND NOT r.deleted) h CROSS JOIN resource r WHERE r.rid = h.rid) t WHERE (((t.rid > $2 OR (t.rid = $3 AND t.cid > $4)))) ORDER BY t.rid ASC, t.cid ASC LIMIT $5) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC, t.cid ASC"#,
            r#""Medication#_id", 40, 40, 2, 11"#,
        );
    }
}

mod page {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn an_unsorted_page_is_in_row_key_order() {
        assert_sql(
            |d| search(d, &one("Observation", token("code", "1234-5"))),
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = ? AND t.code = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = $1 AND t.code = $2) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $3 AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#""code", "1234-5", "Observation", 11"#,
        );
    }

    #[test]
    fn sort_keys_take_the_extreme_indexed_value() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Date,
                                    param: "date".into(),
                                },
                                true,
                            ),
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Date,
                                    param: "date".into(),
                                },
                                false,
                            ),
                            sort(SortColumn::LastUpdated, false),
                            sort(SortColumn::Id, true),
                        ],
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1, t.k2, t.k3 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MAX(s.hi) FROM idx_date s WHERE s.rid = r.rid AND s.param = ?) AS k0, (SELECT MIN(s.lo) FROM idx_date s WHERE s.rid = r.rid AND s.param = ?) AS k1, r.last_updated AS k2, r.id AS k3 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1, t.k2, t.k3 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MAX(s.hi) FROM idx_date s WHERE s.rid = r.rid AND s.param = $1) AS k0, (SELECT MIN(s.lo) FROM idx_date s WHERE s.rid = r.rid AND s.param = $2) AS k1, r.last_updated AS k2, r.id AS k3 FROM resource r WHERE r.rtype = $3 AND NOT r.deleted) t ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS LAST, t.k1 ASC NULLS LAST, t.k2 ASC NULLS LAST, t.k3 DESC NULLS LAST, t.rid ASC"#,
            r#""date", "date", "Observation", 11"#,
        );
    }

    #[test]
    fn the_next_page_starts_after_the_cursor() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Token,
                                    param: "status".into(),
                                },
                                false,
                            ),
                            sort(
                                SortColumn::Index {
                                    table: IndexTable::Number,
                                    param: "probability".into(),
                                },
                                true,
                            ),
                        ],
                        after: Some(Cursor {
                            keys: vec![KeyValue::Text("final".into()), KeyValue::Float(0.5)],
                            rid: 7,
                        }),
                        ..query("RiskAssessment", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.code) FROM idx_token s WHERE s.rid = r.rid AND s.param = ?) AS k0, (SELECT MAX(s.value) FROM idx_number s WHERE s.rid = r.rid AND s.param = ?) AS k1 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE (((k0 > ? OR k0 IS NULL)) OR (k0 = ? AND (k1 < ? OR k1 IS NULL)) OR (k0 = ? AND k1 = ? AND (t.rid > ?))) ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0, t.k1 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.code) FROM idx_token s WHERE s.rid = r.rid AND s.param = $1) AS k0, (SELECT MAX(s.value) FROM idx_number s WHERE s.rid = r.rid AND s.param = $2) AS k1 FROM resource r WHERE r.rtype = $3 AND NOT r.deleted) t WHERE (((k0 > $4 OR k0 IS NULL)) OR (k0 = $5 AND (k1 < $6 OR k1 IS NULL)) OR (k0 = $7 AND k1 = $8 AND (t.rid > $9))) ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC LIMIT $10) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.k1 DESC NULLS LAST, t.rid ASC"#,
            r#""status", "probability", "RiskAssessment", "final", "final", 0.5, "final", 0.5, 7, 11"#,
        );
    }

    #[test]
    fn the_previous_page_ends_before_the_cursor_read_backwards() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![sort(SortColumn::LastUpdated, false)],
                        before: Some(Cursor {
                            keys: vec![KeyValue::Int(1000)],
                            rid: 7,
                        }),
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, r.last_updated AS k0 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE (((k0 < ?)) OR (k0 = ? AND (t.rid < ?))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, r.last_updated AS k0 FROM resource r WHERE r.rtype = $1 AND NOT r.deleted) t WHERE (((k0 < $2)) OR (k0 = $3 AND (t.rid < $4))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT $5) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#""Observation", 1000, 1000, 7, 11"#,
        );
    }

    #[test]
    fn after_a_missing_value_only_missing_values_follow() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![sort(
                            SortColumn::Index {
                                table: IndexTable::Reference,
                                param: "subject".into(),
                            },
                            false,
                        )],
                        after: Some(Cursor {
                            keys: vec![KeyValue::Null],
                            rid: 7,
                        }),
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.target_id) FROM idx_reference s WHERE s.rid = r.rid AND s.param = ?) AS k0 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE ((1 = 0) OR (k0 IS NULL AND (t.rid > ?))) ORDER BY t.k0 ASC NULLS LAST, t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.target_id) FROM idx_reference s WHERE s.rid = r.rid AND s.param = $1) AS k0 FROM resource r WHERE r.rtype = $2 AND NOT r.deleted) t WHERE ((1 = 0) OR (k0 IS NULL AND (t.rid > $3))) ORDER BY t.k0 ASC NULLS LAST, t.rid ASC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 ASC NULLS LAST, t.rid ASC"#,
            r#""subject", "Observation", 7, 11"#,
        );
    }

    #[test]
    fn before_a_missing_value_every_present_value_comes() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        sort: vec![sort(
                            SortColumn::Index {
                                table: IndexTable::Uri,
                                param: "url".into(),
                            },
                            false,
                        )],
                        before: Some(Cursor {
                            keys: vec![KeyValue::Null],
                            rid: 7,
                        }),
                        ..query("ValueSet", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.value) FROM idx_uri s WHERE s.rid = r.rid AND s.param = ?) AS k0 FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE ((k0 IS NOT NULL) OR (k0 IS NULL AND (t.rid < ?))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content, t.k0 FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, (SELECT MIN(s.value) FROM idx_uri s WHERE s.rid = r.rid AND s.param = $1) AS k0 FROM resource r WHERE r.rtype = $2 AND NOT r.deleted) t WHERE ((k0 IS NOT NULL) OR (k0 IS NULL AND (t.rid < $3))) ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC LIMIT $4) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.k0 DESC NULLS FIRST, t.rid DESC"#,
            r#""url", "ValueSet", 7, 11"#,
        );
    }

    #[test]
    fn an_unsorted_page_after_a_row_key() {
        assert_sql(
            |d| {
                search(
                    d,
                    &SearchQuery {
                        after: Some(Cursor {
                            keys: vec![],
                            rid: 7,
                        }),
                        ..query("Observation", vec![])
                    },
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t WHERE (((t.rid > ?))) ORDER BY t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = $1 AND NOT r.deleted) t WHERE (((t.rid > $2))) ORDER BY t.rid ASC LIMIT $3) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#""Observation", 7, 11"#,
        );
    }
}

mod search {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn a_search_without_filters_reads_every_current_resource_of_the_type() {
        assert_sql(
            |d| search(d, &query("Patient", vec![])),
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = ? AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version FROM resource r WHERE r.rtype = $1 AND NOT r.deleted) t ORDER BY t.rid ASC LIMIT $2) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.rid ASC"#,
            r#""Patient", 11"#,
        );
    }

    #[test]
    fn a_count_without_filters() {
        assert_sql(
            |d| count(d, &query("Patient", vec![])),
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM resource r WHERE r.rtype = $1 AND NOT r.deleted"#,
            r#""Patient""#,
        );
    }

    #[test]
    fn lastn_keeps_the_newest_per_code() {
        assert_sql(
            |d| {
                lastn(
                    d,
                    &one("Observation", reference("subject", "Patient", "p1")),
                    3,
                    50,
                )
            },
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, ROW_NUMBER() OVER (PARTITION BY (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') ORDER BY (SELECT MAX(d.hi) FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date') DESC NULLS LAST, r.rid DESC) AS n, (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') AS grp FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ? AND x.target_type = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted) t WHERE t.n <= ? ORDER BY t.grp, t.n LIMIT ?) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.grp, t.n"#,
            r#"SELECT t.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM (SELECT * FROM (SELECT r.rid, r.rtype, r.id, r.version, ROW_NUMBER() OVER (PARTITION BY (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') ORDER BY (SELECT MAX(d.hi) FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date') DESC NULLS LAST, r.rid DESC) AS n, (SELECT MIN(COALESCE(t.system, '') || '|' || t.code) FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code') AS grp FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2 AND x.target_type = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted) t WHERE t.n <= $5 ORDER BY t.grp, t.n LIMIT $6) t CROSS JOIN resource_version v WHERE v.rtype = t.rtype AND v.id = t.id AND v.version = t.version ORDER BY t.grp, t.n"#,
            r#""subject", "p1", "Patient", "Observation", 3, 51"#,
        );
    }
}

mod include {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn include_targets_of_named_parameters_and_type() {
        assert_sql(
            |d| {
                include_targets(
                    d,
                    &[1, 2],
                    Some(&["subject".to_owned(), "performer".to_owned()]),
                    Some("Patient"),
                )
            },
            r#"SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.target_id IS NOT NULL AND x.target_type IS NOT NULL AND x.rid IN (?, ?) AND x.param IN (?, ?) AND x.target_type = ?"#,
            r#"SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.target_id IS NOT NULL AND x.target_type IS NOT NULL AND x.rid IN ($1, $2) AND x.param IN ($3, $4) AND x.target_type = $5"#,
            r#"1, 2, "subject", "performer", "Patient""#,
        );
    }

    #[test]
    fn include_star_leaves_out_references_of_contained_resources() {
        assert_sql(
            |d| include_targets(d, &[3], None, None),
            r#"SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.target_id IS NOT NULL AND x.target_type IS NOT NULL AND x.rid IN (?) AND x.param NOT LIKE '%#%'"#,
            r#"SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.target_id IS NOT NULL AND x.target_type IS NOT NULL AND x.rid IN ($1) AND x.param NOT LIKE '%#%'"#,
            r#"3"#,
        );
    }
}

mod read {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn read_the_newest_version() {
        assert_sql(
            |d| read_version(d, "Patient", "p1", None),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = ? AND v.id = ? ORDER BY v.version DESC LIMIT 1"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = $1 AND v.id = $2 ORDER BY v.version DESC LIMIT 1"#,
            r#""Patient", "p1""#,
        );
    }

    #[test]
    fn vread_one_version() {
        assert_sql(
            |d| read_version(d, "Patient", "p1", Some(3)),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = ? AND v.id = ? AND v.version = ?"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE v.rtype = $1 AND v.id = $2 AND v.version = $3"#,
            r#""Patient", "p1", 3"#,
        );
    }

    #[test]
    fn current_versions_grouped_by_type() {
        assert_sql(
            |d| {
                current_versions(
                    d,
                    &[
                        ("Patient".into(), "p1".into()),
                        ("Observation".into(), "o1".into()),
                        ("Patient".into(), "p2".into()),
                    ],
                )
            },
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = ? AND r.id IN (?)) OR (r.rtype = ? AND r.id IN (?, ?))) ORDER BY r.rid"#,
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = $1 AND r.id IN ($2)) OR (r.rtype = $3 AND r.id IN ($4, $5))) ORDER BY r.rid"#,
            r#""Observation", "o1", "Patient", "p1", "p2""#,
        );
    }

    #[test]
    fn current_versions_of_nothing() {
        assert_sql(
            |d| current_versions(d, &[]),
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND (1 = 0) ORDER BY r.rid"#,
            r#"SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND (1 = 0) ORDER BY r.rid"#,
            r#""#,
        );
    }

    #[test]
    fn a_compartment_of_some_types() {
        assert_sql(
            |d| compartment(d, "p1", &["Patient", "Observation"]),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = ? AND r.rtype IN (?, ?) AND NOT r.deleted ORDER BY r.rid"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = $1 AND r.rtype IN ($2, $3) AND NOT r.deleted ORDER BY r.rid"#,
            r#""p1", "Patient", "Observation""#,
        );
    }

    #[test]
    fn a_compartment_of_no_types() {
        assert_sql(
            |d| compartment(d, "p1", &[]),
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = ? AND r.rtype IN (NULL) AND NOT r.deleted ORDER BY r.rid"#,
            r#"SELECT v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE r.compartment = $1 AND r.rtype IN (NULL) AND NOT r.deleted ORDER BY r.rid"#,
            r#""p1""#,
        );
    }

    #[test]
    fn every_compartment() {
        assert_sql(
            compartments,
            r#"SELECT DISTINCT compartment FROM resource WHERE compartment IS NOT NULL AND NOT deleted ORDER BY compartment"#,
            r#"SELECT DISTINCT compartment FROM resource WHERE compartment IS NOT NULL AND NOT deleted ORDER BY compartment"#,
            r#""#,
        );
    }
}

mod history {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn history_of_a_type_since() {
        assert_sql(
            |d| {
                history(
                    d,
                    &HistoryQuery {
                        rtype: Some("Patient".into()),
                        since: Some(1000),
                        count: 10,
                        ..Default::default()
                    },
                )
            },
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = ? AND v.last_updated >= ? ORDER BY v.seq DESC LIMIT ?"#,
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = $1 AND v.last_updated >= $2 ORDER BY v.seq DESC LIMIT $3"#,
            r#""Patient", 1000, 11"#,
        );
    }

    #[test]
    fn history_of_an_instance_at_before_a_cursor() {
        assert_sql(
            |d| {
                history(
                    d,
                    &HistoryQuery {
                        rtype: Some("Patient".into()),
                        id: Some("p1".into()),
                        at: Some((1000, 2000)),
                        before_seq: Some(9),
                        count: 5,
                        ..Default::default()
                    },
                )
            },
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = ? AND v.id = ? AND v.last_updated < ? AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rtype = v.rtype AND n.id = v.id AND n.version = v.version + 1 AND n.last_updated <= ?) AND v.seq < ? ORDER BY v.seq DESC LIMIT ?"#,
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.rtype = $1 AND v.id = $2 AND v.last_updated < $3 AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rtype = v.rtype AND n.id = v.id AND n.version = v.version + 1 AND n.last_updated <= $4) AND v.seq < $5 ORDER BY v.seq DESC LIMIT $6"#,
            r#""Patient", "p1", 2000, 1000, 9, 6"#,
        );
    }

    #[test]
    fn history_of_a_compartment_after_a_cursor() {
        assert_sql(
            |d| {
                history(
                    d,
                    &HistoryQuery {
                        compartment: Some("p1".into()),
                        after_seq: Some(9),
                        count: 5,
                        ..Default::default()
                    },
                )
            },
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.compartment = ? AND v.seq > ? ORDER BY v.seq ASC LIMIT ?"#,
            r#"SELECT v.seq, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource_version v WHERE 1 = 1 AND v.compartment = $1 AND v.seq > $2 ORDER BY v.seq ASC LIMIT $3"#,
            r#""p1", 9, 6"#,
        );
    }
}

mod write {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn insert_a_resource_row() {
        assert_sql(
            |d| {
                insert_resource(
                    d,
                    &new_version(Some("{}"), Some("p1"), &IndexEntries::default()),
                )
            },
            r#"INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES (?, ?, ?, ?, ?, ?) RETURNING rid"#,
            r#"INSERT INTO resource (rtype, id, version, last_updated, deleted, compartment) VALUES ($1, $2, $3, $4, $5, $6) RETURNING rid"#,
            r#""Patient", "p1", 3, 1000, false, Some("p1")"#,
        );
    }

    #[test]
    fn update_a_resource_row_at_its_previous_version() {
        assert_sql(
            |d| update_resource(d, &new_version(None, None, &IndexEntries::default()), 2),
            r#"UPDATE resource SET version = ?, last_updated = ?, deleted = ?, compartment = ? WHERE rtype = ? AND id = ? AND version = ? RETURNING rid"#,
            r#"UPDATE resource SET version = $1, last_updated = $2, deleted = $3, compartment = $4 WHERE rtype = $5 AND id = $6 AND version = $7 RETURNING rid"#,
            r#"3, 1000, true, None, "Patient", "p1", 2"#,
        );
    }

    #[test]
    fn insert_a_version() {
        assert_sql(
            |d| {
                insert_version(
                    d,
                    &new_version(Some("{}"), Some("p1"), &IndexEntries::default()),
                )
            },
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES (?, ?, ?, ?, ?, ?, ?)"#,
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
            r#""Patient", "p1", 3, 1000, "PUT", Some("p1"), Some("{}")"#,
        );
    }

    #[test]
    fn a_deletion_takes_the_compartment_of_the_version_it_deletes() {
        assert_sql(
            |d| insert_version(d, &new_version(None, None, &IndexEntries::default())),
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES (?, ?, ?, ?, ?, (SELECT d.compartment FROM resource_version d WHERE d.rtype = ? AND d.id = ? AND d.version = ?), ?)"#,
            r#"INSERT INTO resource_version (rtype, id, version, last_updated, method, compartment, content) VALUES ($1, $2, $3, $4, $5, (SELECT d.compartment FROM resource_version d WHERE d.rtype = $6 AND d.id = $7 AND d.version = $8), $9)"#,
            r#""Patient", "p1", 3, 1000, "DELETE", "Patient", "p1", 2, None"#,
        );
    }

    #[test]
    fn delete_index_rows() {
        assert_sql(
            |d| delete_index(d, "idx_token", 5),
            r#"DELETE FROM idx_token WHERE rid = ?"#,
            r#"DELETE FROM idx_token WHERE rid = $1"#,
            r#"5"#,
        );
    }

    #[test]
    fn index_rows_of_every_table_of_groups_and_of_contained_resources() {
        assert_sql(
            |d| joined(d, insert_index(d, 5, &entries())),
            r#"INSERT INTO idx_token (grp, rid, param, system, code) VALUES (?, ?, ?, ?, ?); INSERT INTO idx_string (grp, rid, param, normalized, exact) VALUES (?, ?, ?, ?, ?); INSERT INTO idx_date (grp, rid, param, lo, hi) VALUES (?, ?, ?, ?, ?); INSERT INTO idx_reference (grp, rid, param, target_type, target_id, url) VALUES (?, ?, ?, ?, ?, ?); INSERT INTO idx_uri (grp, rid, param, value) VALUES (?, ?, ?, ?); INSERT INTO idx_number (grp, rid, param, value, lo, hi) VALUES (?, ?, ?, ?, ?, ?); INSERT INTO idx_quantity (grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL); INSERT INTO idx_token (grp, rid, param, system, code) VALUES (?, ?, ?, ?, ?); INSERT INTO idx_token (contained, grp, rid, param, system, code) VALUES (?, ?, ?, ?, ?, ?)"#,
            r#"INSERT INTO idx_token (grp, rid, param, system, code) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_string (grp, rid, param, normalized, exact) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_date (grp, rid, param, lo, hi) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_reference (grp, rid, param, target_type, target_id, url) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_uri (grp, rid, param, value) VALUES ($1, $2, $3, $4); INSERT INTO idx_number (grp, rid, param, value, lo, hi) VALUES ($1, $2, $3, $4, $5, $6); INSERT INTO idx_quantity (grp, rid, param, system, code, unit, value, lo, hi, canonical_value, canonical_unit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), ($12, $13, $14, $15, $16, $17, $18, $19, $20, NULL, NULL); INSERT INTO idx_token (grp, rid, param, system, code) VALUES ($1, $2, $3, $4, $5); INSERT INTO idx_token (contained, grp, rid, param, system, code) VALUES ($1, $2, $3, $4, $5, $6)"#,
            r#"None, 5, "code", Some("http://loinc.org"), Some("1234-5"), None, 5, "name", "eve", "Ève", None, 5, "date", 1000, 2000, None, 5, "subject", Some("Patient"), Some("p1"), None, None, 5, "url", "http://example.org", None, 5, "probability", 0.25, 0.245, 0.255, None, 5, "value-quantity", Some("http://unitsofmeasure.org"), Some("mg"), Some("mg"), 5.0, 4.95, 5.05, 0.005, "g", None, 5, "value-quantity", None, None, Some("puffs"), 2.0, 1.5, 2.5, Some(0), 5, "code-value-quantity$0", None, Some("c0"), 0, None, 5, "Medication#_id", None, Some("c0")"#,
        );
    }

    #[test]
    fn index_rows_are_inserted_two_hundred_to_a_statement() {
        let entries = IndexEntries {
            tokens: tokens("code", 401),
            ..Default::default()
        };
        let statements = insert_index(Dialect::Sqlite, 5, &entries);
        let rows: Vec<usize> = statements
            .iter()
            .map(|s| s.text.matches("), (").count() + 1)
            .collect();
        assert_eq!(rows, [200, 200, 1]);
        assert_eq!(statements[2].binds.len(), 5);
    }
}

mod queue {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn queue_the_compartment_of_a_resource() {
        assert_sql(
            |d| queue_compartment(d, "Observation", "o1", 1000),
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) SELECT compartment, ?, 1, ? FROM resource WHERE rtype = ? AND id = ? AND compartment IS NOT NULL ON CONFLICT (patient) DO UPDATE SET generation = scoring_queue.generation + 1, next_attempt_at = COALESCE(scoring_queue.next_attempt_at, ?)"#,
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) SELECT compartment, $1, 1, $2 FROM resource WHERE rtype = $3 AND id = $4 AND compartment IS NOT NULL ON CONFLICT (patient) DO UPDATE SET generation = scoring_queue.generation + 1, next_attempt_at = COALESCE(scoring_queue.next_attempt_at, $5)"#,
            r#"1000, 1000, "Observation", "o1", 1000"#,
        );
    }

    #[test]
    fn queue_a_patient() {
        assert_sql(
            |d| queue_patient(d, "p1", 1000),
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) VALUES (?, ?, 1, ?) ON CONFLICT (patient) DO UPDATE SET generation = scoring_queue.generation + 1, next_attempt_at = COALESCE(scoring_queue.next_attempt_at, ?)"#,
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) VALUES ($1, $2, 1, $3) ON CONFLICT (patient) DO UPDATE SET generation = scoring_queue.generation + 1, next_attempt_at = COALESCE(scoring_queue.next_attempt_at, $4)"#,
            r#""p1", 1000, 1000, 1000"#,
        );
    }

    #[test]
    fn queued_patients_due() {
        assert_sql(
            |d| queued(d, 10, 1000),
            r#"SELECT patient, generation, attempts, next_attempt_at, last_error FROM scoring_queue WHERE next_attempt_at <= ? ORDER BY queued_at, patient LIMIT ?"#,
            r#"SELECT patient, generation, attempts, next_attempt_at, last_error FROM scoring_queue WHERE next_attempt_at <= $1 ORDER BY queued_at, patient LIMIT $2"#,
            r#"1000, 10"#,
        );
    }

    #[test]
    fn defer_with_a_retry() {
        assert_sql(
            |d| defer(d, "p1", 3, Some(2000), "boom"),
            r#"UPDATE scoring_queue SET attempts = attempts + 1, last_error = ?, next_attempt_at = CASE WHEN generation = ? THEN ? ELSE next_attempt_at END WHERE patient = ?"#,
            r#"UPDATE scoring_queue SET attempts = attempts + 1, last_error = $1, next_attempt_at = CASE WHEN generation = $2 THEN $3 ELSE next_attempt_at END WHERE patient = $4"#,
            r#""boom", 3, 2000, "p1""#,
        );
    }

    #[test]
    fn defer_parked() {
        assert_sql(
            |d| defer(d, "p1", 3, None, "boom"),
            r#"UPDATE scoring_queue SET attempts = attempts + 1, last_error = ?, next_attempt_at = CASE WHEN generation = ? THEN NULL ELSE next_attempt_at END WHERE patient = ?"#,
            r#"UPDATE scoring_queue SET attempts = attempts + 1, last_error = $1, next_attempt_at = CASE WHEN generation = $2 THEN NULL ELSE next_attempt_at END WHERE patient = $3"#,
            r#""boom", 3, "p1""#,
        );
    }

    #[test]
    fn scoring_failures_listed() {
        assert_sql(
            scoring_failures,
            r#"SELECT patient, generation, attempts, next_attempt_at, last_error FROM scoring_queue WHERE attempts > 0 ORDER BY patient"#,
            r#"SELECT patient, generation, attempts, next_attempt_at, last_error FROM scoring_queue WHERE attempts > 0 ORDER BY patient"#,
            r#""#,
        );
    }

    #[test]
    fn dequeue_a_generation() {
        assert_sql(
            |d| dequeue(d, "p1", 3),
            r#"DELETE FROM scoring_queue WHERE patient = ? AND generation = ?"#,
            r#"DELETE FROM scoring_queue WHERE patient = $1 AND generation = $2"#,
            r#""p1", 3"#,
        );
    }
}

mod explain {
    #![allow(unused_imports)]
    use super::super::golden::*;
    use super::super::*;
    use crate::search::index::IndexEntries;
    use crate::search::query::*;
    use crate::store::{HistoryQuery, Statement};

    #[test]
    fn explain_a_count() {
        assert_sql(
            |d| {
                explain(
                    d,
                    &Statement::Count(&one("Patient", token("gender", "female"))),
                )
            },
            r#"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = ? AND t.code = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"EXPLAIN SELECT COUNT(*) FROM (SELECT DISTINCT t.rid FROM idx_token t WHERE t.param = $1 AND t.code = $2) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $3 AND NOT r.deleted"#,
            r#""gender", "female", "Patient""#,
        );
    }

    #[test]
    fn explain_reading_current_versions() {
        assert_sql(
            |d| {
                explain(
                    d,
                    &Statement::ReadCurrent(&[("Patient".into(), "p1".into())]),
                )
            },
            r#"EXPLAIN QUERY PLAN SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = ? AND r.id IN (?))) ORDER BY r.rid"#,
            r#"EXPLAIN SELECT r.rid, v.rtype, v.id, v.version, v.last_updated, v.method, v.content FROM resource r JOIN resource_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version WHERE NOT r.deleted AND ((r.rtype = $1 AND r.id IN ($2))) ORDER BY r.rid"#,
            r#""Patient", "p1""#,
        );
    }
}
