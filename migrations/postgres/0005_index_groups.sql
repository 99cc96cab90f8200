-- Index entries that belong together: the components of one composite search parameter value,
-- or an identifier's type and value (:of-type), read from the SAME element of a resource, share
-- a group number. NULL for ordinary entries.
ALTER TABLE idx_token ADD COLUMN grp BIGINT;
ALTER TABLE idx_string ADD COLUMN grp BIGINT;
ALTER TABLE idx_date ADD COLUMN grp BIGINT;
ALTER TABLE idx_reference ADD COLUMN grp BIGINT;
ALTER TABLE idx_uri ADD COLUMN grp BIGINT;
ALTER TABLE idx_number ADD COLUMN grp BIGINT;
ALTER TABLE idx_quantity ADD COLUMN grp BIGINT;
