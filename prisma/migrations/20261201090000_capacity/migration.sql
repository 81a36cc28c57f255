-- Capacity: redemption limits per promotion and the reservations that consume them.
-- See docs/capacity.md. PostgreSQL is the source of truth: a reservation is answered only after
-- the statement that admitted it committed.

-- One row per promotion that has limits or reservations: its limits and the units in use.
-- "used" counts live holds and confirmed reservations; it changes only while this row is locked.
CREATE TABLE "capacity" (
    "promotion_id" TEXT COLLATE "C" NOT NULL,
    "total_max" BIGINT,
    "per_customer_max" BIGINT,
    "window_seconds" INTEGER,
    "window_max" BIGINT,
    "used" BIGINT NOT NULL DEFAULT 0,
    "next_expiry" TIMESTAMPTZ(6),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "capacity_pkey" PRIMARY KEY ("promotion_id")
);

CREATE INDEX "capacity_next_expiry_idx" ON "capacity"("next_expiry");

-- Confirmed units, spread over a few rows per promotion so that confirmations of one hot
-- promotion do not queue behind each other (or behind admissions) on one row.
CREATE TABLE "capacity_confirmed" (
    "promotion_id" TEXT COLLATE "C" NOT NULL,
    "shard" SMALLINT NOT NULL,
    "units" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "capacity_confirmed_pkey" PRIMARY KEY ("promotion_id","shard")
);

-- One row per (promotion, order): the unique key is what makes a retried reservation a replay.
-- status: held | confirmed | released | expired. remaining_* is the first answer, replayed as is.
CREATE TABLE "reservation" (
    "promotion_id" TEXT COLLATE "C" NOT NULL,
    "order_id" TEXT COLLATE "C" NOT NULL,
    "customer_id" TEXT COLLATE "C",
    "units" BIGINT NOT NULL,
    "status" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL,
    "expires_at" TIMESTAMPTZ(6) NOT NULL,
    "resolved_at" TIMESTAMPTZ(6),
    "remaining_total" BIGINT,
    "remaining_per_customer" BIGINT,
    "remaining_window" BIGINT,

    CONSTRAINT "reservation_pkey" PRIMARY KEY ("promotion_id","order_id")
);

CREATE INDEX "reservation_promotion_id_status_expires_at_idx" ON "reservation"("promotion_id", "status", "expires_at");
CREATE INDEX "reservation_promotion_id_customer_id_idx" ON "reservation"("promotion_id", "customer_id");
CREATE INDEX "reservation_promotion_id_created_at_idx" ON "reservation"("promotion_id", "created_at");

