-- SMART Backend Services: registered clients, used assertion ids (jti) and the server's signing key.

-- A client allowed to ask for access tokens. Its JWKS is stored inline (`jwks`, read from a
-- file at registration) or fetched from `jwks_url`.
CREATE TABLE auth_client (
    id       TEXT PRIMARY KEY,
    name     TEXT    NOT NULL,
    jwks     TEXT,
    jwks_url TEXT,
    scope    TEXT    NOT NULL,                 -- the scopes it may be granted, space-separated
    patient  TEXT,                             -- Patient id its tokens are bound to, if any
    created  BIGINT  NOT NULL                  -- ms since the Unix epoch
);

-- Client assertion ids already accepted, kept until the assertion expires (replay protection).
CREATE TABLE auth_jti (
    client_id TEXT    NOT NULL,
    jti       TEXT    NOT NULL,
    expires   BIGINT  NOT NULL,                -- ms since the Unix epoch
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX auth_jti_expires ON auth_jti (expires);

-- The secret the server signs its access tokens with (HS256), made on first start.
CREATE TABLE auth_key (
    name   TEXT PRIMARY KEY,
    secret TEXT NOT NULL
);

-- History restricted to one patient's compartment (patient-bound access tokens).
CREATE INDEX resource_version_compartment ON resource_version (compartment, seq);
