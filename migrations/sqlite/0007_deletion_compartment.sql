-- A deletion version carries the compartment of the version it deletes (written so since this
-- migration): fill it in for deletions stored before, from the last version with content.
UPDATE resource_version
SET compartment = (
    SELECT p.compartment FROM resource_version p
    WHERE p.rtype = resource_version.rtype AND p.id = resource_version.id
      AND p.version < resource_version.version AND p.content IS NOT NULL
    ORDER BY p.version DESC
    LIMIT 1
)
WHERE content IS NULL AND compartment IS NULL;
