// The hot-row effect without HTTP: 200 concurrent callers in one process, one pool of 10
// connections, reserving on one promotion through promosync's admitter (group commit) and
// through one conditional UPDATE per request; then the admitter over 100 promotions at once. `npx tsx bench/capacity-store.ts [seconds]`;
// BENCH_DATABASE_URL as for the benchmark.
import { Admitter } from '../src/capacity/index.ts';
import { openDatabase, setLimits } from '../src/store/index.ts';
import { createDatabase } from './db.ts';

const seconds = Number(process.argv[2] ?? 5);
const CALLERS = 200;
const db = await createDatabase(
  process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
);
const store = openDatabase(db.url, 10);
try {
  const ids = ['hot', ...Array.from({ length: 100 }, (_, i) => `p-${i}`)];
  await store.pool.query(
    `INSERT INTO entity (machine, entity_id, status, last_event, key)
     SELECT 'promotion', id, 'ACTIVATED', 'activate', 1 FROM unnest($1::text[]) AS id`,
    [ids],
  );
  for (const id of ids) await setLimits(store.pool, id, { total: 1_000_000_000 });
  await store.pool.query(
    'CREATE TABLE bench_capacity (id TEXT PRIMARY KEY, used BIGINT NOT NULL, max BIGINT NOT NULL)',
  );
  await store.pool.query("INSERT INTO bench_capacity VALUES ('hot', 0, 1000000000)");
  const admitter = new Admitter(store.pool);
  let seq = 0;
  const run = async (name: string, one: (caller: number) => Promise<unknown>): Promise<void> => {
    let n = 0;
    const until = performance.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CALLERS }, async (_, caller) => {
        while (performance.now() < until) {
          await one(caller);
          n += 1;
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    process.stdout.write(`${name}: ${Math.round(n / s)} reservations/s (${n} in ${s.toFixed(1)} s)\n`);
  };
  const reference = () =>
    store.pool.query(
      'UPDATE bench_capacity SET used = used + 1 WHERE id = $1 AND used + 1 <= max RETURNING used',
      ['hot'],
    );
  const promosync = () =>
    admitter.reserve('hot', { orderId: `o-${seq++}`, customerId: null, units: 1, holdSeconds: 300 });
  const spread = (caller: number) =>
    admitter.reserve(`p-${caller % 100}`, {
      orderId: `o-${seq++}`,
      customerId: null,
      units: 1,
      holdSeconds: 300,
    });
  await run('warm-up', promosync);
  await run('reference (UPDATE per request)', reference);
  await run('promosync (group commit)', promosync);
  await run('reference (UPDATE per request)', reference);
  await run('promosync (group commit)', promosync);
  await run('promosync, 100 promotions at once', spread);
  await run('promosync, 100 promotions at once', spread);
  await admitter.close();
} finally {
  await store.close();
  await db.drop();
}
