-- The audit log (issue 13, decision 0032): one compact row per request to the FHIR API and the
-- token endpoint, served as AuditEvent resources. On SQLite it lives in a database file of its
-- own (`{database}-audit`), so that its writer never queues behind the resource writer.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    recorded INTEGER NOT NULL,      -- ms since the Unix epoch
    event INTEGER NOT NULL,         -- 0: RESTful request, 1: token request (login)
    actor INTEGER NOT NULL,         -- 0: a client, 1: anonymous on an open server, 2: no valid token
    status INTEGER NOT NULL,        -- the HTTP status answered
    action TEXT NOT NULL,           -- C R U D E
    method TEXT NOT NULL,
    interaction TEXT,               -- restful-interaction code (subtype)
    client TEXT,                    -- client id; 'issuer|id' for a trusted issuer's client
    patient TEXT,                   -- the Patient the request was about or bound to
    entity TEXT,                    -- Type/id of the resource the path names, unless Patient/{patient}
    path TEXT,                      -- the path below the base, when entity does not tell it
    query TEXT,
    request_id TEXT,
    detail TEXT                     -- why a token request was refused
);
CREATE INDEX audit_log_recorded ON audit_log (recorded);
CREATE INDEX audit_log_client ON audit_log (client, recorded) WHERE client IS NOT NULL;
CREATE INDEX audit_log_patient ON audit_log (patient, recorded) WHERE patient IS NOT NULL;
CREATE INDEX audit_log_entity ON audit_log (entity, recorded) WHERE entity IS NOT NULL;
CREATE INDEX audit_log_failure ON audit_log (status, recorded) WHERE status >= 400;
CREATE INDEX audit_log_type ON audit_log (event, recorded) WHERE event <> 0;
CREATE INDEX audit_log_subtype ON audit_log (interaction, recorded);
