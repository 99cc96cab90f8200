-- Contained resources are indexed with their container (search page, "Contained Resources"):
-- their entries are rows of the container's rid, under parameter names no resource's own
-- parameter has ('Medication#code': the contained type, '#', the code), so ordinary searches
-- never meet them and stay on the same index ranges. `contained` is the position of the
-- contained resource in the container's `contained` array; NULL for the resource's own entries.
-- Resources stored before this migration get their contained entries from `$reindex`.
ALTER TABLE idx_token ADD COLUMN contained INTEGER;
ALTER TABLE idx_string ADD COLUMN contained INTEGER;
ALTER TABLE idx_date ADD COLUMN contained INTEGER;
ALTER TABLE idx_reference ADD COLUMN contained INTEGER;
ALTER TABLE idx_uri ADD COLUMN contained INTEGER;
ALTER TABLE idx_number ADD COLUMN contained INTEGER;
ALTER TABLE idx_quantity ADD COLUMN contained INTEGER;
