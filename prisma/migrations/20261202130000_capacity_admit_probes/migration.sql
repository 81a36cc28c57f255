-- Admission with plans that stay index lookups whatever the statistics (docs/capacity.md#group-commit-on-the-hot-row).
-- The lookups of a batch's stored reservations and of its promotions' statuses were joins the
-- planner could flatten: a session that planned them while the tables were new (or never
-- analysed) kept a hash join over the whole reservation table, and a scan of every promotion per
-- capacity row, and each statement grew slower with the table (100 requests on one promotion:
-- 3.6 ms per call at first, 43 ms a minute later). Both lookups are now subqueries the planner
-- cannot flatten; the grants are inserted from the arrays read side by side instead of by
-- subscript. Same signature, same rules, same answers.
CREATE OR REPLACE FUNCTION promosync_capacity_admit_all(
  p_promotions TEXT[], p_orders TEXT[], p_customers TEXT[], p_units BIGINT[], p_holds INTEGER[])
RETURNS TABLE (
  o_order_id TEXT, o_outcome TEXT, o_limit TEXT, o_customer_id TEXT, o_units BIGINT,
  o_status TEXT, o_created_at TIMESTAMPTZ, o_expires_at TIMESTAMPTZ, o_remaining_total BIGINT,
  o_remaining_per_customer BIGINT, o_remaining_window BIGINT, o_expired BIGINT)
LANGUAGE plpgsql
-- Its statements are index lookups; JIT compiling them when a large table makes a plan look
-- expensive would cost more than running them.
SET jit = off
-- A lookup of one row by its key is an index scan: a bitmap scan costs more to set up than the
-- lookup itself, and the planner picks one when it cannot tell the key is unique.
SET enable_bitmapscan = off
AS $$
DECLARE
  n INTEGER := coalesce(array_length(p_orders, 1), 0);
  -- The batch's promotions in id order; "slot" k is promos[k].
  v_promos TEXT[];
  v_np INTEGER;
  -- Per request: its promotion's slot, the first request of the batch with the same order, and
  -- the slot of its (promotion, customer) when it names a customer.
  q_pslot INTEGER[];
  q_first INTEGER[];
  q_cslot INTEGER[];
  -- Per promotion slot.
  s_used BIGINT[];
  s_total_max BIGINT[];
  s_cust_max BIGINT[];
  s_win_max BIGINT[];
  s_win_used BIGINT[];
  s_next_exp TIMESTAMPTZ[];
  s_active BOOLEAN[];
  s_expired BIGINT[];
  s_changed BOOLEAN[];
  -- Per (promotion, customer) slot: the promotion, the customer, and units held or confirmed.
  c_promotion TEXT[];
  c_customer TEXT[];
  c_used BIGINT[];
  -- Per request: the stored reservation of its order, if there is one.
  pr_found BOOLEAN[];
  pr_customer TEXT[];
  pr_units BIGINT[];
  pr_status TEXT[];
  pr_created TIMESTAMPTZ[];
  pr_expires TIMESTAMPTZ[];
  pr_rt BIGINT[];
  pr_rc BIGINT[];
  pr_rw BIGINT[];
  -- Per first request of an order: the request of this batch that was granted it.
  q_granted INTEGER[];
  -- The answers, per request.
  a_outcome TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
  a_limit TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
  a_customer TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
  a_units BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
  a_status TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
  a_created TIMESTAMPTZ[] := array_fill(NULL::TIMESTAMPTZ, ARRAY[n]);
  a_expires TIMESTAMPTZ[] := array_fill(NULL::TIMESTAMPTZ, ARRAY[n]);
  a_rt BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
  a_rc BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
  a_rw BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
  a_expired BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
  p TEXT;
  i INTEGER;
  k INTEGER;
  g INTEGER;
  u BIGINT;
  c TEXT;
  v_expiry TIMESTAMPTZ;
  v_holds BIGINT;
  v_freed BIGINT;
BEGIN
  IF n = 0 THEN
    RETURN;
  END IF;
  WITH b AS (
    SELECT x.i::INTEGER AS i, x.p COLLATE "C" AS p, x.o COLLATE "C" AS o, x.c COLLATE "C" AS c
      FROM unnest(p_promotions, p_orders, p_customers) WITH ORDINALITY AS x(p, o, c, i)),
  cs AS (
    SELECT d.p, d.c, dense_rank() OVER (ORDER BY d.p, d.c)::INTEGER AS slot
      FROM (SELECT DISTINCT b.p, b.c FROM b WHERE b.c IS NOT NULL) d),
  r AS (
    SELECT b.i, dense_rank() OVER (ORDER BY b.p)::INTEGER AS pslot,
           min(b.i) OVER (PARTITION BY b.p, b.o)::INTEGER AS first, cs.slot AS cslot
      FROM b LEFT JOIN cs ON cs.p = b.p AND cs.c = b.c)
  SELECT array_agg(r.pslot ORDER BY r.i), array_agg(r.first ORDER BY r.i), array_agg(r.cslot ORDER BY r.i),
         (SELECT array_agg(cs.p ORDER BY cs.slot) FROM cs), (SELECT array_agg(cs.c ORDER BY cs.slot) FROM cs)
    INTO q_pslot, q_first, q_cslot, c_promotion, c_customer FROM r;
  SELECT array_agg(d.p ORDER BY d.p) INTO v_promos
    FROM (SELECT DISTINCT x COLLATE "C" AS p FROM unnest(p_promotions) AS x) d;
  v_np := array_length(v_promos, 1);

  -- Lock the capacity rows in id order. A promotion without one gets it on the way, still in
  -- id order, so that two callers never wait for each other's rows in opposite orders.
  IF (SELECT count(*) FROM "capacity" WHERE "promotion_id" = ANY (v_promos)) = v_np THEN
    PERFORM count(*) FROM (SELECT 1 FROM "capacity" WHERE "promotion_id" = ANY (v_promos)
                            ORDER BY "promotion_id" FOR UPDATE) l;
  ELSE
    FOREACH p IN ARRAY v_promos LOOP
      PERFORM 1 FROM "capacity" WHERE "promotion_id" = p FOR UPDATE;
      IF NOT FOUND THEN
        INSERT INTO "capacity" ("promotion_id") VALUES (p) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM "capacity" WHERE "promotion_id" = p FOR UPDATE;
      END IF;
    END LOOP;
  END IF;

  -- Holds past their expiry count for nothing from now on, whether or not a sweeper came by.
  s_expired := array_fill(0::BIGINT, ARRAY[v_np]);
  FOR p IN SELECT "promotion_id" FROM "capacity"
            WHERE "promotion_id" = ANY (v_promos) AND "next_expiry" <= now() ORDER BY "promotion_id" LOOP
    SELECT e.o_holds, e.o_units INTO v_holds, v_freed FROM promosync_capacity_expire(p) e;
    s_expired[array_position(v_promos, p)] := v_holds;
  END LOOP;

  SELECT array_agg(c."used" ORDER BY c."promotion_id"),
         array_agg(c."total_max" ORDER BY c."promotion_id"),
         array_agg(c."per_customer_max" ORDER BY c."promotion_id"),
         array_agg(c."window_max" ORDER BY c."promotion_id"),
         array_agg(CASE WHEN c."window_max" IS NULL THEN 0 ELSE
                     (SELECT coalesce(sum(r."units"), 0) FROM "reservation" r
                       WHERE r."promotion_id" = c."promotion_id" AND r."status" IN ('held', 'confirmed')
                         AND r."created_at" > now() - make_interval(secs => c."window_seconds")) END
                   ORDER BY c."promotion_id"),
         array_agg(c."next_expiry" ORDER BY c."promotion_id"),
         array_agg(coalesce(e."status" = 'ACTIVATED', false) ORDER BY c."promotion_id")
    INTO s_used, s_total_max, s_cust_max, s_win_max, s_win_used, s_next_exp, s_active
    FROM "capacity" c
    -- OFFSET 0: a primary-key lookup per promotion (see the reservations' lookup below).
    LEFT JOIN LATERAL (SELECT x."status" FROM "entity" x
                        WHERE x."machine" = 'promotion' AND x."entity_id" = c."promotion_id" OFFSET 0) e ON true
   WHERE c."promotion_id" = ANY (v_promos);
  s_changed := array_fill(false, ARRAY[v_np]);

  -- Units each customer of the batch holds or has confirmed, where the promotion counts them.
  IF EXISTS (SELECT 1 FROM unnest(s_cust_max) m WHERE m IS NOT NULL) THEN
    SELECT array_agg((SELECT coalesce(sum(r."units"), 0) FROM "reservation" r
                       WHERE r."promotion_id" = x.p AND r."customer_id" = x.c
                         AND r."status" IN ('held', 'confirmed')) ORDER BY x.slot)
      INTO c_used FROM unnest(c_promotion, c_customer) WITH ORDINALITY AS x(p, c, slot);
  END IF;

  -- The orders that already have a reservation.
  SELECT array_agg(r."order_id" IS NOT NULL ORDER BY q.i), array_agg(r."customer_id" ORDER BY q.i),
         array_agg(r."units" ORDER BY q.i), array_agg(r."status" ORDER BY q.i),
         array_agg(r."created_at" ORDER BY q.i), array_agg(r."expires_at" ORDER BY q.i),
         array_agg(r."remaining_total" ORDER BY q.i), array_agg(r."remaining_per_customer" ORDER BY q.i),
         array_agg(r."remaining_window" ORDER BY q.i)
    INTO pr_found, pr_customer, pr_units, pr_status, pr_created, pr_expires, pr_rt, pr_rc, pr_rw
    FROM unnest(p_promotions, p_orders) WITH ORDINALITY AS q(p, o, i)
    -- One primary-key lookup per request, whatever the statistics say about the table's size.
    -- OFFSET 0 keeps the subquery from being pulled up into a join, which the planner is free
    -- to run as a hash join over the whole table (the plan it caches while the table is new).
    LEFT JOIN LATERAL (SELECT * FROM "reservation" x
                        WHERE x."promotion_id" = q.p AND x."order_id" = q.o OFFSET 0) r ON true;

  q_granted := array_fill(NULL::INTEGER, ARRAY[n]);
  FOR i IN 1 .. n LOOP
    k := q_pslot[i];
    u := p_units[i];
    c := p_customers[i];
    g := q_granted[q_first[i]];
    a_customer[i] := c;
    a_units[i] := u;
    a_expired[i] := s_expired[k];
    IF pr_found[i] THEN
      a_customer[i] := pr_customer[i]; a_units[i] := pr_units[i]; a_status[i] := pr_status[i];
      a_created[i] := pr_created[i]; a_expires[i] := pr_expires[i];
      a_rt[i] := pr_rt[i]; a_rc[i] := pr_rc[i]; a_rw[i] := pr_rw[i];
      a_outcome[i] := CASE WHEN pr_units[i] = u AND pr_customer[i] IS NOT DISTINCT FROM c
                           THEN 'replay' ELSE 'conflict' END;
    ELSIF g IS NOT NULL THEN
      -- Granted earlier in this batch: answered as the stored reservation would be.
      a_customer[i] := p_customers[g]; a_units[i] := p_units[g]; a_status[i] := 'held';
      a_created[i] := a_created[g]; a_expires[i] := a_expires[g];
      a_rt[i] := a_rt[g]; a_rc[i] := a_rc[g]; a_rw[i] := a_rw[g];
      a_outcome[i] := CASE WHEN p_units[g] = u AND p_customers[g] IS NOT DISTINCT FROM c
                           THEN 'replay' ELSE 'conflict' END;
    ELSIF NOT s_active[k] THEN
      a_outcome[i] := 'not_active';
    ELSIF s_cust_max[k] IS NOT NULL AND c IS NULL THEN
      a_outcome[i] := 'customer_required';
    ELSIF s_total_max[k] IS NOT NULL AND s_used[k] + u > s_total_max[k] THEN
      a_outcome[i] := 'exhausted'; a_limit[i] := 'total';
    ELSIF s_cust_max[k] IS NOT NULL AND c_used[q_cslot[i]] + u > s_cust_max[k] THEN
      a_outcome[i] := 'exhausted'; a_limit[i] := 'perCustomer';
    ELSIF s_win_max[k] IS NOT NULL AND s_win_used[k] + u > s_win_max[k] THEN
      a_outcome[i] := 'exhausted'; a_limit[i] := 'perWindow';
    ELSE
      s_used[k] := s_used[k] + u;
      s_win_used[k] := s_win_used[k] + u;
      IF s_cust_max[k] IS NOT NULL THEN
        c_used[q_cslot[i]] := c_used[q_cslot[i]] + u;
      END IF;
      v_expiry := now() + make_interval(secs => p_holds[i]);
      a_outcome[i] := 'granted'; a_status[i] := 'held'; a_created[i] := now(); a_expires[i] := v_expiry;
      a_rt[i] := CASE WHEN s_total_max[k] IS NULL THEN NULL ELSE greatest(s_total_max[k] - s_used[k], 0) END;
      a_rc[i] := CASE WHEN s_cust_max[k] IS NULL THEN NULL ELSE greatest(s_cust_max[k] - c_used[q_cslot[i]], 0) END;
      a_rw[i] := CASE WHEN s_win_max[k] IS NULL THEN NULL ELSE greatest(s_win_max[k] - s_win_used[k], 0) END;
      s_next_exp[k] := least(s_next_exp[k], v_expiry);
      s_changed[k] := true;
      q_granted[q_first[i]] := i;
    END IF;
  END LOOP;

  INSERT INTO "reservation" ("promotion_id", "order_id", "customer_id", "units", "status",
                             "created_at", "expires_at", "remaining_total",
                             "remaining_per_customer", "remaining_window")
  SELECT x.p, x.o, x.c, x.u, 'held', now(), x.e, x.rt, x.rc, x.rw
    FROM unnest(p_promotions, p_orders, p_customers, p_units, a_expires, a_rt, a_rc, a_rw, a_outcome)
           AS x(p, o, c, u, e, rt, rc, rw, outcome)
   WHERE x.outcome = 'granted';
  UPDATE "capacity" c SET "used" = v.u, "next_expiry" = v.ne, "updated_at" = now()
    FROM unnest(v_promos, s_used, s_next_exp, s_changed) AS v(p, u, ne, ch)
   WHERE c."promotion_id" = v.p AND v.ch;

  RETURN QUERY
    SELECT * FROM unnest(p_orders, a_outcome, a_limit, a_customer, a_units, a_status, a_created,
                         a_expires, a_rt, a_rc, a_rw, a_expired);
END $$;
