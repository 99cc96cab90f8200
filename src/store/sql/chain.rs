//! Chained parameters and reverse chaining (search page, "Chained parameters" and "Reverse
//! Chaining" `_has`, https://hl7.org/fhir/R4/search.html#chaining): a reference to a resource
//! that meets filters of its own, or a resource referenced by one that does.

use super::filter::{push_filters, Row};
use super::Sql;
use crate::search::index::{contained_param, CONTAINED_ID};
use crate::search::query::Predicate;

/// ` FROM … WHERE …` of the `param` references (`{c}x`) to a current `target_type` (`{c}`) that
/// meets `filters`; with `from`, only the references of that row (bound to its index row in a
/// search of contained resources).
pub(super) fn push_references_to_matches(
    sql: &mut Sql,
    param: &str,
    target_type: &str,
    filters: &[Vec<Predicate>],
    c: &str,
    from: Option<Row<'_>>,
) {
    let x = format!("{c}x");
    sql.push(&format!(
        " FROM idx_reference {x} JOIN resource {c} ON {c}.rtype = {x}.target_type \
         AND {c}.id = {x}.target_id WHERE "
    ));
    if let Some(a) = from {
        sql.push(&format!("{} AND ", a.same(&x)));
    }
    sql.push(&format!("NOT {c}.deleted AND {x}.param = "))
        .text(param)
        .push(&format!(" AND {c}.rtype = "))
        .text(target_type);
    push_filters(sql, filters, Row::of(c));
}

/// The rids of the resources a chain from a resource matches (`param` referencing a
/// `target_type` that meets `filters`; `c` names the aliases): one uncorrelated
/// `… UNION ALL …`, not two ORed EXISTS, so that the databases can start from the chain's
/// matches (at a million resources on PostgreSQL, ORed EXISTS made
/// `Encounter?subject:Patient.name=x` probe every Encounter: 3.5 ms became 2 s).
/// The chain is evaluated inside contained resources too (search page, "Contained
/// Resources"): the second branch finds the resources whose local reference `#id` names a
/// contained resource of the target type (its `Type#_id` entry) that matches.
pub(super) fn push_chain_rids(
    sql: &mut Sql,
    param: &str,
    target_type: &str,
    filters: &[Vec<Predicate>],
    c: &str,
) {
    let (x, l, i, o) = (
        format!("{c}x"),
        format!("{c}l"),
        format!("{c}i"),
        format!("{c}o"),
    );
    sql.push(&format!("SELECT {x}.rid"));
    push_references_to_matches(sql, param, target_type, filters, c, None);
    sql.push(&format!(
        " UNION ALL SELECT {l}.rid FROM idx_reference {l} JOIN resource {o} ON {o}.rid = {l}.rid \
         JOIN idx_token {i} ON {i}.rid = {l}.rid AND {i}.rtype IS NULL AND {i}.param = "
    ))
    .text(&contained_param(target_type, CONTAINED_ID))
    .push(&format!(
        " AND {l}.url = '#' || {i}.code WHERE {l}.param = "
    ))
    .text(param);
    let contained: Vec<Vec<Predicate>> = filters
        .iter()
        .map(|any_of| any_of.iter().map(|p| p.in_contained(target_type)).collect())
        .collect();
    // The container's row: the compartment and `_lastUpdated` are the container's.
    push_filters(
        sql,
        &contained,
        Row {
            alias: &o,
            unit: Some(&i),
        },
    );
}

