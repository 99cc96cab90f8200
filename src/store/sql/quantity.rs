//! Quantity parameters (search page, "Quantity", https://hl7.org/fhir/R4/search.html#quantity):
//! `[prefix][number]|[system]|[code]`, a UCUM unit in canonical units so that every commensurable
//! stored unit matches.

use super::number::push_compare;
use super::Sql;
use crate::search::query::{Predicate, TokenSystem};

/// `param=[prefix]value|[system]|[code]` (the predicate `Quantity`) on the quantity row `al`:
/// in canonical units when the search unit is UCUM; otherwise the unit given by its code and
/// system, or without a system by its code or its human form.
pub(super) fn push_quantity(sql: &mut Sql, al: &str, quantity: &Predicate) {
    let Predicate::Quantity {
        param,
        prefix,
        value,
        lo,
        hi,
        system,
        code,
        canonical,
    } = quantity
    else {
        sql.push("1 = 0");
        return;
    };
    sql.push(&format!("{al}.param = ")).text(param);
    if let Some(c) = canonical {
        sql.push(&format!(" AND {al}.canonical_unit = "))
            .text(&c.unit)
            .push(" AND ");
        push_compare(
            sql,
            &format!("{al}.canonical_value"),
            *prefix,
            c.value,
            c.lo,
            c.hi,
        );
        return;
    }
    if let Some(code) = code {
        // The unit may be given by its code or, without a system, by its human form.
        match system {
            TokenSystem::Is(system) => sql
                .push(&format!(" AND {al}.system = "))
                .text(system)
                .push(&format!(" AND {al}.code = "))
                .text(code),
            TokenSystem::None | TokenSystem::Any => sql
                .push(&format!(" AND ({al}.code = "))
                .text(code)
                .push(&format!(" OR {al}.unit = "))
                .text(code)
                .push(")"),
        };
    }
    sql.push(" AND ");
    push_compare(sql, &format!("{al}.value"), *prefix, *value, *lo, *hi);
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

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
