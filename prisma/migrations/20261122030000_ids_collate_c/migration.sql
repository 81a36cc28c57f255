-- Identifiers are compared as bytes: entity, merchant and event ids and sources are ASCII by
-- contract, where byte order ("C") sorts as the usual locales do, and every index lookup and
-- sort on them then compares bytes instead of calling the locale's collation.
-- Not expressible in schema.prisma (Prisma does not model column collations).

ALTER TABLE "entity"
  ALTER COLUMN "machine" TYPE TEXT COLLATE "C",
  ALTER COLUMN "entity_id" TYPE TEXT COLLATE "C",
  ALTER COLUMN "merchant_id" TYPE TEXT COLLATE "C";

ALTER TABLE "event_log"
  ALTER COLUMN "machine" TYPE TEXT COLLATE "C",
  ALTER COLUMN "entity_id" TYPE TEXT COLLATE "C";

ALTER TABLE "event_key"
  ALTER COLUMN "source" TYPE TEXT COLLATE "C",
  ALTER COLUMN "event_id" TYPE TEXT COLLATE "C";
