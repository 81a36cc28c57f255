import { readFileSync } from 'node:fs';
import type { MachineRegistry, Ordering, PreparedEvent } from '../domain/index.ts';
import {
  ADMIN_SOURCE,
  contentHash,
  sqlFieldBytes,
  sqlFieldEntry,
  sqlFieldKey,
  sqlFieldLimitReason,
  sqlFieldValue,
  sqlRankOfKey,
} from '../domain/index.ts';

/** An event on its way to the store, with the job that carried it. */
export interface BatchEvent {
  event: PreparedEvent;
  jobId: string | null;
}

type Cell = string | number | null;

/** One array parameter of the apply statement: its column name, element type and values. */
interface Column<R> {
  name: string;
  pgType: string;
  get(row: R): Cell;
}

/** An event as the statement receives it: in entity order, with its place in the batch. */
interface EventRow {
  event: PreparedEvent;
  jobId: string | null;
  /** Arrival index in the batch. */
  idx: number;
  /** The entity's group number (its position in the entity list). */
  grp: number;
  /** The first event of the batch with its (source, eventId). */
  first: boolean;
  /** {@link contentHash} of an event with an eventId, else null. */
  hash: string | null;
}

/** Per event: what `{{events}}` unnests. */
const EVENT_COLUMNS: readonly Column<EventRow>[] = [
  { name: 'machine', pgType: 'text', get: (r) => r.event.machine },
  { name: 'entity_id', pgType: 'text', get: (r) => r.event.entityId },
  { name: 'type', pgType: 'text', get: (r) => r.event.type },
  { name: 'key', pgType: 'bigint', get: (r) => r.event.key.toString() },
  { name: 'version', pgType: 'bigint', get: (r) => r.event.version },
  { name: 'event_id', pgType: 'text', get: (r) => r.event.eventId },
  { name: 'source', pgType: 'text', get: (r) => r.event.source },
  { name: 'merchant_id', pgType: 'text', get: (r) => r.event.merchantId },
  { name: 'data', pgType: 'text', get: (r) => (r.event.data === null ? null : JSON.stringify(r.event.data)) },
  { name: 'target', pgType: 'text', get: (r) => r.event.target },
  { name: 'occurred_at', pgType: 'timestamptz', get: (r) => r.event.occurredAt },
  { name: 'job_id', pgType: 'text', get: (r) => r.jobId },
  { name: 'idx', pgType: 'int', get: (r) => r.idx },
  { name: 'grp', pgType: 'int', get: (r) => r.grp },
  { name: 'first', pgType: 'bool', get: (r) => (r.first ? 't' : 'f') },
  { name: 'content_hash', pgType: 'text', get: (r) => r.hash },
  {
    name: 'grants',
    pgType: 'text',
    get: (r) => (r.event.mayWriteFor?.length ? arrayLiteral(r.event.mayWriteFor) : null),
  },
];

interface EntityRow {
  machine: string;
  entityId: string;
}

/** Per entity, in group order: what `{{entities}}` unnests. */
const ENTITY_COLUMNS: readonly Column<EntityRow>[] = [
  { name: 'machine', pgType: 'text', get: (r) => r.machine },
  { name: 'entity_id', pgType: 'text', get: (r) => r.entityId },
];

/** An idempotency key to claim: the first event of the batch with it, and its hash. */
interface ClaimRow {
  event: PreparedEvent;
  hash: string;
}

/** Per idempotency key to claim, sorted: what `{{claims}}` unnests. */
const CLAIM_COLUMNS: readonly Column<ClaimRow>[] = [
  { name: 'source', pgType: 'text', get: (c) => c.event.source },
  { name: 'event_id', pgType: 'text', get: (c) => c.event.eventId },
  { name: 'content_hash', pgType: 'text', get: (c) => c.hash },
];

/** Parameter numbers: the columns in this order, then the machines. */
const FIRST_EVENT = 1;
const FIRST_ENTITY = FIRST_EVENT + EVENT_COLUMNS.length;
const FIRST_CLAIM = FIRST_ENTITY + ENTITY_COLUMNS.length;
const MACHINES_PARAM = FIRST_CLAIM + CLAIM_COLUMNS.length;

