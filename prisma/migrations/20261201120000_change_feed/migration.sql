-- Following changes (docs/design.md#changes): every entity row records the transaction that
-- last changed it. A follower reads rows whose transaction lies below the snapshot horizon
-- (pg_snapshot_xmin), in (change_xid, entity_id) order, so a change that commits late still
-- sorts after everything a follower was already given.
-- Rows that exist now get this migration's transaction: one position for all of them.

-- AlterTable
ALTER TABLE "entity" ADD COLUMN "change_xid" xid8 NOT NULL DEFAULT pg_current_xact_id();

-- CreateTable
CREATE TABLE "feed_purge" (
    "machine" TEXT NOT NULL,
    "xid" xid8 NOT NULL,
    "entity_id" TEXT NOT NULL,

    CONSTRAINT "feed_purge_pkey" PRIMARY KEY ("machine")
);

-- CreateIndex
CREATE INDEX "entity_machine_change_xid_entity_id_idx" ON "entity"("machine", "change_xid", "entity_id");

-- CreateIndex
CREATE INDEX "entity_machine_merchant_id_change_xid_entity_id_idx" ON "entity"("machine", "merchant_id", "change_xid", "entity_id");

-- Not expressible in schema.prisma (Prisma does not model column collations): identifiers
-- compare bytes, as in the entity table.
ALTER TABLE "feed_purge"
  ALTER COLUMN "machine" TYPE TEXT COLLATE "C",
  ALTER COLUMN "entity_id" TYPE TEXT COLLATE "C";
