-- Resources, every version of them, and the typed search index of the current versions.
-- Timestamps are milliseconds since the Unix epoch (UTC).

-- The current state of each resource: one row per (type, id), also after deletion.
CREATE TABLE resource (
    rid          BIGSERIAL PRIMARY KEY,         -- row key: index tables and search paging use it
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL,
    deleted      BOOLEAN NOT NULL,
    compartment  TEXT,                         -- Patient compartment id: the sharding key
    UNIQUE (rtype, id)
);
CREATE INDEX resource_type_updated ON resource (rtype, last_updated);
CREATE INDEX resource_compartment ON resource (compartment);

-- Every version ever written (history). `seq` is the global write order.
CREATE TABLE resource_version (
    seq          BIGSERIAL PRIMARY KEY,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL,
    method       TEXT    NOT NULL,             -- POST, PUT or DELETE
    compartment  TEXT,
    content      TEXT,                         -- NULL for a deletion
    UNIQUE (rtype, id, version)
);
CREATE INDEX resource_version_type_seq ON resource_version (rtype, seq);
CREATE INDEX resource_version_updated ON resource_version (last_updated);

-- Search index of the current version of each resource, keyed by resource.rid.
CREATE TABLE idx_token (
    rid    BIGINT  NOT NULL REFERENCES resource (rid),
    param  TEXT    NOT NULL,
    system TEXT,
    code   TEXT
);
CREATE INDEX idx_token_lookup ON idx_token (param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_string (
    rid        BIGINT  NOT NULL REFERENCES resource (rid),
    param      TEXT    NOT NULL,
    normalized TEXT    NOT NULL,
    exact      TEXT    NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (param, normalized);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_date (
    rid   BIGINT  NOT NULL REFERENCES resource (rid),
    param TEXT    NOT NULL,
    lo    BIGINT  NOT NULL,
    hi    BIGINT  NOT NULL
);
CREATE INDEX idx_date_lookup ON idx_date (param, lo, hi);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_reference (
    rid         BIGINT  NOT NULL REFERENCES resource (rid),
    param       TEXT    NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    url         TEXT
);
CREATE INDEX idx_reference_lookup ON idx_reference (param, target_id, target_type);
CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_uri (
    rid   BIGINT  NOT NULL REFERENCES resource (rid),
    param TEXT    NOT NULL,
    value TEXT    NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid);

CREATE TABLE idx_number (
    rid   BIGINT  NOT NULL REFERENCES resource (rid),
    param TEXT    NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    lo    DOUBLE PRECISION NOT NULL,
    hi    DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (param, value);
CREATE INDEX idx_number_rid ON idx_number (rid);

CREATE TABLE idx_quantity (
    rid    BIGINT  NOT NULL REFERENCES resource (rid),
    param  TEXT    NOT NULL,
    system TEXT,
    code   TEXT,
    unit   TEXT,
    value  DOUBLE PRECISION NOT NULL,
    lo     DOUBLE PRECISION NOT NULL,
    hi     DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (param, code, value);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);
