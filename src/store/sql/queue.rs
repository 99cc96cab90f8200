//! The scoring queue: the patients whose compartment changed, waiting for the scorer (not a
//! FHIR concept; written in the transaction of the version that queues them).

use super::{Dialect, Sql};

/// Queues for re-scoring the Patient whose compartment holds `rtype/id` as its row stands now
/// (nothing when it is in none). Queued again, its generation goes up, so the worker does not
/// drop a request that came in while it scored; it keeps its place while waiting, and takes a
/// new one when it came in while the patient was being scored (see `requeue`).
pub fn queue_compartment(dialect: Dialect, rtype: &str, id: &str, at: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    // The WHERE also tells SQLite that ON CONFLICT belongs to the INSERT, not to a join.
    sql.push(
        "INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) \
         SELECT compartment, ",
    )
    .int(at)
    .push(", 1, ")
    .int(at)
    .push(" FROM resource WHERE rtype = ")
    .text(rtype)
    .push(" AND id = ")
    .text(id)
    .push(" AND compartment IS NOT NULL ON CONFLICT (patient) DO UPDATE SET ");
    requeue(&mut sql, at);
    sql
}

/// The update of a patient queued again: a new generation, and due now if it was parked (new
/// data may score); one waiting for a retry keeps its backoff; one scheduled for later (a
/// measurement stamped in the future, see `reschedule`) is due at the earlier of the two.
///
/// Its place in the queue (`queued_at`, oldest first): a patient still waiting keeps its own,
/// since the scoring it waits for will read this write too. One that a server is scoring now
/// (claimed, the claim not lapsed) takes `at`: that scoring may have read its record before
/// this write, so this is a new request, in line behind those made before it. (Kept, a
/// patient written more often than it is scored would stay at the head of the queue for good,
/// and patients queued after it would wait behind it round after round.)
fn requeue(sql: &mut Sql, at: i64) {
    sql.push("queued_at = CASE WHEN scoring_queue.claimed_until > ")
        .int(at)
        .push(" THEN ")
        .int(at)
        .push(" ELSE scoring_queue.queued_at END, ");
    sql.push(
        "generation = scoring_queue.generation + 1, \
         next_attempt_at = CASE WHEN scoring_queue.attempts = 0 \
         AND scoring_queue.next_attempt_at > ",
    )
    .int(at)
    .push(" THEN ")
    .int(at)
    .push(" ELSE COALESCE(scoring_queue.next_attempt_at, ")
    .int(at)
    .push(") END");
}

/// Keeps a scored patient queued, due at `at`, unless it was queued again since `generation`
/// (see `Store::reschedule`).
pub fn reschedule(dialect: Dialect, patient: &str, generation: i64, at: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE scoring_queue SET next_attempt_at = ")
        .int(at)
        .push(", attempts = 0, last_error = NULL WHERE patient = ")
        .text(patient)
        .push(" AND generation = ")
        .int(generation);
    sql
}

/// Queues one patient for re-scoring (as `queue_compartment`).
pub fn queue_patient(dialect: Dialect, patient: &str, at: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) VALUES (",
    )
    .text(patient)
    .push(", ")
    .int(at)
    .push(", 1, ")
    .int(at)
    .push(") ON CONFLICT (patient) DO UPDATE SET ");
    requeue(&mut sql, at);
    sql
}

/// The columns of a `store::Queued`, in its field order.
pub const QUEUED_COLUMNS: &str = "patient, generation, attempts, next_attempt_at, last_error";

/// The oldest queued patients due at `now`. Columns: `QUEUED_COLUMNS`.
pub fn queued(dialect: Dialect, limit: usize, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(QUEUED_COLUMNS)
        .push(" FROM scoring_queue WHERE next_attempt_at <= ")
        .int(now)
        .push(" ORDER BY queued_at, patient LIMIT ")
        .int(limit as i64);
    sql
}

/// Claims the oldest queued patients due at `now` that no server has claimed (or whose claim
/// lapsed), until `until`: on PostgreSQL the rows another server is claiming at the same
/// moment are skipped (`FOR UPDATE SKIP LOCKED`), so two servers never claim one patient.
/// Columns: `QUEUED_COLUMNS`, in no particular order.
pub fn claim(dialect: Dialect, limit: usize, now: i64, until: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE scoring_queue SET claimed_until = ")
        .int(until)
        .push(" WHERE patient IN (SELECT patient FROM scoring_queue WHERE next_attempt_at <= ")
        .int(now)
        .push(" AND (claimed_until IS NULL OR claimed_until <= ")
        .int(now)
        .push(") ORDER BY queued_at, patient LIMIT ")
        .int(limit as i64);
    if dialect == Dialect::Postgres {
        sql.push(" FOR UPDATE SKIP LOCKED");
    }
    sql.push(") RETURNING ").push(QUEUED_COLUMNS);
    sql
}

/// Ends a server's claim on a patient (scored, rescheduled or deferred).
pub fn release(dialect: Dialect, patient: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE scoring_queue SET claimed_until = NULL WHERE patient = ")
        .text(patient);
    sql
}

/// Records a failed attempt (see `Store::defer`).
pub fn defer(
    dialect: Dialect,
    patient: &str,
    generation: i64,
    retry_at: Option<i64>,
    error: &str,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE scoring_queue SET attempts = attempts + 1, last_error = ")
        .text(error)
        .push(", next_attempt_at = CASE WHEN generation = ")
        .int(generation)
        .push(" THEN ");
    match retry_at {
        Some(at) => sql.int(at),
        None => sql.push("NULL"),
    };
    sql.push(" ELSE next_attempt_at END WHERE patient = ")
        .text(patient);
    sql
}

