-- SMART App Launch for people (issue 20, decision 0035): user accounts, the apps they launch and
-- the grants they give those apps (authorization codes and refresh tokens).

-- A person who logs in: a practitioner (a coach) or a patient, linked to their FHIR resource.
CREATE TABLE auth_user (
    id        TEXT PRIMARY KEY,               -- the log-in name
    fhir_user TEXT    NOT NULL,               -- Practitioner/ID or Patient/ID (the fhirUser claim)
    password  TEXT    NOT NULL,               -- Argon2id hash, PHC string format
    since     BIGINT  NOT NULL                -- ms: when added or its password last changed (tokens name it)
);

-- A client that launches for people (authorization code flow): its registered redirect URIs,
-- space-separated, matched exactly. A public app has no keys in auth_client.
CREATE TABLE auth_app (
    client_id     TEXT PRIMARY KEY,
    redirect_uris TEXT NOT NULL
);

-- What a user allowed an app: born as an authorization code (one use, minutes), living on as
-- the grant its access tokens and refresh token name until it expires or is revoked.
CREATE TABLE auth_grant (
    id              TEXT PRIMARY KEY,          -- named by the access tokens (`gid`)
    client_id       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    user_since      BIGINT  NOT NULL,
    scope           TEXT    NOT NULL,          -- what the user allowed, space-separated
    patient         TEXT,                      -- the launch's Patient, if any
    redirect_uri    TEXT    NOT NULL,
    code_challenge  TEXT    NOT NULL,          -- PKCE S256
    nonce           TEXT,
    code_hash       TEXT    NOT NULL UNIQUE,   -- SHA-256 of the code
    code_expires    BIGINT  NOT NULL,
    code_used       INTEGER NOT NULL DEFAULT 0,
    refresh_hash    TEXT UNIQUE,               -- SHA-256 of the current refresh token
    refresh_expires BIGINT ,
    created         BIGINT  NOT NULL,
    revoked         BIGINT                     -- when it was revoked (ms), if it was
);
CREATE INDEX auth_grant_user ON auth_grant (user_id);
CREATE INDEX auth_grant_client ON auth_grant (client_id);