-- Marks a promotion's holds that are past their expiry as expired and gives their units back.
-- The caller holds the promotion's capacity row lock. Returns (holds expired, units freed).
CREATE FUNCTION promosync_capacity_expire(p_promotion TEXT, OUT o_holds BIGINT, OUT o_units BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
  WITH e AS (
    UPDATE "reservation" SET "status" = 'expired', "resolved_at" = clock_timestamp()
     WHERE "promotion_id" = p_promotion AND "status" = 'held' AND "expires_at" <= now()
    RETURNING "units")
  SELECT count(*), coalesce(sum("units"), 0) INTO o_holds, o_units FROM e;
  UPDATE "capacity"
     SET "used" = "used" - o_units,
         "next_expiry" = (SELECT min("expires_at") FROM "reservation"
                           WHERE "promotion_id" = p_promotion AND "status" = 'held'),
         "updated_at" = now()
   WHERE "promotion_id" = p_promotion;
END $$;

-- Admits a batch of reservation requests for one promotion, in order, under one lock of its
-- capacity row: each request is granted only if every limit still holds with it, all limits
-- taken together or none. A known order id is answered from its stored row (a replay), or is a
-- conflict when units or customer differ. Returns one row per request, in request order.
-- o_outcome: granted | replay | conflict | not_active | customer_required | exhausted (o_limit
-- names the limit: total, perCustomer or perWindow). o_expired: holds this call expired.
CREATE FUNCTION promosync_capacity_admit(
  p_promotion TEXT, p_orders TEXT[], p_customers TEXT[], p_units BIGINT[], p_holds INTEGER[])
RETURNS TABLE (
  o_order_id TEXT, o_outcome TEXT, o_limit TEXT, o_customer_id TEXT, o_units BIGINT,
  o_status TEXT, o_created_at TIMESTAMPTZ, o_expires_at TIMESTAMPTZ, o_remaining_total BIGINT,
  o_remaining_per_customer BIGINT, o_remaining_window BIGINT, o_expired BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
  cap "capacity"%ROWTYPE;
  prior "reservation"%ROWTYPE;
  active BOOLEAN;
  expired BIGINT := 0;
  freed BIGINT;
  win_used BIGINT := 0;
  cust_used BIGINT := 0;
  u BIGINT;
  c TEXT;
  expiry TIMESTAMPTZ;
  i INTEGER;
BEGIN
  SELECT * INTO cap FROM "capacity" WHERE "promotion_id" = p_promotion FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO "capacity" ("promotion_id") VALUES (p_promotion) ON CONFLICT DO NOTHING;
    SELECT * INTO cap FROM "capacity" WHERE "promotion_id" = p_promotion FOR UPDATE;
  END IF;
  -- Holds past their expiry count for nothing from now on, whether or not a sweeper came by.
  IF cap."next_expiry" <= now() THEN
    SELECT e.o_holds, e.o_units INTO expired, freed FROM promosync_capacity_expire(p_promotion) e;
    SELECT * INTO cap FROM "capacity" WHERE "promotion_id" = p_promotion;
  END IF;
  SELECT e."status" = 'ACTIVATED' INTO active FROM "entity" e
   WHERE e."machine" = 'promotion' AND e."entity_id" = p_promotion;
  active := coalesce(active, false);
  IF cap."window_max" IS NOT NULL THEN
    SELECT coalesce(sum(r."units"), 0) INTO win_used FROM "reservation" r
     WHERE r."promotion_id" = p_promotion AND r."status" IN ('held', 'confirmed')
       AND r."created_at" > now() - make_interval(secs => cap."window_seconds");
  END IF;

  FOR i IN 1 .. coalesce(array_length(p_orders, 1), 0) LOOP
    u := p_units[i];
    c := p_customers[i];
    o_order_id := p_orders[i];
    o_limit := NULL; o_customer_id := c; o_units := u; o_status := NULL; o_created_at := NULL;
    o_expires_at := NULL; o_remaining_total := NULL; o_remaining_per_customer := NULL;
    o_remaining_window := NULL; o_expired := expired;
    SELECT * INTO prior FROM "reservation" r
     WHERE r."promotion_id" = p_promotion AND r."order_id" = p_orders[i];
    IF FOUND THEN
      o_customer_id := prior."customer_id"; o_units := prior."units"; o_status := prior."status";
      o_created_at := prior."created_at"; o_expires_at := prior."expires_at";
      o_remaining_total := prior."remaining_total";
      o_remaining_per_customer := prior."remaining_per_customer";
      o_remaining_window := prior."remaining_window";
      o_outcome := CASE WHEN prior."units" = u AND prior."customer_id" IS NOT DISTINCT FROM c
                        THEN 'replay' ELSE 'conflict' END;
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF NOT active THEN
      o_outcome := 'not_active';
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF cap."per_customer_max" IS NOT NULL AND c IS NULL THEN
      o_outcome := 'customer_required';
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF cap."total_max" IS NOT NULL AND cap."used" + u > cap."total_max" THEN
      o_outcome := 'exhausted'; o_limit := 'total';
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF cap."per_customer_max" IS NOT NULL THEN
      SELECT coalesce(sum(r."units"), 0) INTO cust_used FROM "reservation" r
       WHERE r."promotion_id" = p_promotion AND r."customer_id" = c
         AND r."status" IN ('held', 'confirmed');
      IF cust_used + u > cap."per_customer_max" THEN
        o_outcome := 'exhausted'; o_limit := 'perCustomer';
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    IF cap."window_max" IS NOT NULL AND win_used + u > cap."window_max" THEN
      o_outcome := 'exhausted'; o_limit := 'perWindow';
      RETURN NEXT;
      CONTINUE;
    END IF;
    cap."used" := cap."used" + u;
    win_used := win_used + u;
    expiry := now() + make_interval(secs => p_holds[i]);
    o_outcome := 'granted'; o_status := 'held'; o_created_at := now(); o_expires_at := expiry;
    o_remaining_total := CASE WHEN cap."total_max" IS NULL THEN NULL
                              ELSE greatest(cap."total_max" - cap."used", 0) END;
    o_remaining_per_customer := CASE WHEN cap."per_customer_max" IS NULL THEN NULL
                                     ELSE greatest(cap."per_customer_max" - cust_used - u, 0) END;
    o_remaining_window := CASE WHEN cap."window_max" IS NULL THEN NULL
                               ELSE greatest(cap."window_max" - win_used, 0) END;
    INSERT INTO "reservation" ("promotion_id", "order_id", "customer_id", "units", "status",
                               "created_at", "expires_at", "remaining_total",
                               "remaining_per_customer", "remaining_window")
    VALUES (p_promotion, p_orders[i], c, u, 'held', now(), expiry, o_remaining_total,
            o_remaining_per_customer, o_remaining_window);
    cap."next_expiry" := least(cap."next_expiry", expiry);
    RETURN NEXT;
  END LOOP;
  UPDATE "capacity" SET "used" = cap."used", "next_expiry" = cap."next_expiry", "updated_at" = now()
   WHERE "promotion_id" = p_promotion;
END $$;

-- Releases a hold (its units return at once), under the promotion's capacity row lock so that
-- every writer of "used" takes the locks in the same order (capacity row, then reservation).
-- A hold already past its expiry is recorded as expired instead. Returns the reservation after
-- the call; no row when there is no such reservation.
CREATE FUNCTION promosync_capacity_release(p_promotion TEXT, p_order TEXT)
RETURNS SETOF "reservation"
LANGUAGE plpgsql AS $$
DECLARE
  freed BIGINT;
BEGIN
  PERFORM 1 FROM "capacity" WHERE "promotion_id" = p_promotion FOR UPDATE;
  UPDATE "reservation"
     SET "status" = CASE WHEN "expires_at" <= now() THEN 'expired' ELSE 'released' END,
         "resolved_at" = clock_timestamp()
   WHERE "promotion_id" = p_promotion AND "order_id" = p_order AND "status" = 'held'
  RETURNING "units" INTO freed;
  IF FOUND THEN
    UPDATE "capacity" SET "used" = "used" - freed, "updated_at" = now()
     WHERE "promotion_id" = p_promotion;
  END IF;
  RETURN QUERY SELECT * FROM "reservation" WHERE "promotion_id" = p_promotion AND "order_id" = p_order;
END $$;

-- The sweeper: expires due holds of up to p_limit promotions, skipping promotions whose row
-- another transaction holds (an admission there expires them itself). Returns one row per
-- promotion swept with the holds it expired.
CREATE FUNCTION promosync_capacity_sweep(p_limit INTEGER)
RETURNS TABLE (o_promotion_id TEXT, o_holds BIGINT, o_units BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
  p TEXT;
BEGIN
  FOR p IN SELECT "promotion_id" FROM "capacity" WHERE "next_expiry" <= now()
            ORDER BY "next_expiry" LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
    o_promotion_id := p;
    SELECT e.o_holds, e.o_units INTO o_holds, o_units FROM promosync_capacity_expire(p) e;
    RETURN NEXT;
  END LOOP;
END $$;