/// The queue at `now` for `/metrics`: patients due, waiting (a retry's backoff or a time
/// stamped later) and parked, and when the longest-waiting due patient was queued (NULL when
/// none is due).
pub fn queue_stats(dialect: Dialect, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT COUNT(CASE WHEN next_attempt_at <= ")
        .int(now)
        .push(" THEN 1 END), COUNT(CASE WHEN next_attempt_at > ")
        .int(now)
        .push(" THEN 1 END), COUNT(CASE WHEN next_attempt_at IS NULL THEN 1 END), MIN(CASE WHEN next_attempt_at <= ")
        .int(now)
        .push(" THEN queued_at END) FROM scoring_queue");
    sql
}

/// The queued patients whose last attempt failed. Columns: `QUEUED_COLUMNS`.
pub fn scoring_failures(dialect: Dialect) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(QUEUED_COLUMNS)
        .push(" FROM scoring_queue WHERE attempts > 0 ORDER BY patient");
    sql
}

/// Removes a patient from the queue if it was not queued again since `generation` was read.
pub fn dequeue(dialect: Dialect, patient: &str, generation: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM scoring_queue WHERE patient = ")
        .text(patient)
        .push(" AND generation = ")
        .int(generation);
    sql
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;

    #[test]
    fn queue_the_compartment_of_a_resource() {
        assert_sql(
            |d| queue_compartment(d, "Observation", "o1", 1000),
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) SELECT compartment, ?, 1, ? FROM resource WHERE rtype = ? AND id = ? AND compartment IS NOT NULL ON CONFLICT (patient) DO UPDATE SET queued_at = CASE WHEN scoring_queue.claimed_until > ? THEN ? ELSE scoring_queue.queued_at END, generation = scoring_queue.generation + 1, next_attempt_at = CASE WHEN scoring_queue.attempts = 0 AND scoring_queue.next_attempt_at > ? THEN ? ELSE COALESCE(scoring_queue.next_attempt_at, ?) END"#,
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) SELECT compartment, $1, 1, $2 FROM resource WHERE rtype = $3 AND id = $4 AND compartment IS NOT NULL ON CONFLICT (patient) DO UPDATE SET queued_at = CASE WHEN scoring_queue.claimed_until > $5 THEN $6 ELSE scoring_queue.queued_at END, generation = scoring_queue.generation + 1, next_attempt_at = CASE WHEN scoring_queue.attempts = 0 AND scoring_queue.next_attempt_at > $7 THEN $8 ELSE COALESCE(scoring_queue.next_attempt_at, $9) END"#,
            r#"1000, 1000, "Observation", "o1", 1000, 1000, 1000, 1000, 1000"#,
        );
    }

    #[test]
    fn claim_the_due_patients_nobody_holds() {
        assert_sql(
            |d| claim(d, 32, 1000, 61000),
            r#"UPDATE scoring_queue SET claimed_until = ? WHERE patient IN (SELECT patient FROM scoring_queue WHERE next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY queued_at, patient LIMIT ?) RETURNING patient, generation, attempts, next_attempt_at, last_error"#,
            r#"UPDATE scoring_queue SET claimed_until = $1 WHERE patient IN (SELECT patient FROM scoring_queue WHERE next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $3) ORDER BY queued_at, patient LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING patient, generation, attempts, next_attempt_at, last_error"#,
            r#"61000, 1000, 1000, 32"#,
        );
    }

    #[test]
    fn queue_a_patient() {
        assert_sql(
            |d| queue_patient(d, "p1", 1000),
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) VALUES (?, ?, 1, ?) ON CONFLICT (patient) DO UPDATE SET queued_at = CASE WHEN scoring_queue.claimed_until > ? THEN ? ELSE scoring_queue.queued_at END, generation = scoring_queue.generation + 1, next_attempt_at = CASE WHEN scoring_queue.attempts = 0 AND scoring_queue.next_attempt_at > ? THEN ? ELSE COALESCE(scoring_queue.next_attempt_at, ?) END"#,
            r#"INSERT INTO scoring_queue (patient, queued_at, generation, next_attempt_at) VALUES ($1, $2, 1, $3) ON CONFLICT (patient) DO UPDATE SET queued_at = CASE WHEN scoring_queue.claimed_until > $4 THEN $5 ELSE scoring_queue.queued_at END, generation = scoring_queue.generation + 1, next_attempt_at = CASE WHEN scoring_queue.attempts = 0 AND scoring_queue.next_attempt_at > $6 THEN $7 ELSE COALESCE(scoring_queue.next_attempt_at, $8) END"#,
            r#""p1", 1000, 1000, 1000, 1000, 1000, 1000, 1000"#,
        );
    }

    #[test]
    fn reschedule_a_scored_patient() {
        assert_sql(
            |d| reschedule(d, "p1", 3, 2000),
            r#"UPDATE scoring_queue SET next_attempt_at = ?, attempts = 0, last_error = NULL WHERE patient = ? AND generation = ?"#,
            r#"UPDATE scoring_queue SET next_attempt_at = $1, attempts = 0, last_error = NULL WHERE patient = $2 AND generation = $3"#,
            r#"2000, "p1", 3"#,
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
