-- The apply statement: the apply rule (docs/design.md#apply-rule) for a whole batch, in one
-- atomic statement. src/store/apply-sql.ts loads this file once and fills in the placeholders
-- in double braces: events, entities, claims and machines with the parameters below (generated
-- from the same column lists that build their values); rank_of_key, field_entry and field_key
-- with SQL from the codecs in src/domain (ordering.ts, stored-fields.ts).
--
-- Parameters: one array element per event, in the order the caller sorts them (grouped by
-- entity, entities by (machine, entity_id), arrival order within each entity), except where
-- noted. A test holds this table to the column lists.
--
--   $1   machine      text[]         the event's machine
--   $2   entity_id    text[]
--   $3   type         text[]         event type
--   $4   key          bigint[]       ordering key (docs/design.md#ordering-key)
--   $5   version      bigint[]       producer version, or NULL
--   $6   event_id     text[]         producer's eventId, or NULL
--   $7   source       text[]
--   $8   merchant_id  text[]         or NULL
--   $9   data         text[]         JSON of the non-null fields, or NULL
--   $10  target       text[]         the state the event type leads to
--   $11  occurred_at  timestamptz[]  or NULL
--   $12  job_id       text[]         the job that carried the event, or NULL
--   $13  idx          int[]          arrival index in the batch (results come back in this order)
--   $14  grp          int[]          the entity's group number: its 0-based position in $15/$16
--   $15  first        bool[]         first event of the batch with its (source, eventId)
--   $16  machine      text[]         per entity, in group order
--   $17  entity_id    text[]         per entity, in group order
--   $18  source       text[]         per idempotency key to claim, sorted by (source, event_id)
--   $19  event_id     text[]         per idempotency key to claim
--   $20  machines     jsonb          per machine: ordering, targets by rank, reachable states
--
-- Everything the statement sorts or joins on is a small integer, and its locks follow one
-- order in every worker. Steps:
--  1. `fresh_ids` claims idempotency keys; an event whose (source, eventId) was claimed
--     before, by an earlier batch or earlier in this one, is a duplicate.
--  2. `current_rows` reads the touched rows without locking. Keys only grow, so an event that
--     loses against this snapshot loses for good: such rows are neither locked nor written.
--  3. `locked_rows` locks the remaining rows in group order, so concurrent batches wait on each
--     other instead of deadlocking, and reads their latest version.
--  4. `event_rows` … `event_results` replay the batch per entity in arrival order with window
--     functions: the outcome of each event against the row and the events before it, and anomalies.
--  5. `row_changes` folds each entity's events: the winning status and, per field, the value of
--     the highest-keyed event that carries it (last-writer-wins by key).
--  6. `updated`/`inserted` write only rows that change; `logged` writes every event to the log.
--  7. If another batch created one of our new rows meanwhile, `promosync_require` aborts
--     the statement with serialization_failure and the caller runs it again.
WITH
machines AS (SELECT {{machines}} AS j),
events AS (
  SELECT u.ord::int AS ord, u.idx, u.grp, u.first, u.machine, u.entity_id, u.type, u.key, u.version,
         u.event_id, u.source, u.merchant_id, u.data::jsonb AS data, u.target, u.occurred_at, u.job_id
  FROM {{events}}
),
entities AS (
  SELECT (u.ord - 1)::int AS grp, u.machine, u.entity_id
  FROM {{entities}}
),
fresh_ids AS (
  INSERT INTO event_key (source, event_id)
  SELECT source, event_id FROM {{claims}}
  ON CONFLICT DO NOTHING
  RETURNING source, event_id
),
current_rows AS (
  -- One primary-key lookup per entity (OFFSET 0 keeps the planner from hashing the whole table).
  SELECT n.grp, e.status, e.key, e.merchant_id, e.fields
  FROM entities n CROSS JOIN LATERAL (
    SELECT e.status, e.key, e.merchant_id, e.fields FROM entity e
    WHERE e.machine = n.machine AND e.entity_id = n.entity_id OFFSET 0) e
),
to_lock AS (
  -- Entities some event of the batch may change.
  SELECT DISTINCT c.grp
  FROM current_rows c JOIN events i USING (grp)
  WHERE i.key > c.key
     OR (c.merchant_id IS NULL AND i.merchant_id IS NOT NULL)
     OR (i.data IS NOT NULL AND promosync_fields_win(c.fields, i.data, i.key))
),
locked_rows AS (
  SELECT n.grp, e.status, e.key, e.merchant_id, e.fields
  FROM entities n JOIN to_lock USING (grp) CROSS JOIN LATERAL (
    SELECT e.status, e.key, e.merchant_id, e.fields FROM entity e
    WHERE e.machine = n.machine AND e.entity_id = n.entity_id OFFSET 0 FOR UPDATE) e
  ORDER BY n.grp
),
rows_before AS (
  -- Each existing row as the batch meets it: locked and re-read, or unlocked when nothing changes it.
  SELECT * FROM locked_rows
  UNION ALL
  SELECT c.* FROM current_rows c WHERE NOT EXISTS (SELECT 1 FROM to_lock WHERE to_lock.grp = c.grp)
),
event_rows AS (
  -- Each event with its row, and whether its (source, eventId) is new.
  SELECT i.ord, i.idx, i.grp, i.machine, i.type, i.key, i.version, i.merchant_id, i.target,
         i.data IS NOT NULL AS has_data,
         b.status AS row_status, b.key AS row_key, b.merchant_id AS row_merchant,
         (b.grp IS NOT NULL) AS row_exists,
         (i.event_id IS NULL OR (i.first AND f.event_id IS NOT NULL)) AS fresh
  FROM events i
  LEFT JOIN rows_before b USING (grp)
  LEFT JOIN fresh_ids f ON f.source = i.source AND f.event_id = i.event_id
),
event_key_dups AS (
  -- Duplicates by key among fresh events. Only events after the owner is known can be
  -- rejected, so up to the event that sets the owner this equals the final replay.
  SELECT event_rows.*,
         coalesce(fresh AND key = greatest(row_key, max(key) FILTER (WHERE fresh) OVER (
            PARTITION BY grp ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)), false) AS key_dup
  FROM event_rows
),
event_owners AS (
  -- The owner: the row's merchant, else that of the first event that carries one and changes
  -- something. "First" is the lowest ord, packed in front of the merchant id so min() finds it.
  SELECT event_key_dups.*,
         coalesce(row_merchant, substr(min(lpad(ord::text, 10, '0') || merchant_id)
           FILTER (WHERE fresh AND NOT key_dup) OVER (PARTITION BY grp), 11)) AS owner
  FROM event_key_dups
),
event_valid AS (
  SELECT event_owners.*,
         (fresh AND NOT (merchant_id IS NOT NULL AND owner IS NOT NULL AND merchant_id <> owner)) AS valid
  FROM event_owners
),
event_prev AS (
  -- The highest key of the entity's valid events before this one in the batch.
  SELECT event_valid.*,
         max(key) FILTER (WHERE valid) OVER (
           PARTITION BY grp ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS batch_prev
  FROM event_valid
),
event_outcomes AS (
  SELECT event_prev.*,
         CASE
           WHEN NOT fresh THEN 'duplicate'
           WHEN NOT valid THEN 'rejected'
           WHEN greatest(row_key, batch_prev) IS NULL OR key > greatest(row_key, batch_prev) THEN 'applied'
           WHEN key = greatest(row_key, batch_prev) THEN 'duplicate'
           ELSE 'stale'
         END AS outcome,
         CASE
           WHEN batch_prev IS NOT NULL AND (row_key IS NULL OR batch_prev > row_key) THEN
             (SELECT m.j -> event_prev.machine -> 'targets' ->> (
                CASE WHEN m.j -> event_prev.machine ->> 'ordering' = 'version'
                     THEN {{rank_of_key(version, batch_prev)}}
                     ELSE {{rank_of_key(rank, batch_prev)}} END)::text FROM machines m)
           ELSE row_status
         END AS prev_status
  FROM event_prev
),
event_results AS (
  SELECT event_outcomes.*,
         (outcome = 'applied' AND prev_status IS NOT NULL AND NOT coalesce(
            (SELECT (m.j -> event_outcomes.machine -> 'reach' -> event_outcomes.prev_status) ? event_outcomes.target
             FROM machines m), false)) AS anomaly
  FROM event_outcomes
),
winners AS (
  -- Per entity, the highest-keyed applied event: the row's new status.
  SELECT DISTINCT ON (grp) grp, type, key, version, target
  FROM event_results WHERE outcome = 'applied'
  ORDER BY grp, key DESC, ord
),
field_writers AS (
  -- Per entity and field, the highest-keyed event of the batch that carries it.
  SELECT DISTINCT ON (e.grp, d.key) e.grp, d.key AS name, d.value, e.key, e.type, e.version
  FROM event_results e JOIN events i USING (ord) CROSS JOIN LATERAL jsonb_each(i.data) d
  WHERE e.has_data AND e.outcome IN ('applied', 'stale')
  ORDER BY e.grp, d.key, e.key DESC, e.ord
),
field_changes AS (
  -- Per entity, the stored entries of the fields whose writer beats the row's.
  SELECT w.grp, jsonb_object_agg(w.name, {{field_entry(w.value, w.key, w.type, w.version)}}) AS fields
  FROM field_writers w LEFT JOIN rows_before b USING (grp)
  WHERE b.fields IS NULL OR NOT (b.fields ? w.name) OR w.key > {{field_key(b.fields -> w.name)}}
  GROUP BY w.grp
),
entity_summary AS (
  SELECT grp, bool_or(row_exists) AS row_exists, min(row_merchant) AS row_merchant,
         min(owner) AS owner, count(*) FILTER (WHERE anomaly)::int AS anomalies
  FROM event_results GROUP BY grp
),
row_changes AS (
  -- Per entity whose row changes: the new status, the changed fields, the owner, anomalies.
  SELECT n.grp, s.machine, s.entity_id, n.row_exists, n.owner, n.anomalies,
         t.type, t.key, t.version, t.target, f.fields
  FROM entity_summary n
  JOIN entities s USING (grp)
  LEFT JOIN winners t USING (grp)
  LEFT JOIN field_changes f USING (grp)
  WHERE t.grp IS NOT NULL OR f.grp IS NOT NULL OR (n.row_merchant IS NULL AND n.owner IS NOT NULL)
),
updated AS (
  UPDATE entity e SET
    status = coalesce(d.target, e.status),
    last_event = coalesce(d.type, e.last_event),
    key = coalesce(d.key, e.key),
    version = CASE WHEN d.type IS NULL THEN e.version ELSE d.version END,
    merchant_id = coalesce(e.merchant_id, d.owner),
    fields = CASE WHEN d.fields IS NULL THEN e.fields ELSE e.fields || d.fields END,
    anomalies = e.anomalies + d.anomalies,
    updated_at = now()
  FROM row_changes d
  WHERE d.row_exists AND e.machine = d.machine AND e.entity_id = d.entity_id
    -- The same rows again, as arrays the primary key can look up, so the planner reads the rows
    -- that change instead of hashing the whole table.
    AND e.machine = ANY (ARRAY(SELECT DISTINCT machine FROM row_changes WHERE row_exists))
    AND e.entity_id = ANY (ARRAY(SELECT entity_id FROM row_changes WHERE row_exists))
),
inserted AS (
  INSERT INTO entity (machine, entity_id, status, last_event, key, version, merchant_id, fields, anomalies)
  SELECT d.machine, d.entity_id, d.target, d.type, d.key, d.version, d.owner, coalesce(d.fields, '{}'), d.anomalies
  FROM row_changes d WHERE NOT d.row_exists AND d.type IS NOT NULL
  ORDER BY d.grp
  ON CONFLICT (machine, entity_id) DO NOTHING
  RETURNING 1
),
logged AS (
  INSERT INTO event_log (machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at,
                         outcome, anomaly, job_id)
  SELECT i.machine, i.entity_id, i.type, i.version, i.event_id, i.source, i.merchant_id, i.data, i.occurred_at,
         e.outcome, e.anomaly, i.job_id
  FROM event_results e JOIN events i USING (ord) ORDER BY e.idx
),
guard AS (
  SELECT promosync_require(
    (SELECT count(*) FROM inserted) = (SELECT count(*) FROM row_changes WHERE NOT row_exists AND type IS NOT NULL),
    'an entity of this batch was created concurrently') AS ok
)
SELECT e.idx, e.outcome, e.anomaly, coalesce(t.target, e.row_status) AS status
FROM event_results e
LEFT JOIN winners t USING (grp)
CROSS JOIN guard
ORDER BY e.idx
