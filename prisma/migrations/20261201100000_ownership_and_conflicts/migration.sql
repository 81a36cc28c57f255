-- Conflicts: the content hash of the first event with each (source, eventId), so a repeat with
-- other content is told from a true repeat. Keys claimed before carry none (their repeats stay
-- duplicates).
ALTER TABLE "event_key" ADD COLUMN "content_hash" TEXT;

-- Ownership: the source of an entity's lowest-keyed event and that key. Identifiers compare
-- as bytes, like the other id columns (20261122030000_ids_collate_c).
ALTER TABLE "entity" ADD COLUMN "owner_source" TEXT COLLATE "C",
ADD COLUMN "owner_key" BIGINT;

-- Why an event was rejected or a conflict, and the owners the key that sent it was granted
-- (a recomputation of the row after a change of owner needs them).
ALTER TABLE "event_log" ADD COLUMN "reason" TEXT,
ADD COLUMN "may_write_for" TEXT[];

-- The owners a producer key may write for besides its own source.
ALTER TABLE "api_key" ADD COLUMN "may_write_for" TEXT[];

-- Rows stored before ownership existed belong to the source of their first logged event that
-- was not an admin's; key 0 pins that owner (no event has a lower key).
UPDATE "entity" e SET "owner_source" = o.source, "owner_key" = 0
FROM (
  SELECT DISTINCT ON (l.machine, l.entity_id) l.machine, l.entity_id, l.source
  FROM "event_log" l
  WHERE l.source <> 'admin' AND l.outcome IN ('applied', 'stale')
  ORDER BY l.machine, l.entity_id, l.id
) o
WHERE o.machine = e.machine AND o.entity_id = e.entity_id;
