/**
 * The apply statement: SPEC §3 for a whole batch, in one atomic statement.
 *
 * Parameters are parallel arrays, one element per event in arrival order ($1–$12), and
 * $13, the machines' targets-by-rank and reachability as JSON. Steps:
 *  1. `fresh_ids` claims idempotency keys; an event whose (source, eventId) was claimed
 *     before, by an earlier batch or earlier in this one, is a duplicate.
 *  2. `cur` reads the touched rows without locking. Keys only grow, so an event that loses
 *     against this snapshot loses for good: such rows are neither locked nor written.
 *  3. `locked` locks the remaining rows in (machine, entity_id) order, so concurrent
 *     batches wait on each other instead of deadlocking, and reads their latest version.
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
  SELECT u.ord::int AS idx, u.machine, u.entity_id, u.type, u.key, u.version, u.event_id, u.source,
         u.merchant_id, u.data::jsonb AS data, u.target, u.occurred_at, u.job_id
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
              $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[])
       WITH ORDINALITY AS u(machine, entity_id, type, key, version, event_id, source, merchant_id, data,
                            target, occurred_at, job_id, ord)
),
fresh_ids AS (
  INSERT INTO event_key (source, event_id)
  SELECT DISTINCT source, event_id FROM input WHERE event_id IS NOT NULL
  ORDER BY source, event_id
  ON CONFLICT DO NOTHING
  RETURNING source, event_id
),
cur AS (
  SELECT e.machine, e.entity_id, e.status, e.key, e.merchant_id, e.fields
  FROM entity e
  WHERE (e.machine, e.entity_id) IN (SELECT machine, entity_id FROM input)
),
cand AS (
  SELECT DISTINCT c.machine, c.entity_id
  FROM input i JOIN cur c USING (machine, entity_id)
  WHERE i.key > c.key
     OR (c.merchant_id IS NULL AND i.merchant_id IS NOT NULL)
     OR (i.data IS NOT NULL AND promosync_fields_win(c.fields, i.data, i.key))
),
locked AS (
  SELECT e.machine, e.entity_id, e.status, e.key, e.merchant_id, e.fields
  FROM entity e JOIN cand USING (machine, entity_id)
  ORDER BY e.machine, e.entity_id
  FOR UPDATE OF e
),
base AS (
  SELECT * FROM locked
  UNION ALL
  SELECT c.* FROM cur c WHERE NOT EXISTS (SELECT 1 FROM cand WHERE cand.machine = c.machine AND cand.entity_id = c.entity_id)
),
ev1 AS (
  SELECT i.*, b.status AS row_status, b.key AS row_key, b.merchant_id AS row_merchant, b.fields AS row_fields,
         (b.entity_id IS NOT NULL) AS row_exists,
         (i.event_id IS NULL OR (f.event_id IS NOT NULL
            AND i.idx = min(i.idx) OVER (PARTITION BY i.source, i.event_id))) AS fresh
  FROM input i
  LEFT JOIN base b USING (machine, entity_id)
  LEFT JOIN fresh_ids f ON f.source = i.source AND f.event_id = i.event_id
),
ev1k AS (
  -- Duplicates by key among fresh events. Only events after the owner is known can be
  -- rejected, so up to the event that sets the owner this equals the final replay.
  SELECT ev1.*,
         coalesce(fresh AND key = greatest(row_key, max(key) FILTER (WHERE fresh) OVER (
            PARTITION BY machine, entity_id ORDER BY idx ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)), false) AS key_dup
  FROM ev1
),
ev2 AS (
  -- The owner: the row's merchant, else that of the first event that carries one and changes something.
  SELECT ev1k.*,
         coalesce(row_merchant, first_value(CASE WHEN fresh AND NOT key_dup THEN merchant_id END) OVER (
           PARTITION BY machine, entity_id ORDER BY (fresh AND NOT key_dup AND merchant_id IS NOT NULL) DESC, idx
           ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) AS owner
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
           PARTITION BY machine, entity_id ORDER BY idx ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS batch_prev
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
  SELECT DISTINCT ON (machine, entity_id) machine, entity_id, type, key, version, target
  FROM evx WHERE outcome = 'applied'
  ORDER BY machine, entity_id, key DESC, idx
),
fd AS (
  SELECT DISTINCT ON (e.machine, e.entity_id, d.key)
         e.machine, e.entity_id, d.key AS name, d.value, e.key, e.type, e.version, e.row_fields
  FROM evx e CROSS JOIN LATERAL jsonb_each(e.data) d
  WHERE e.outcome IN ('applied', 'stale') AND e.data IS NOT NULL
  ORDER BY e.machine, e.entity_id, d.key, e.key DESC, e.idx
),
fdelta AS (
  SELECT machine, entity_id,
         jsonb_object_agg(name, jsonb_build_object('v', value, 'k', key, 'e', type, 'n', version)) AS fields
  FROM fd
  WHERE row_fields IS NULL OR NOT (row_fields ? name) OR key > (row_fields -> name ->> 'k')::bigint
  GROUP BY machine, entity_id
),
ent AS (
  SELECT machine, entity_id, bool_or(row_exists) AS row_exists, min(row_merchant) AS row_merchant,
         min(owner) AS owner, count(*) FILTER (WHERE anomaly)::int AS anomalies
  FROM evx GROUP BY machine, entity_id
),
delta AS (
  SELECT n.machine, n.entity_id, n.row_exists, n.owner, n.anomalies,
         t.type, t.key, t.version, t.target, f.fields
  FROM ent n
  LEFT JOIN top t USING (machine, entity_id)
  LEFT JOIN fdelta f USING (machine, entity_id)
  WHERE t.entity_id IS NOT NULL OR f.entity_id IS NOT NULL OR (n.row_merchant IS NULL AND n.owner IS NOT NULL)
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
    updated_at = now()
  FROM delta d
  WHERE d.row_exists AND e.machine = d.machine AND e.entity_id = d.entity_id
  RETURNING e.machine, e.entity_id, e.status
),
ins AS (
  INSERT INTO entity (machine, entity_id, status, last_event, key, version, merchant_id, fields, anomalies)
  SELECT d.machine, d.entity_id, d.target, d.type, d.key, d.version, d.owner, coalesce(d.fields, '{}'), d.anomalies
  FROM delta d WHERE NOT d.row_exists AND d.type IS NOT NULL
  ORDER BY d.machine, d.entity_id
  ON CONFLICT (machine, entity_id) DO NOTHING
  RETURNING machine, entity_id, status
),
logged AS (
  INSERT INTO event_log (machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at,
                         outcome, anomaly, job_id)
  SELECT machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at, outcome, anomaly, job_id
  FROM evx ORDER BY idx
),
guard AS (
  SELECT promosync_require(
    (SELECT count(*) FROM ins) = (SELECT count(*) FROM delta WHERE NOT row_exists AND type IS NOT NULL),
    'an entity of this batch was created concurrently') AS ok
)
SELECT e.idx, e.outcome, e.anomaly, coalesce(u.status, n.status, e.row_status) AS status
FROM evx e
LEFT JOIN upd u USING (machine, entity_id)
LEFT JOIN ins n USING (machine, entity_id)
CROSS JOIN guard
ORDER BY e.idx
`;
