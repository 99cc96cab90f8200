-- Fewer B-trees per index row (decision 0056, issue 13: bulk ingest). Each index row is
-- inserted into its table and into every index of it, and the inserts into the value-first
-- indexes land anywhere in their B-trees: they were most of an imported resource's SQLite
-- work. The statements Signaal builds never look those rows up by value, only by row key
-- (`EXISTS (… WHERE x.rid = r.rid AND x.param = ? …)`, through the `*_rid_param` indexes),
-- because only a reference or a token drives a search (decision 0016):
-- - strings, dates, URIs, numbers and quantities never drive, so their (param, value…)
--   indexes are dropped; a canonical quantity probe goes by row key too;
-- - references are looked up by (param, target_id, target_type) or by row key; the
--   (target_type, target_id) index served no lookup better (a chain's scan of every reference
--   to a type becomes one of every reference of its parameter) and made `_include` read every
--   reference to the included type instead of the rows of the page's resources;
-- - a contained resource's token rows carry no type (NULL) and searches of contained
--   resources look them up in idx_token_type_lookup under it, so idx_token_lookup (kept for
--   them by decision 0025) goes.
UPDATE idx_token SET rtype = NULL WHERE contained IS NOT NULL;
DROP INDEX idx_token_lookup;
DROP INDEX idx_reference_target;
DROP INDEX idx_string_lookup;
DROP INDEX idx_date_lookup;
DROP INDEX idx_uri_lookup;
DROP INDEX idx_number_lookup;
DROP INDEX idx_quantity_lookup;
DROP INDEX idx_quantity_canonical;