/// A chain that drives the search instead of the token of
/// [`driving_filter`](super::search::driving_filter) (a reference to one resource still comes
/// first): `CarePlan?patient.identifier=S|V&status=active` starts from the
/// patient's CarePlans, not from every active CarePlan. A chain names one resource more
/// often than a token does (`code=85354-9` is half of all Observations). The filter may be
/// several chains (`patient.identifier` goes to a Patient or a Group): their rids together.
#[allow(clippy::type_complexity)]
pub(super) fn driving_chain(
    filters: &[Vec<Predicate>],
    driver: Option<usize>,
) -> Option<(usize, Vec<(&str, &str, &[Vec<Predicate>])>)> {
    if driver.is_some_and(|i| matches!(filters[i][0], Predicate::Reference { .. })) {
        return None;
    }
    filters.iter().enumerate().find_map(|(i, any_of)| {
        let chains: Option<Vec<_>> = any_of
            .iter()
            .map(|p| match p {
                Predicate::Chain {
                    param,
                    target_type,
                    filters,
                } => Some((param.as_str(), target_type.as_str(), filters.as_slice())),
                _ => None,
            })
            .collect();
        chains.filter(|c| !c.is_empty()).map(|c| (i, c))
    })
}

/// A chain (`param.name=value`) from the resource row `a`: its rid among those of
/// [`push_chain_rids`]. From a contained resource (a `_contained` search) the chain follows that
/// resource's own references, bound to its index row; its local references are left unfollowed.
pub(super) fn push_chain(
    sql: &mut Sql,
    param: &str,
    target_type: &str,
    filters: &[Vec<Predicate>],
    a: Row<'_>,
) {
    let c = format!("{a}c");
    if a.unit.is_some() {
        sql.push("EXISTS (SELECT 1");
        push_references_to_matches(sql, param, target_type, filters, &c, Some(a));
        sql.push(")");
        return;
    }
    sql.push(&format!("{a}.rid IN ("));
    push_chain_rids(sql, param, target_type, filters, &c);
    sql.push(")");
}

