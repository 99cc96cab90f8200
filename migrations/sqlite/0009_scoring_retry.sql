-- Retrying a patient whose scoring fails, without holding up the others: `attempts` counts the
-- failed attempts since the patient was queued, `next_attempt_at` (ms since the Unix epoch, UTC)
-- is when the worker may try again (backoff), NULL once it is parked after too many failures
-- (`signaal score --failed` lists them; a new write of the patient's inputs makes it due again),
-- and `last_error` says why the last attempt failed.
ALTER TABLE scoring_queue ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scoring_queue ADD COLUMN next_attempt_at INTEGER DEFAULT 0;
ALTER TABLE scoring_queue ADD COLUMN last_error TEXT;
