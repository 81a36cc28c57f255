-- DropIndex
DROP INDEX "event_log_machine_entity_id_id_idx";

-- AlterTable
ALTER TABLE "event_log" DROP CONSTRAINT "event_log_pkey",
ADD CONSTRAINT "event_log_pkey" PRIMARY KEY ("machine", "entity_id", "id");
