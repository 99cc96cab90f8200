//! `_include` (search page, "Including other resources in result",
//! https://hl7.org/fhir/R4/search.html#include): the resources a page's resources reference.
//! `_revinclude` is a search of its own (a reference filter on the page's resources).

use super::{Dialect, Sql};

/// The resources referenced from rows `rids` through reference parameters `params` (all when
/// `None`), optionally only of one type: the targets of `_include`.
pub fn include_targets(
    dialect: Dialect,
    rids: &[i64],
    params: Option<&[String]>,
    target_type: Option<&str>,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.target_id IS NOT NULL AND x.target_type IS NOT NULL AND x.rid IN (");
    sql.ints(rids);
    sql.push(")");
    if let Some(params) = params {
        sql.push(" AND x.param IN (");
        for (i, param) in params.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.text(param);
        }
        sql.push(")");
    }
    if let Some(t) = target_type {
        sql.push(" AND x.target_type = ").text(t);
    }
    // Not the references of contained resources (`Medication#manufacturer`): `*` means the
    // resource's own reference parameters. A test on `param` keeps the lookup on the index.
    if params.is_none() {
        sql.push(" AND x.param NOT LIKE '%#%'");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;

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