/** Every parameter of the apply statement, in order (a test holds the table in apply.sql to it). */
export const APPLY_PARAMS: readonly { n: number; name: string; pgType: string }[] = [
  ...[...EVENT_COLUMNS, ...ENTITY_COLUMNS, ...CLAIM_COLUMNS].map((c, i) => ({
    n: FIRST_EVENT + i,
    name: c.name,
    pgType: `${c.pgType}[]`,
  })),
  { n: MACHINES_PARAM, name: 'machines', pgType: 'jsonb' },
];

/** `unnest($a::t[], …) [WITH ORDINALITY] AS alias(name, … [, ord])` for columns from parameter `first` on. */
function unnestSql<R>(
  columns: readonly Column<R>[],
  first: number,
  ordinality: boolean,
  alias: string,
): string {
  const args = columns.map((c, i) => `$${first + i}::${c.pgType}[]`).join(', ');
  const names = [...columns.map((c) => c.name), ...(ordinality ? ['ord'] : [])].join(', ');
  return `unnest(${args})${ordinality ? ' WITH ORDINALITY' : ''} AS ${alias}(${names})`;
}

/**
 * The messages the statement aborts with (serialization_failure, run again by the caller) when
 * a concurrent batch created one of its new rows, or claimed one of its eventIds, after its
 * snapshot was taken.
 */
export const CONCURRENT = {
  create: 'an entity of this batch was created concurrently',
  claim: 'an eventId of this batch was claimed concurrently',
} as const;

const PLACEHOLDERS: Record<string, (...args: string[]) => string> = {
  concurrent_create: () => `'${CONCURRENT.create}'`,
  concurrent_claim: () => `'${CONCURRENT.claim}'`,
  events: () => unnestSql(EVENT_COLUMNS, FIRST_EVENT, true, 'u'),
  entities: () => unnestSql(ENTITY_COLUMNS, FIRST_ENTITY, true, 'u'),
  claims: () => unnestSql(CLAIM_COLUMNS, FIRST_CLAIM, false, 'k'),
  machines: () => `$${MACHINES_PARAM}::jsonb`,
  admin_source: () => `'${ADMIN_SOURCE}'`,
  rank_of_key: (ordering, key) => sqlRankOfKey(ordering as Ordering, key!),
  field_entry: (value, key, event, version) => sqlFieldEntry(value!, key!, event!, version!),
  field_key: (entry) => sqlFieldKey(entry!),
  field_bytes: (name, value) => sqlFieldBytes(name!, value!),
  stored_field_bytes: (name, entry) => sqlFieldBytes(name!, sqlFieldValue(entry!)),
  field_limit_reason: (overFields, fields, bytes, maxFields, maxBytes) =>
    sqlFieldLimitReason(overFields!, fields!, bytes!, maxFields!, maxBytes!),
};

/**
 * The statement of `apply.sql` with its placeholders filled in. Its leading comment (the
 * parameter table) stays in the file: the server needs only the statement.
 * @throws Error on an unknown placeholder or a wrong number of arguments: a broken file must
 * fail at load, not on the first batch.
 */
export function renderApplySql(template: string): string {
  const body = template.replace(/^(?:--.*\n|\s*\n)*/, '');
  return body.replace(/\{\{(\w+)(?:\(([^)]*)\))?\}\}/g, (match, name: string, args: string | undefined) => {
    const fill = PLACEHOLDERS[name];
    const list = args === undefined ? [] : args.split(',').map((a) => a.trim());
    if (!fill || fill.length !== list.length) throw new Error(`apply.sql: bad placeholder ${match}`);
    if (name === 'rank_of_key' && list[0] !== 'rank' && list[0] !== 'version') {
      throw new Error(`apply.sql: ${match} needs the ordering rank or version`);
    }
    return fill(...list);
  });
}

/** The file the statement lives in, next to this module (found the same way from tsx and the image). */
export const APPLY_SQL_FILE = new URL('./apply.sql', import.meta.url);

/** The apply statement (see apply.sql), read and filled in once, at module load. */
export const APPLY_SQL = renderApplySql(readFileSync(APPLY_SQL_FILE, 'utf8'));

/** What the apply statement needs to know about each machine, as its `machines` parameter. */
export function machinesParam(registry: MachineRegistry): string {
  const out: Record<string, unknown> = {};
  for (const info of registry.list()) {
    const a = info.analysis;
    out[a.name] = {
      ordering: a.ordering,
      targets: Object.fromEntries(a.events.map((e) => [String(e.rank), e.target])),
      reach: a.reachable,
      maxFields: registry.limits.entity.maxFields,
      maxFieldBytes: registry.limits.entity.maxFieldBytes,
    };
  }
  return JSON.stringify(out);
}

