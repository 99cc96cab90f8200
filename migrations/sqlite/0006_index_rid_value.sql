-- Searches read a resource's index rows by row key and parameter: the filters the driving
-- filter leaves (`EXISTS (… WHERE t.rid = r.rid AND t.param = ? AND t.code = ? …)`), sort
-- keys and `$lastn` groups. An index on (rid) alone makes SQLite prefer the (param, value)
-- index for those probes and walk every row with that value, once per candidate: quadratic
-- at a million resources. (rid, param, value…) answers each probe with one index seek; it
-- also serves `WHERE rid = ?` (rewrites, $reindex), so the (rid) indexes go.
CREATE INDEX idx_token_rid_param ON idx_token (rid, param, code, system);
DROP INDEX idx_token_rid;
CREATE INDEX idx_string_rid_param ON idx_string (rid, param, normalized);
DROP INDEX idx_string_rid;
CREATE INDEX idx_date_rid_param ON idx_date (rid, param, lo, hi);
DROP INDEX idx_date_rid;
CREATE INDEX idx_reference_rid_param ON idx_reference (rid, param, target_id, target_type);
DROP INDEX idx_reference_rid;
CREATE INDEX idx_uri_rid_param ON idx_uri (rid, param, value);
DROP INDEX idx_uri_rid;
CREATE INDEX idx_number_rid_param ON idx_number (rid, param, value);
DROP INDEX idx_number_rid;
CREATE INDEX idx_quantity_rid_param ON idx_quantity (rid, param, code, value);
DROP INDEX idx_quantity_rid;
