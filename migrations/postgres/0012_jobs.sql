-- Jobs of the asynchronous request pattern ($reindex, Bulk Data $export, $import), so that a
-- restart finds every job it did not finish and says so at its status URL, never losing one
-- silently; a finished job keeps its answer (an export's manifest) until it expires or its
-- client deletes it. `kind` is the table of jobs it belongs to (`export`, `reindex`, …),
-- `owner` the client that started it (only it may poll), `state` `running` or `finished`,
-- `done`/`total` its progress in resources, `status`/`answer` the HTTP status and JSON body
-- its status URL answers with once finished; times in ms since the Unix epoch, UTC.
CREATE TABLE job (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    status BIGINT,
    answer TEXT,
    started BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX job_kind ON job (kind, started);
