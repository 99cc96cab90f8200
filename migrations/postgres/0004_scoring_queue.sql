-- Patients waiting to be re-scored. A write that changes a patient's scoring inputs upserts the
-- patient here in the same transaction (nothing is lost on a crash); the scoring worker reads a
-- row, scores the patient and deletes the row only if `generation` is unchanged, so a write that
-- arrives while the patient is being scored queues it again.
CREATE TABLE scoring_queue (
    patient    TEXT    PRIMARY KEY,
    queued_at  BIGINT  NOT NULL,               -- ms since the Unix epoch, UTC (oldest first)
    generation BIGINT  NOT NULL
);
CREATE INDEX scoring_queue_queued_at ON scoring_queue (queued_at);
