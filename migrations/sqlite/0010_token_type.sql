-- The coach's worklist (`Flag?status=active&_sort=-priority`, issue 16 item 9) is driven by its
-- token filter, and `status=active` is shared by every type with a status: through
-- idx_token_lookup (param, code) the search read the active rows of every CarePlan,
-- MedicationRequest… and looked each one's type up, to keep a few hundred Flags. Token rows now
-- carry the type of their resource row (`rtype`, the container's type for a contained
-- resource's rows, as `rid` is the container's), and the driving token filter looks up
-- (rtype, param, code, system) with the row key in the index, so it reads only the matching
-- rows of the type searched, from the index alone.
ALTER TABLE idx_token ADD COLUMN rtype TEXT;
UPDATE idx_token SET rtype = (SELECT r.rtype FROM resource r WHERE r.rid = idx_token.rid);
CREATE INDEX idx_token_type_lookup ON idx_token (rtype, param, code, system, rid);
-- idx_token_lookup stays for the lookups that do not know the resource row's type: a search of
-- contained resources is driven by their own parameters, whatever their container's type.
