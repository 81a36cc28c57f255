-- CreateTable
CREATE TABLE "entity" (
    "machine" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "last_event" TEXT NOT NULL,
    "key" BIGINT NOT NULL,
    "version" BIGINT,
    "merchant_id" TEXT,
    "fields" JSONB NOT NULL DEFAULT '{}',
    "anomalies" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "entity_pkey" PRIMARY KEY ("machine","entity_id")
);

-- CreateTable
CREATE TABLE "event_log" (
    "id" BIGSERIAL NOT NULL,
    "machine" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "version" BIGINT,
    "event_id" TEXT,
    "source" TEXT NOT NULL,
    "merchant_id" TEXT,
    "data" JSONB,
    "occurred_at" TIMESTAMPTZ(3),
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "outcome" TEXT NOT NULL,
    "anomaly" BOOLEAN NOT NULL DEFAULT false,
    "job_id" TEXT,

    CONSTRAINT "event_log_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "event_key" (
    "source" TEXT NOT NULL,
    "event_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "event_key_pkey" PRIMARY KEY ("source","event_id")
);

-- CreateTable
CREATE TABLE "api_key" (
    "id" TEXT NOT NULL,
    "secret_hash" BYTEA NOT NULL,
    "role" TEXT NOT NULL,
    "source" TEXT,
    "machines" TEXT[],
    "merchant_id" TEXT,
    "label" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_key_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "machine_def" (
    "name" TEXT NOT NULL,
    "ordering" TEXT NOT NULL,
    "ranks" JSONB NOT NULL,
    "states" TEXT[],
    "hash" TEXT NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "machine_def_pkey" PRIMARY KEY ("name")
);

-- CreateIndex
CREATE INDEX "entity_machine_merchant_id_updated_at_entity_id_idx" ON "entity"("machine", "merchant_id", "updated_at", "entity_id");

-- CreateIndex
CREATE INDEX "entity_machine_updated_at_entity_id_idx" ON "entity"("machine", "updated_at", "entity_id");

-- CreateIndex
CREATE INDEX "event_log_machine_entity_id_id_idx" ON "event_log"("machine", "entity_id", "id");

-- Not expressible in schema.prisma: helpers of the apply statement (src/store/apply-sql.ts).

-- Whether `data` (written with ordering key k) would set any field that `cur` holds with a lower key.
CREATE FUNCTION promosync_fields_win(cur JSONB, data JSONB, k BIGINT) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT EXISTS (
    SELECT 1 FROM jsonb_each(data) d
    WHERE cur IS NULL OR NOT (cur ? d.key) OR (cur -> d.key ->> 'k')::bigint < k
  )
$$;

-- Aborts the statement with serialization_failure (retried by the caller) when `ok` is false.
CREATE FUNCTION promosync_require(ok BOOLEAN, msg TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF NOT ok THEN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = msg;
  END IF;
  RETURN true;
END
$$;
