-- UCUM quantities also in canonical base units (src/ucum), so a search in one unit finds values
-- stored in any commensurable unit (5.4 mmol/L finds 5400 umol/L). NULL for other systems and
-- for units UCUM cannot convert. Rows indexed before this migration get them from $reindex.
ALTER TABLE idx_quantity ADD COLUMN canonical_value DOUBLE PRECISION;
ALTER TABLE idx_quantity ADD COLUMN canonical_unit TEXT;
CREATE INDEX idx_quantity_canonical ON idx_quantity (param, canonical_unit, canonical_value);
