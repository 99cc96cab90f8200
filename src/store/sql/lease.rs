//! Worker leases: work one server does for all the servers on a database (not a FHIR concept;
//! table `worker_lease`, decision 0036).

use super::{Dialect, Sql};

/// Takes or renews the lease `name` for `holder` until `until` (ms): it is taken when nobody
/// holds it, when `holder` does, or when its holder let it lapse (`expires_at <= now`).
/// Returns a row (the holder) only when `holder` has it now; concurrent takers queue on the
/// row, so one of them gets it.
pub fn take_lease(dialect: Dialect, name: &str, holder: &str, now: i64, until: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO worker_lease (name, holder, expires_at) VALUES (")
        .text(name)
        .push(", ")
        .text(holder)
        .push(", ")
        .int(until)
        .push(
            ") ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE worker_lease.holder = excluded.holder OR worker_lease.expires_at <= ",
        )
        .int(now)
        .push(" RETURNING holder");
    sql
}

/// Gives the lease `name` up, if `holder` has it (a server shutting down: another takes over
/// at once).
pub fn release_lease(dialect: Dialect, name: &str, holder: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM worker_lease WHERE name = ")
        .text(name)
        .push(" AND holder = ")
        .text(holder);
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::*;

    #[test]
    fn take_a_lease_nobody_holds_or_that_lapsed() {
        assert_sql(
            |d| take_lease(d, "subscriptions", "s1", 1000, 6000),
            r#"INSERT INTO worker_lease (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE worker_lease.holder = excluded.holder OR worker_lease.expires_at <= ? RETURNING holder"#,
            r#"INSERT INTO worker_lease (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE worker_lease.holder = excluded.holder OR worker_lease.expires_at <= $4 RETURNING holder"#,
            r#""subscriptions", "s1", 6000, 1000"#,
        );
    }
}
