// What attributes cost the apply statement: one batch of events carrying fields, applied to
// entities that already hold N fields, for growing N; and the flood the entity limits stop
// (two batches of 1,000 events × 100 new fields on one entity). Prints a table and saves it
// under bench/results/attributes.md. Usage: npx tsx bench/attributes.ts [--sizes 100,1000,10000]
import { mkdirSync, writeFileSync } from 'node:fs';
import pino from 'pino';
import { machines } from '../machines/index.ts';
import { DEFAULT_EVENT_LIMITS, type EventInput } from '../src/domain/event-schema.ts';
import { MachineRegistry } from '../src/domain/registry.ts';
import { Applier } from '../src/store/apply.ts';
import { benchPool, createDatabase } from './db.ts';

const serverUrl = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const sizesArg = process.argv.indexOf('--sizes');
const sizes = (sizesArg > 0 ? process.argv[sizesArg + 1]! : '100,1000,10000').split(',').map(Number);

/** Limits high enough for the largest row measured; the flood runs with the defaults. */
const roomy = MachineRegistry.from(machines, false, {
  ...DEFAULT_EVENT_LIMITS,
  entity: { maxFields: 1_000_000, maxFieldBytes: 1_000_000_000 },
});
const defaults = MachineRegistry.from(machines);

const fields = (prefix: string, n: number, from = 0): Record<string, string> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${from + i}`, `value-${from + i}`]));

let seq = 0;
const event = (entityId: string, type: string, version: number, data: EventInput['data']): EventInput => ({
  machine: 'promotion',
  entityId,
  type,
  version,
  eventId: `attr-${++seq}`,
  data,
});

async function timed(applier: Applier, registry: MachineRegistry, inputs: EventInput[]): Promise<number> {
  const batch = registry.prepare(inputs, 'bench', true).map((e) => ({ event: e, jobId: null }));
  const t0 = performance.now();
  await applier.apply(batch);
  return performance.now() - t0;
}

const rows: string[] = [];
const db = await createDatabase(serverUrl);
const pool = benchPool(db.url);
try {
  const logger = pino({ level: 'silent' });
  const roomyApplier = new Applier(pool, roomy, logger);
  for (const n of sizes) {
    // One entity holding n fields, then 1,000 events on it, each updating 10 of them and adding 1.
    const id = `rows-${n}`;
    for (let at = 0; at < n; at += 100) {
      await timed(roomyApplier, roomy, [event(id, 'create', at + 1, fields('f', Math.min(100, n - at), at))]);
    }
    const batch = Array.from({ length: 1000 }, (_, i) =>
      event(id, 'activate', i + 1, { ...fields('f', 10, (i * 10) % n), [`new${i}`]: i }),
    );
    const ms = await timed(roomyApplier, roomy, batch);
    rows.push(
      `| 1,000 events × 11 fields onto one entity holding ${n.toLocaleString('en')} fields | ${ms.toFixed(0)} ms |`,
    );
  }
  // The flood: two batches of 1,000 events × 100 new fields each on one entity, default limits.
  const flood = new Applier(pool, defaults, logger);
  let applied = 0;
  let total = 0;
  for (let b = 0; b < 2; b++) {
    const batch = Array.from({ length: 1000 }, (_, i) =>
      event('flood', 'activate', b * 1000 + i + 1, fields(`b${b}e${i}x`, 100)),
    );
    const prepared = defaults.prepare(batch, 'bench', true).map((e) => ({ event: e, jobId: null }));
    const t0 = performance.now();
    const out = await flood.apply(prepared);
    total += performance.now() - t0;
    applied += out.filter((r) => r.outcome === 'applied' || r.outcome === 'stale').length;
  }
  const { rows: size } = await pool.query<{ n: number; bytes: number }>(
    `SELECT (SELECT count(*) FROM jsonb_object_keys(fields))::int AS n, octet_length(fields::text) AS bytes
     FROM entity WHERE entity_id = 'flood'`,
  );
  rows.push(
    `| flood: 2 batches × 1,000 events × 100 new fields on one entity (default limits) | ${total.toFixed(0)} ms: ` +
      `${applied} events applied, ${2000 - applied} rejected; row ${size[0]?.n ?? 0} fields, ${size[0]?.bytes ?? 0} bytes |`,
  );
} finally {
  await pool.end();
  await db.drop();
}

const table = ['| Apply | Time |', '| --- | --- |', ...rows].join('\n');
console.log(table);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('./results/attributes.md', import.meta.url),
  `# Attributes and the apply statement\n\n${new Date().toISOString()}\n\n${table}\n`,
);
