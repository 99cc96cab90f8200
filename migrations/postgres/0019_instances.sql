-- Several `signaal serve` instances on one database (PostgreSQL; a SQLite file has one process,
-- for which these hold trivially). Decision 0036.
--
-- A patient being scored is claimed until `claimed_until` (ms since the Unix epoch, UTC): the
-- other servers skip it until then, so one server scores it, and another takes it over when
-- that one died before it was done. NULL: not claimed.
ALTER TABLE scoring_queue ADD COLUMN claimed_until BIGINT;

-- Work that one server does for all of them (the subscription worker): who holds it and until
-- when (ms). The holder renews it every second; another server takes it once it has lapsed.
CREATE TABLE worker_lease (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