const QUOTE_OR_BACKSLASH = /["\\]/;
/** A JSON escape other than \" and \\: one the array syntax would read differently. */
const OTHER_ESCAPE = /\\[^"\\]/;

/**
 * A Postgres array literal (`{"a","b",NULL}`) of strings and numbers, as `$n::text[]` and its
 * kin read it. It runs while the database waits for the next batch, so the common case is
 * JSON.stringify's: its array syntax differs from Postgres' only in the brackets and in
 * escapes other than \" and \\ (control characters), and those take the slow path.
 */
export function arrayLiteral(items: readonly Cell[]): string {
  const json = JSON.stringify(items);
  if (!OTHER_ESCAPE.test(json)) return `{${json.slice(1, -1)}}`;
  const parts = new Array<string>(items.length);
  for (let i = 0; i < items.length; i++) {
    const v = items[i];
    parts[i] =
      v === null || v === undefined
        ? 'NULL'
        : typeof v === 'number'
          ? String(v)
          : QUOTE_OR_BACKSLASH.test(v)
            ? `"${v.replace(/["\\]/g, '\\$&')}"`
            : `"${v}"`;
  }
  return `{${parts.join(',')}}`;
}

/** One array literal per column, over the rows. */
function columnLiterals<R>(columns: readonly Column<R>[], rows: readonly R[]): string[] {
  return columns.map((c) => {
    const cells = new Array<Cell>(rows.length);
    for (let i = 0; i < rows.length; i++) cells[i] = c.get(rows[i]!);
    return arrayLiteral(cells);
  });
}

const bySourceAndId = ({ event: x }: ClaimRow, { event: y }: ClaimRow): number =>
  x.source !== y.source
    ? x.source < y.source
      ? -1
      : 1
    : x.eventId! < y.eventId!
      ? -1
      : x.eventId! > y.eventId!
        ? 1
        : 0;

/**
 * The parameters of {@link APPLY_SQL} for a batch. Events go over grouped by entity, the
 * entities sorted by (machine, entityId) and each entity's events in arrival order, so the
 * statement's window functions find their input already in order; the idempotency keys to
 * claim go sorted by (source, eventId). Both orders are the same in every worker, which is
 * what keeps concurrent batches from deadlocking on rows or keys.
 */
export function applyParams(batch: readonly BatchEvent[], machines: string): string[] {
  const n = batch.length;
  const events = batch.map((b) => b.event);
  // Entities in (machine, entityId) order, each one's events in arrival order.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    const x = events[a]!;
    const y = events[b]!;
    if (x.machine !== y.machine) return x.machine < y.machine ? -1 : 1;
    if (x.entityId !== y.entityId) return x.entityId < y.entityId ? -1 : 1;
    return a - b;
  });
  // The first event of the batch with each (source, eventId), in arrival order.
  const first = new Array<boolean>(n);
  const hashes = new Array<string | null>(n);
  const seen = new Set<string>();
  const claims: ClaimRow[] = [];
  for (let i = 0; i < n; i++) {
    const e = events[i]!;
    if (e.eventId === null) {
      first[i] = true;
      hashes[i] = null;
    } else {
      const hash = contentHash(e);
      hashes[i] = hash;
      const id = `${e.source}\u0000${e.eventId}`;
      first[i] = !seen.has(id);
      if (first[i]) {
        seen.add(id);
        claims.push({ event: e, hash });
      }
    }
  }
  claims.sort(bySourceAndId);

  const rows = new Array<EventRow>(n);
  const entities: EntityRow[] = [];
  for (let at = 0; at < n; at++) {
    const i = order[at]!;
    const e = events[i]!;
    const last = entities.at(-1);
    if (!last || last.entityId !== e.entityId || last.machine !== e.machine) {
      entities.push({ machine: e.machine, entityId: e.entityId });
    }
    rows[at] = {
      event: e,
      jobId: batch[i]!.jobId,
      idx: i,
      grp: entities.length - 1,
      first: first[i]!,
      hash: hashes[i]!,
    };
  }
  return [
    ...columnLiterals(EVENT_COLUMNS, rows),
    ...columnLiterals(ENTITY_COLUMNS, entities),
    ...columnLiterals(CLAIM_COLUMNS, claims),
    machines,
  ];
}
