/**
 * The apply statement: SPEC §3 for a whole batch, in one atomic statement.
 *
 * The caller ({@link applyParams} in apply.ts) hands the batch over grouped by entity, in a
 * fixed entity order, arrival order kept within each entity: parallel arrays $1–$12 (one
 * element per event), $14 the arrival index, $15 the entity's group number, $16 whether the
 * event is the first of the batch with its (source, eventId); $17/$18 the entities in group
 * order; $19/$20 the idempotency keys to claim, sorted. $13 holds the machines' targets by
 * rank and reachability as JSON. Everything the statement sorts or joins on is then a small
 * integer, and its locks follow one order in every worker. Steps:
 *  1. `fresh_ids` claims idempotency keys; an event whose (source, eventId) was claimed
 *     before, by an earlier batch or earlier in this one, is a duplicate.
 *  2. `cur` reads the touched rows without locking. Keys only grow, so an event that loses
 *     against this snapshot loses for good: such rows are neither locked nor written.
 *  3. `locked` locks the remaining rows in group order, so concurrent batches wait on each
 *     other instead of deadlocking, and reads their latest version.
 *  4. `ev` replays the batch per entity in arrival order with window functions: the
 *     outcome of each event against the row and the events before it, and anomalies.
 *  5. `delta` folds each entity's events: the winning status and, per field, the value of
 *     the highest-keyed event that carries it (last-writer-wins by key).
 *  6. `upd`/`ins` write only rows that change; `logged` writes every event to the log.
 *  7. If another batch created one of our new rows meanwhile, `promosync_require` aborts
 *     the statement with serialization_failure and the caller runs it again.
 */