/// `_has:source_type:param:…`: a current `source_type` resource that meets `filters` references
/// the resource row `a` (of `target_type`) through `param`. Nothing outside a container
/// references what it contains: from a contained resource, nothing matches.
pub(super) fn push_has(
    sql: &mut Sql,
    source_type: &str,
    param: &str,
    target_type: &str,
    filters: &[Vec<Predicate>],
    a: Row<'_>,
) {
    if a.unit.is_some() {
        sql.push("1 = 0");
        return;
    }
    let h = format!("{a}h");
    sql.push(&format!(
        "EXISTS (SELECT 1 FROM idx_reference {h}x JOIN resource {h} ON {h}.rid = {h}x.rid \
         WHERE {h}x.target_id = {a}.id AND NOT {h}.deleted AND {h}x.target_type = "
    ))
    .text(target_type)
    .push(&format!(" AND {h}x.param = "))
    .text(param)
    .push(&format!(" AND {h}.rtype = "))
    .text(source_type);
    push_filters(sql, filters, Row::of(&h));
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;
    use crate::search::query::*;

    #[test]
    fn a_chain_drives_the_search_from_its_matches() {
        assert_sql(
            |d| {
                count(
                    d,
                    &one("Observation", chain("subject", "Patient", "name", "eve")),
                )
            },
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = ? AND dr0c.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.rtype IS NULL AND dr0ci.param = ? AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = $1 AND dr0c.rtype = $2 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = $3 AND s.normalized LIKE $4 ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.rtype IS NULL AND dr0ci.param = $5 AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = $6 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = $7 AND s.normalized LIKE $8 ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $9 AND NOT r.deleted"#,
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
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = ? AND dr0c.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.rtype IS NULL AND dr0ci.param = ? AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr1cx.rid FROM idx_reference dr1cx JOIN resource dr1c ON dr1c.rtype = dr1cx.target_type AND dr1c.id = dr1cx.target_id WHERE NOT dr1c.deleted AND dr1cx.param = ? AND dr1c.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1c.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT dr1cl.rid FROM idx_reference dr1cl JOIN resource dr1co ON dr1co.rid = dr1cl.rid JOIN idx_token dr1ci ON dr1ci.rid = dr1cl.rid AND dr1ci.rtype IS NULL AND dr1ci.param = ? AND dr1cl.url = '#' || dr1ci.code WHERE dr1cl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1co.rid AND s.contained = dr1ci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT cr.rid FROM (SELECT dr0cx.rid FROM idx_reference dr0cx JOIN resource dr0c ON dr0c.rtype = dr0cx.target_type AND dr0c.id = dr0cx.target_id WHERE NOT dr0c.deleted AND dr0cx.param = $1 AND dr0c.rtype = $2 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0c.rid AND s.param = $3 AND s.normalized LIKE $4 ESCAPE '\')) UNION ALL SELECT dr0cl.rid FROM idx_reference dr0cl JOIN resource dr0co ON dr0co.rid = dr0cl.rid JOIN idx_token dr0ci ON dr0ci.rid = dr0cl.rid AND dr0ci.rtype IS NULL AND dr0ci.param = $5 AND dr0cl.url = '#' || dr0ci.code WHERE dr0cl.param = $6 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr0co.rid AND s.contained = dr0ci.contained AND s.param = $7 AND s.normalized LIKE $8 ESCAPE '\')) UNION ALL SELECT dr1cx.rid FROM idx_reference dr1cx JOIN resource dr1c ON dr1c.rtype = dr1cx.target_type AND dr1c.id = dr1cx.target_id WHERE NOT dr1c.deleted AND dr1cx.param = $9 AND dr1c.rtype = $10 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1c.rid AND s.param = $11 AND s.normalized LIKE $12 ESCAPE '\')) UNION ALL SELECT dr1cl.rid FROM idx_reference dr1cl JOIN resource dr1co ON dr1co.rid = dr1cl.rid JOIN idx_token dr1ci ON dr1ci.rid = dr1cl.rid AND dr1ci.rtype IS NULL AND dr1ci.param = $13 AND dr1cl.url = '#' || dr1ci.code WHERE dr1cl.param = $14 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = dr1co.rid AND s.contained = dr1ci.contained AND s.param = $15 AND s.normalized LIKE $16 ESCAPE '\'))) cr) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $17 AND NOT r.deleted"#,
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
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = ? AND x.target_id = ? AND x.target_type = ?) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = ? AND NOT r.deleted AND (r.rid IN (SELECT rcx.rid FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE NOT rc.deleted AND rcx.param = ? AND rc.rtype = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = ? AND s.normalized LIKE ? ESCAPE '\')) UNION ALL SELECT rcl.rid FROM idx_reference rcl JOIN resource rco ON rco.rid = rcl.rid JOIN idx_token rci ON rci.rid = rcl.rid AND rci.rtype IS NULL AND rci.param = ? AND rcl.url = '#' || rci.code WHERE rcl.param = ? AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rco.rid AND s.contained = rci.contained AND s.param = ? AND s.normalized LIKE ? ESCAPE '\'))))"#,
            r#"SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_reference x WHERE x.param = $1 AND x.target_id = $2 AND x.target_type = $3) dr CROSS JOIN resource r WHERE r.rid = dr.rid AND r.rtype = $4 AND NOT r.deleted AND (r.rid IN (SELECT rcx.rid FROM idx_reference rcx JOIN resource rc ON rc.rtype = rcx.target_type AND rc.id = rcx.target_id WHERE NOT rc.deleted AND rcx.param = $5 AND rc.rtype = $6 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rc.rid AND s.param = $7 AND s.normalized LIKE $8 ESCAPE '\')) UNION ALL SELECT rcl.rid FROM idx_reference rcl JOIN resource rco ON rco.rid = rcl.rid JOIN idx_token rci ON rci.rid = rcl.rid AND rci.rtype IS NULL AND rci.param = $9 AND rcl.url = '#' || rci.code WHERE rcl.param = $10 AND (EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = rco.rid AND s.contained = rci.contained AND s.param = $11 AND s.normalized LIKE $12 ESCAPE '\'))))"#,
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
