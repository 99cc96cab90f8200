-- The audit log (issue 13, decision 0032): one compact row per request to the FHIR API and the
-- token endpoint, served as AuditEvent resources. Partitioned by day on `recorded`: the writer
-- creates each day's partition (audit_log_dYYYYMMDD) before its first row, and retention drops
-- whole partitions.
CREATE SEQUENCE audit_log_seq;
CREATE TABLE audit_log (
    recorded BIGINT NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('audit_log_seq'),
    event SMALLINT NOT NULL,
    actor SMALLINT NOT NULL,
    status SMALLINT NOT NULL,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    interaction TEXT,
    client TEXT,
    patient TEXT,
    entity TEXT,
    path TEXT,
    query TEXT,
    request_id TEXT,
    detail TEXT
) PARTITION BY RANGE (recorded);
CREATE INDEX audit_log_recorded ON audit_log (recorded, seq);
CREATE INDEX audit_log_client ON audit_log (client, recorded) WHERE client IS NOT NULL;
CREATE INDEX audit_log_patient ON audit_log (patient, recorded) WHERE patient IS NOT NULL;
CREATE INDEX audit_log_entity ON audit_log (entity, recorded) WHERE entity IS NOT NULL;
CREATE INDEX audit_log_failure ON audit_log (status, recorded) WHERE status >= 400;
CREATE INDEX audit_log_type ON audit_log (event, recorded) WHERE event <> 0;
CREATE INDEX audit_log_subtype ON audit_log (interaction, recorded);