export const APPLY_SQL = `
WITH
m AS (SELECT $13::jsonb AS j),
input AS (
  SELECT u.ord::int AS ord, u.idx, u.grp, u.first, u.machine, u.entity_id, u.type, u.key, u.version,
         u.event_id, u.source, u.merchant_id, u.data::jsonb AS data, u.target, u.occurred_at, u.job_id
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
              $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[], $14::int[], $15::int[],
              $16::bool[])
       WITH ORDINALITY AS u(machine, entity_id, type, key, version, event_id, source, merchant_id, data,
                            target, occurred_at, job_id, idx, grp, first, ord)
),
ents AS (
  SELECT (u.ord - 1)::int AS grp, u.machine, u.entity_id
  FROM unnest($17::text[], $18::text[]) WITH ORDINALITY AS u(machine, entity_id, ord)
),
fresh_ids AS (
  INSERT INTO event_key (source, event_id)
  SELECT source, event_id FROM unnest($19::text[], $20::text[]) AS k(source, event_id)
  ON CONFLICT DO NOTHING
  RETURNING source, event_id
),
cur AS (
  -- One primary-key lookup per entity (OFFSET 0 keeps the planner from hashing the whole table).
  SELECT n.grp, e.status, e.key, e.merchant_id, e.fields
  FROM ents n CROSS JOIN LATERAL (
    SELECT e.status, e.key, e.merchant_id, e.fields FROM entity e
    WHERE e.machine = n.machine AND e.entity_id = n.entity_id OFFSET 0) e
),
cand AS (
  SELECT DISTINCT c.grp
  FROM cur c JOIN input i USING (grp)
  WHERE i.key > c.key
     OR (c.merchant_id IS NULL AND i.merchant_id IS NOT NULL)
     OR (i.data IS NOT NULL AND promosync_fields_win(c.fields, i.data, i.key))
),
locked AS (
  SELECT n.grp, e.status, e.key, e.merchant_id, e.fields
  FROM ents n JOIN cand USING (grp) CROSS JOIN LATERAL (
    SELECT e.status, e.key, e.merchant_id, e.fields FROM entity e
    WHERE e.machine = n.machine AND e.entity_id = n.entity_id OFFSET 0 FOR UPDATE) e
  ORDER BY n.grp
),
base AS (
  SELECT * FROM locked
  UNION ALL
  SELECT c.* FROM cur c WHERE NOT EXISTS (SELECT 1 FROM cand WHERE cand.grp = c.grp)
),
ev1 AS (
  SELECT i.ord, i.idx, i.grp, i.machine, i.type, i.key, i.version, i.merchant_id, i.target,
         i.data IS NOT NULL AS has_data,
         b.status AS row_status, b.key AS row_key, b.merchant_id AS row_merchant,
         (b.grp IS NOT NULL) AS row_exists,
         (i.event_id IS NULL OR (i.first AND f.event_id IS NOT NULL)) AS fresh
  FROM input i
  LEFT JOIN base b USING (grp)
  LEFT JOIN fresh_ids f ON f.source = i.source AND f.event_id = i.event_id
),
ev1k AS (
  -- Duplicates by key among fresh events. Only events after the owner is known can be
  -- rejected, so up to the event that sets the owner this equals the final replay.
  SELECT ev1.*,
         coalesce(fresh AND key = greatest(row_key, max(key) FILTER (WHERE fresh) OVER (
            PARTITION BY grp ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)), false) AS key_dup
  FROM ev1
),
ev2 AS (
  -- The owner: the row's merchant, else that of the first event that carries one and changes
  -- something. "First" is the lowest ord, packed in front of the merchant id so min() finds it.
  SELECT ev1k.*,
         coalesce(row_merchant, substr(min(lpad(ord::text, 10, '0') || merchant_id)
           FILTER (WHERE fresh AND NOT key_dup) OVER (PARTITION BY grp), 11)) AS owner
  FROM ev1k
),
ev3 AS (
  SELECT ev2.*,
         (fresh AND NOT (merchant_id IS NOT NULL AND owner IS NOT NULL AND merchant_id <> owner)) AS valid
  FROM ev2
),
ev4 AS (
  SELECT ev3.*,
         max(key) FILTER (WHERE valid) OVER (
           PARTITION BY grp ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS batch_prev
  FROM ev3
),
ev AS (
  SELECT ev4.*,
         CASE
           WHEN NOT fresh THEN 'duplicate'
           WHEN NOT valid THEN 'rejected'
           WHEN greatest(row_key, batch_prev) IS NULL OR key > greatest(row_key, batch_prev) THEN 'applied'
           WHEN key = greatest(row_key, batch_prev) THEN 'duplicate'
           ELSE 'stale'
         END AS outcome,
         CASE
           WHEN batch_prev IS NOT NULL AND (row_key IS NULL OR batch_prev > row_key) THEN
             (SELECT m.j -> ev4.machine -> 'targets' ->> (
                CASE WHEN m.j -> ev4.machine ->> 'ordering' = 'version' THEN batch_prev % 512
                     ELSE batch_prev >> 53 END)::text FROM m)
           ELSE row_status
         END AS prev_status
  FROM ev4
),
evx AS (
  SELECT ev.*,
         (outcome = 'applied' AND prev_status IS NOT NULL AND NOT coalesce(
            (SELECT (m.j -> ev.machine -> 'reach' -> ev.prev_status) ? ev.target FROM m), false)) AS anomaly
  FROM ev
),
top AS (
  SELECT DISTINCT ON (grp) grp, type, key, version, target
  FROM evx WHERE outcome = 'applied'
  ORDER BY grp, key DESC, ord
),
fd AS (
  SELECT DISTINCT ON (e.grp, d.key) e.grp, d.key AS name, d.value, e.key, e.type, e.version
  FROM evx e JOIN input i USING (ord) CROSS JOIN LATERAL jsonb_each(i.data) d
  WHERE e.has_data AND e.outcome IN ('applied', 'stale')
  ORDER BY e.grp, d.key, e.key DESC, e.ord
),
fdelta AS (
  SELECT fd.grp, jsonb_object_agg(fd.name, jsonb_build_object('v', fd.value, 'k', fd.key, 'e', fd.type, 'n', fd.version)) AS fields
  FROM fd LEFT JOIN base b USING (grp)
  WHERE b.fields IS NULL OR NOT (b.fields ? fd.name) OR fd.key > (b.fields -> fd.name ->> 'k')::bigint
  GROUP BY fd.grp
),
ent AS (
  SELECT grp, bool_or(row_exists) AS row_exists, min(row_merchant) AS row_merchant,
         min(owner) AS owner, count(*) FILTER (WHERE anomaly)::int AS anomalies
  FROM evx GROUP BY grp
),
delta AS (
  SELECT n.grp, s.machine, s.entity_id, n.row_exists, n.owner, n.anomalies,
         t.type, t.key, t.version, t.target, f.fields
  FROM ent n
  JOIN ents s USING (grp)
  LEFT JOIN top t USING (grp)
  LEFT JOIN fdelta f USING (grp)
  WHERE t.grp IS NOT NULL OR f.grp IS NOT NULL OR (n.row_merchant IS NULL AND n.owner IS NOT NULL)
),
upd AS (
  UPDATE entity e SET
    status = coalesce(d.target, e.status),
    last_event = coalesce(d.type, e.last_event),
    key = coalesce(d.key, e.key),
    version = CASE WHEN d.type IS NULL THEN e.version ELSE d.version END,
    merchant_id = coalesce(e.merchant_id, d.owner),
    fields = CASE WHEN d.fields IS NULL THEN e.fields ELSE e.fields || d.fields END,
    anomalies = e.anomalies + d.anomalies,
    updated_at = now(),
    change_xid = pg_current_xact_id() -- change feed position (docs/design.md#changes)
  FROM delta d
  WHERE d.row_exists AND e.machine = d.machine AND e.entity_id = d.entity_id
    -- The same rows again, as arrays the primary key can look up, so the planner reads the rows
    -- that change instead of hashing the whole table.
    AND e.machine = ANY (ARRAY(SELECT DISTINCT machine FROM delta WHERE row_exists))
    AND e.entity_id = ANY (ARRAY(SELECT entity_id FROM delta WHERE row_exists))
),
ins AS (
  INSERT INTO entity (machine, entity_id, status, last_event, key, version, merchant_id, fields, anomalies,
                      change_xid) -- change feed position (docs/design.md#changes)
  SELECT d.machine, d.entity_id, d.target, d.type, d.key, d.version, d.owner, coalesce(d.fields, '{}'), d.anomalies,
         pg_current_xact_id()
  FROM delta d WHERE NOT d.row_exists AND d.type IS NOT NULL
  ORDER BY d.grp
  ON CONFLICT (machine, entity_id) DO NOTHING
  RETURNING 1
),
logged AS (
  INSERT INTO event_log (machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at,
                         outcome, anomaly, job_id)
  SELECT i.machine, i.entity_id, i.type, i.version, i.event_id, i.source, i.merchant_id, i.data, i.occurred_at,
         e.outcome, e.anomaly, i.job_id
  FROM evx e JOIN input i USING (ord) ORDER BY e.idx
),
guard AS (
  SELECT promosync_require(
    (SELECT count(*) FROM ins) = (SELECT count(*) FROM delta WHERE NOT row_exists AND type IS NOT NULL),
    'an entity of this batch was created concurrently') AS ok
)
SELECT e.idx, e.outcome, e.anomaly, coalesce(t.target, e.row_status) AS status
FROM evx e
LEFT JOIN top t USING (grp)
CROSS JOIN guard
ORDER BY e.idx
`;
