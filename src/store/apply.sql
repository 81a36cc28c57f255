-- The apply statement: the apply rule (docs/design.md#apply-rule) for a whole batch, in one
-- atomic statement. src/store/apply-sql.ts loads this file once and fills in the placeholders
-- in double braces: events, entities, claims and machines with the parameters below (generated
-- from the same column lists that build their values); rank_of_key, field_entry and field_key
-- with SQL from the codecs in src/domain (ordering.ts, stored-fields.ts); admin_source with the
-- source of admin keys' events (src/domain/ownership.ts).
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
--   $14  grp          int[]          the entity's group number: its 0-based position in $18/$19
--   $15  first        bool[]         first event of the batch with its (source, eventId)
--   $16  content_hash text[]         what the event says (src/domain/content-hash.ts), if it has an eventId
--   $17  grants       text[]         array literal of the owners the sending key may write for, or NULL
--   $18  machine      text[]         per entity, in group order
--   $19  entity_id    text[]         per entity, in group order
--   $20  source       text[]         per idempotency key to claim, sorted by (source, event_id)
--   $21  event_id     text[]         per idempotency key to claim
--   $22  content_hash text[]         per idempotency key to claim: its first event's hash
--   $23  machines     jsonb          per machine: ordering, targets by rank, reachable states
--
-- Everything the statement sorts or joins on is a small integer, and its locks follow one
-- order in every worker. Steps:
--  1. `fresh_ids` claims idempotency keys; an event whose (source, eventId) was claimed
--     before, by an earlier batch or earlier in this one, is a duplicate, or a conflict when
--     it says something else than the claim's first event (`id_refs`).
--  2. `current_rows` reads the touched rows without locking. Keys only grow, so an event that
--     loses against this snapshot loses for good: such rows are neither locked nor written.
--  3. `locked_rows` locks the remaining rows in group order, so concurrent batches wait on each
--     other instead of deadlocking, and reads their latest version.
--  4. `event_rows` … `event_results` replay the batch per entity in arrival order with window
--     functions: the owning source (docs/design.md#ownership), the entity's field limits
--     (`field_writes` … `held_back`, docs/design.md#attribute-limits), the outcome of each event
--     against the row and the events before it, and anomalies. Stored fields are compared with
--     the batch's by joining names (`current_fields`, `before_fields`): each row read once. When the owner moves to another source,
--     `refold` asks the caller to recompute the row from its log in the same transaction.
--  5. `row_changes` folds each entity's events: the winning status and, per field, the value of
--     the highest-keyed event that carries it (last-writer-wins by key).
--  6. `updated`/`inserted` write only rows that change; `logged` writes every event to the log.
--  7. If another batch created one of our new rows meanwhile, `promosync_require` aborts
--     the statement with serialization_failure and the caller runs it again (counted in
--     promosync_apply_retries_total by the messages of CONCURRENT in apply-sql.ts).
WITH
machines AS (SELECT {{machines}} AS j),
events AS (
  SELECT u.ord::int AS ord, u.idx, u.grp, u.first, u.machine, u.entity_id, u.type, u.key, u.version,
         u.event_id, u.source, u.merchant_id, u.data::jsonb AS data, u.target, u.occurred_at, u.job_id,
         u.content_hash, u.grants::text[] AS grants
  FROM {{events}}
),
entities AS (
  SELECT (u.ord - 1)::int AS grp, u.machine, u.entity_id
  FROM {{entities}}
),
claims AS (
  SELECT k.source, k.event_id, k.content_hash FROM {{claims}}
),
fresh_ids AS (
  INSERT INTO event_key (source, event_id, content_hash)
  SELECT source, event_id, content_hash FROM claims
  ON CONFLICT DO NOTHING
  RETURNING source, event_id
),
id_refs AS (
  -- Per id of the batch, the hash of the event that claimed it: this batch's first one when the
  -- claim is new, else the stored one (NULL for ids claimed before hashes were kept). An id a
  -- concurrent batch claimed after this statement's snapshot is not found (`known` false), and
  -- the guard has the statement run again, when it can be read.
  SELECT k.source, k.event_id,
         CASE WHEN f.event_id IS NOT NULL THEN k.content_hash ELSE s.content_hash END AS ref_hash,
         (f.event_id IS NOT NULL OR s.found IS NOT NULL) AS known
  FROM claims k
  LEFT JOIN fresh_ids f USING (source, event_id)
  LEFT JOIN LATERAL (
    SELECT ek.content_hash, true AS found FROM event_key ek
    WHERE f.event_id IS NULL AND ek.source = k.source AND ek.event_id = k.event_id OFFSET 0) s ON true
),
data_fields AS (
  -- Every field the batch's events carry, with its writer's key and its size (docs/design.md#attribute-limits).
  SELECT i.ord, i.grp, i.key, d.key AS name, d.value, {{field_bytes(d.key, d.value)}} AS bytes
  FROM events i CROSS JOIN LATERAL jsonb_each(i.data) d
  WHERE i.data IS NOT NULL
),
current_rows AS (
  -- One primary-key lookup per entity (OFFSET 0 keeps the planner from hashing the whole table).
  SELECT n.grp, e.status, e.key, e.merchant_id, e.owner_source, e.owner_key, e.fields
  FROM entities n CROSS JOIN LATERAL (
    SELECT e.status, e.key, e.merchant_id, e.owner_source, e.owner_key, e.fields FROM entity e
    WHERE e.machine = n.machine AND e.entity_id = n.entity_id OFFSET 0) e
),
current_fields AS (
  -- The stored fields of the rows the batch carries fields for, each row's jsonb read once and
  -- joined by name (looking fields up one by one reads the whole row each time: quadratic).
  SELECT c.grp, f.key AS name, {{field_key(f.value)}} AS key, {{stored_field_bytes(f.key, f.value)}} AS bytes
  FROM current_rows c CROSS JOIN LATERAL jsonb_each(c.fields) f
  WHERE c.grp IN (SELECT grp FROM data_fields)
),
to_lock AS (
  -- Entities some event of the batch may change.
  SELECT DISTINCT c.grp
  FROM current_rows c JOIN events i USING (grp)
  WHERE i.key > c.key
     OR (c.merchant_id IS NULL AND i.merchant_id IS NOT NULL)
     -- An event sets a field the row lacks or holds with a lower key.
     OR c.grp IN (SELECT d.grp FROM data_fields d LEFT JOIN current_fields f USING (grp, name)
                  WHERE f.name IS NULL OR d.key > f.key)
     -- The event would own the entity (its key comes first, or nobody owns it yet).
     OR (i.source <> {{admin_source}} AND (c.owner_source IS NULL
         OR (lpad(i.key::text, 19, '0') || i.source) COLLATE "C" < (lpad(c.owner_key::text, 19, '0') || c.owner_source) COLLATE "C"))
),
locked_rows AS (
  SELECT n.grp, e.status, e.key, e.merchant_id, e.owner_source, e.owner_key, e.fields
  FROM entities n JOIN to_lock USING (grp) CROSS JOIN LATERAL (
    SELECT e.status, e.key, e.merchant_id, e.owner_source, e.owner_key, e.fields FROM entity e
    WHERE e.machine = n.machine AND e.entity_id = n.entity_id OFFSET 0 FOR UPDATE) e
  ORDER BY n.grp
),
rows_before AS (
  -- Each existing row as the batch meets it: locked and re-read, or unlocked when nothing changes it.
  SELECT * FROM locked_rows
  UNION ALL
  SELECT c.* FROM current_rows c WHERE NOT EXISTS (SELECT 1 FROM to_lock WHERE to_lock.grp = c.grp)
),
before_fields AS (
  -- The fields of each row as the batch meets it (see rows_before), where the batch carries fields.
  SELECT l.grp, f.key AS name, {{field_key(f.value)}} AS key, {{stored_field_bytes(f.key, f.value)}} AS bytes
  FROM locked_rows l CROSS JOIN LATERAL jsonb_each(l.fields) f
  WHERE l.grp IN (SELECT grp FROM data_fields)
  UNION ALL
  SELECT c.grp, c.name, c.key, c.bytes FROM current_fields c WHERE c.grp NOT IN (SELECT grp FROM to_lock)
),
event_rows AS (
  -- Each event with its row, whether its (source, eventId) is new, and whether it is a
  -- conflict: an id seen before with other content.
  SELECT i.ord, i.idx, i.grp, i.machine, i.type, i.key, i.version, i.merchant_id, i.target, i.source, i.grants,
         i.data IS NOT NULL AS has_data,
         b.status AS row_status, b.key AS row_key, b.merchant_id AS row_merchant,
         b.owner_source AS row_owner, b.owner_key AS row_owner_key,
         (b.grp IS NOT NULL) AS row_exists,
         (i.event_id IS NULL OR (i.first AND f.event_id IS NOT NULL)) AS fresh,
         coalesce(r.ref_hash <> i.content_hash, false) AS conflict
  FROM events i
  LEFT JOIN rows_before b USING (grp)
  LEFT JOIN fresh_ids f ON f.source = i.source AND f.event_id = i.event_id
  LEFT JOIN id_refs r ON r.source = i.source AND r.event_id = i.event_id
),
event_sources AS (
  -- The owning source: of the row's owner and the batch's fresh events, the one with the
  -- lowest (key, source), both packed into one text so min() finds it (keys have at most 19
  -- digits; sources compare as bytes, as src/domain/ownership.ts compares them, whatever the
  -- database's collation). Admin events never own. It does not depend on the order within the batch.
  SELECT event_rows.*,
         least(CASE WHEN row_owner IS NOT NULL THEN (lpad(row_owner_key::text, 19, '0') || row_owner) COLLATE "C" END,
               min((lpad(key::text, 19, '0') || source) COLLATE "C") FILTER (WHERE fresh AND source <> {{admin_source}})
                 OVER (PARTITION BY grp)) AS owner_pick
  FROM event_rows
),
event_source_ok AS (
  -- Whether the event may act for the owner: its own, granted to its key, or an admin's.
  SELECT s.*, s.owner_src IS NULL OR s.source = s.owner_src OR s.source = {{admin_source}}
                OR coalesce(s.owner_src = ANY (s.grants), false) AS source_ok
  FROM (SELECT event_sources.*, substr(owner_pick, 20) AS owner_src, substr(owner_pick, 1, 19)::bigint AS owner_src_key
        FROM event_sources) s
),
field_writes AS (
  -- The fields the events the owner accepts may write: those that beat the row's writer of the
  -- field. Writes that lose to the row cannot grow it; those of events rejected later for their
  -- merchant, or duplicates by key, are counted although they write nothing (a safe excess).
  -- Where the owner moves, the row is recomputed from its log (`refold`), which holds the
  -- events to the limits itself.
  SELECT d.ord, d.grp, d.name, d.bytes
  FROM data_fields d JOIN event_source_ok s USING (ord)
  LEFT JOIN before_fields b ON b.grp = d.grp AND b.name = d.name
  WHERE s.fresh AND s.source_ok AND (b.name IS NULL OR d.key > b.key)
    AND NOT (s.row_exists AND s.row_owner IS NOT NULL AND s.owner_src <> s.row_owner)
),
field_totals AS (
  -- Per entity, its fields and their size if every such write were kept, each field counted at
  -- its largest value: a bound of its size at every point of the batch.
  SELECT t.grp, count(*) AS fields, sum(t.bytes) AS bytes
  FROM (SELECT grp, name, max(bytes) AS bytes
        FROM (SELECT grp, name, bytes FROM before_fields WHERE grp IN (SELECT grp FROM field_writes)
              UNION ALL SELECT grp, name, bytes FROM field_writes) a
        GROUP BY grp, name) t
  GROUP BY t.grp
),
over_limits AS (
  -- The entities where keeping every write would pass a limit of their machine.
  SELECT l.* FROM (
    SELECT t.grp, t.fields, t.bytes, (m.j -> n.machine ->> 'maxFields')::bigint AS max_fields,
           (m.j -> n.machine ->> 'maxFieldBytes')::bigint AS max_bytes
    FROM field_totals t JOIN entities n USING (grp) CROSS JOIN machines m) l
  WHERE l.fields > l.max_fields OR l.bytes > l.max_bytes
),
held_back AS (
  -- There, the writes replayed in arrival order: each event that would grow the entity past a
  -- limit is rejected, whole, and its writes are not counted further.
  SELECT q.ord, {{field_limit_reason(q.over_fields, q.fields, q.bytes, o.max_fields, o.max_bytes)}} AS reason
  FROM over_limits o
  JOIN (SELECT grp, jsonb_agg(jsonb_build_array(ord, sizes) ORDER BY ord) AS writes
        FROM (SELECT w.grp, w.ord, jsonb_object_agg(w.name, w.bytes) AS sizes
              FROM field_writes w JOIN over_limits USING (grp) GROUP BY w.grp, w.ord) e
        GROUP BY grp) w USING (grp)
  LEFT JOIN (SELECT b.grp, jsonb_object_agg(b.name, b.bytes) AS sizes
             FROM before_fields b JOIN over_limits USING (grp) GROUP BY b.grp) r USING (grp)
  CROSS JOIN LATERAL promosync_field_quota(r.sizes, w.writes, o.max_fields, o.max_bytes) q
),
event_fields_ok AS (
  SELECT s.*, h.ord IS NULL AS fields_ok, h.reason AS fields_reason
  FROM event_source_ok s LEFT JOIN held_back h USING (ord)
),
event_key_dups AS (
  -- Duplicates by key among fresh events the owner accepts within the field limits. Only events
  -- after the merchant is known can be rejected for it, so up to the event that sets it this
  -- equals the final replay.
  SELECT event_fields_ok.*,
         coalesce(fresh AND fields_ok AND key = greatest(row_key, max(key) FILTER (WHERE fresh AND source_ok AND fields_ok) OVER (
            PARTITION BY grp ORDER BY ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)), false) AS key_dup
  FROM event_fields_ok
),
event_merchants AS (
  -- The merchant: the row's, else that of the first event that carries one and changes
  -- something. "First" is the lowest ord, packed in front of the merchant id so min() finds it.
  SELECT event_key_dups.*,
         coalesce(row_merchant, substr(min(lpad(ord::text, 10, '0') || merchant_id)
           FILTER (WHERE fresh AND source_ok AND fields_ok AND NOT key_dup) OVER (PARTITION BY grp), 11)) AS merchant
  FROM event_key_dups
),
event_valid AS (
  SELECT event_merchants.*,
         (fresh AND source_ok AND fields_ok
          AND NOT (merchant_id IS NOT NULL AND merchant IS NOT NULL AND merchant_id <> merchant)) AS valid
  FROM event_merchants
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
           WHEN NOT fresh AND conflict THEN 'conflict'
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
         END AS prev_status,
         CASE
           WHEN NOT fresh AND conflict THEN 'eventId seen before with other content'
           WHEN fresh AND NOT source_ok THEN 'owned by source ' || owner_src
           WHEN fresh AND NOT fields_ok THEN fields_reason
           WHEN fresh AND NOT valid THEN 'owned by merchant ' || merchant
         END AS reason
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
  SELECT DISTINCT ON (d.grp, d.name) d.grp, d.name, d.value, d.key, e.type, e.version
  FROM data_fields d JOIN event_results e USING (ord)
  WHERE e.outcome IN ('applied', 'stale')
  ORDER BY d.grp, d.name, d.key DESC, d.ord
),
field_changes AS (
  -- Per entity, the stored entries of the fields whose writer beats the row's.
  SELECT w.grp, jsonb_object_agg(w.name, {{field_entry(w.value, w.key, w.type, w.version)}}) AS fields
  FROM field_writers w LEFT JOIN before_fields b USING (grp, name)
  WHERE b.name IS NULL OR w.key > b.key
  GROUP BY w.grp
),
entity_summary AS (
  SELECT s.*,
         s.row_exists AND s.row_owner IS NOT NULL AND s.owner_src <> s.row_owner AS refold,
         (s.owner_src IS DISTINCT FROM s.row_owner OR s.owner_src_key IS DISTINCT FROM s.row_owner_key) AS owner_changed
  FROM (
    SELECT grp, bool_or(row_exists) AS row_exists, min(row_merchant) AS row_merchant,
           min(merchant) AS merchant, count(*) FILTER (WHERE anomaly)::int AS anomalies,
           min(row_owner) AS row_owner, min(row_owner_key) AS row_owner_key,
           min(owner_src) AS owner_src, min(owner_src_key) AS owner_src_key
    FROM event_results GROUP BY grp) s
),
row_changes AS (
  -- Per entity whose row changes: the new status, the changed fields, the owners, anomalies.
  SELECT n.grp, s.machine, s.entity_id, n.row_exists, n.merchant, n.owner_src, n.owner_src_key, n.anomalies,
         t.type, t.key, t.version, t.target, f.fields
  FROM entity_summary n
  JOIN entities s USING (grp)
  LEFT JOIN winners t USING (grp)
  LEFT JOIN field_changes f USING (grp)
  WHERE t.grp IS NOT NULL OR f.grp IS NOT NULL OR (n.row_merchant IS NULL AND n.merchant IS NOT NULL)
     OR n.owner_changed
),
updated AS (
  UPDATE entity e SET
    status = coalesce(d.target, e.status),
    last_event = coalesce(d.type, e.last_event),
    key = coalesce(d.key, e.key),
    version = CASE WHEN d.type IS NULL THEN e.version ELSE d.version END,
    merchant_id = coalesce(e.merchant_id, d.merchant),
    owner_source = d.owner_src,
    owner_key = d.owner_src_key,
    fields = CASE WHEN d.fields IS NULL THEN e.fields ELSE e.fields || d.fields END,
    anomalies = e.anomalies + d.anomalies,
    updated_at = now(),
    change_xid = pg_current_xact_id() -- the change feed's position (docs/design.md#changes)
  FROM row_changes d
  WHERE d.row_exists AND e.machine = d.machine AND e.entity_id = d.entity_id
    -- The same rows again, as arrays the primary key can look up, so the planner reads the rows
    -- that change instead of hashing the whole table.
    AND e.machine = ANY (ARRAY(SELECT DISTINCT machine FROM row_changes WHERE row_exists))
    AND e.entity_id = ANY (ARRAY(SELECT entity_id FROM row_changes WHERE row_exists))
),
inserted AS (
  INSERT INTO entity (machine, entity_id, status, last_event, key, version, merchant_id, fields, anomalies,
                      owner_source, owner_key, change_xid)
  SELECT d.machine, d.entity_id, d.target, d.type, d.key, d.version, d.merchant, coalesce(d.fields, '{}'), d.anomalies,
         d.owner_src, d.owner_src_key, pg_current_xact_id()
  FROM row_changes d WHERE NOT d.row_exists AND d.type IS NOT NULL
  ORDER BY d.grp
  ON CONFLICT (machine, entity_id) DO NOTHING
  RETURNING 1
),
logged AS (
  INSERT INTO event_log (machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at,
                         outcome, reason, anomaly, job_id, may_write_for)
  SELECT i.machine, i.entity_id, i.type, i.version, i.event_id, i.source, i.merchant_id, i.data, i.occurred_at,
         e.outcome, e.reason, e.anomaly, i.job_id, i.grants
  FROM event_results e JOIN events i USING (ord) ORDER BY e.idx
),
guard AS (
  SELECT promosync_require(
    (SELECT count(*) FROM inserted) = (SELECT count(*) FROM row_changes WHERE NOT row_exists AND type IS NOT NULL),
    {{concurrent_create}}) AS ok,
    promosync_require((SELECT bool_and(known) FROM id_refs) IS NOT FALSE,
    {{concurrent_claim}}) AS ids_ok
)
SELECT e.idx, e.outcome, e.anomaly, coalesce(t.target, e.row_status) AS status, e.reason,
       CASE WHEN e.source = {{admin_source}} THEN e.owner_src END AS acted_for, s.refold
FROM event_results e
LEFT JOIN winners t USING (grp)
JOIN entity_summary s USING (grp)
CROSS JOIN guard
ORDER BY e.idx
