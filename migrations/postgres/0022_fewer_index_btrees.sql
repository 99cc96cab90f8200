-- A contained resource's token rows carry no type (NULL): searches of contained resources
-- look them up in idx_token_type_lookup under it, whatever the container's type (decision
-- 0056). The value-first indexes SQLite drops in its 0022 stay here: PostgreSQL plans by its
-- statistics and may look any of them up.
UPDATE idx_token SET rtype = NULL WHERE contained IS NOT NULL;
