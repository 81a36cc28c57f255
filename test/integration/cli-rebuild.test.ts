import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { rebuildRows } from '../../src/store/index.ts';
import { useHarness } from '../helpers/harness.ts';
import { runCli } from '../helpers/cli.ts';
import { prng } from '../helpers/load.ts';

type Event = Record<string, unknown>;

/**
 * Valid promotion histories (create, activate, then complete or delete, some cut short),
 * with versions and partial data, then shuffled, with copies under the same eventId and
 * re-sends under a new one.
 */
function workload(entities: number, seed: number): Event[] {
  const rnd = prng(seed);
  const out: Event[] = [];
  for (let i = 0; i < entities; i++) {
    const id = `w-${i}`;
    const types = ['create', 'activate', rnd() < 0.5 ? 'complete' : 'delete'].slice(
      0,
      1 + Math.floor(rnd() * 3),
    );
    types.forEach((type, v) => {
      const e: Event = { machine: 'promotion', entityId: id, type, eventId: `${id}-${v}`, version: v + 1 };
      if (i % 3 === 0) e.merchantId = `m-${i % 7}`;
      if (rnd() < 0.7) e.data = { title: `t${v}`, ...(rnd() < 0.5 ? { budget: v * 10 } : {}) };
      out.push(e);
      if (rnd() < 0.2) out.push({ ...e });
      if (rnd() < 0.1) out.push({ ...e, eventId: `${id}-${v}-again` });
    });
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('promosync rebuild', () => {
  const h = useHarness({ workers: 1 });
  let db: pg.Client;
  let env: Record<string, string>;
  const registry = MachineRegistry.from(machines);

  beforeAll(async () => {
    db = new pg.Client({ connectionString: h.databaseUrl });
    await db.connect();
    env = { DATABASE_URL: h.databaseUrl };
  });
  afterAll(async () => {
    await db?.end();
  });

  it('finds no drift after concurrent, shuffled and duplicated deliveries', async () => {
    const events = workload(300, 7);
    const requests: Array<Promise<Response>> = [];
    for (let i = 0; i < events.length; i += 7) {
      requests.push(h.request('/v1/events', { method: 'POST', json: { events: events.slice(i, i + 7) } }));
    }
    for (const r of await Promise.all(requests)) expect(r.status).toBe(202);
    await h.drain();
    const report = await rebuildRows(h.service.db.pool, registry, { pageSize: 64 });
    expect(report.drifted).toEqual([]);
    const promotion = report.machines.find((m) => m.machine === 'promotion')!;
    expect(promotion.rows).toBe(300);
  });

  it('reports rows changed behind its back, and --fix rewrites them from the log', async () => {
    const ok = await runCli(['rebuild'], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/promotion: checked 300 rows against \d+ logged events/);
    expect(ok.stdout).toContain('no drift: every row equals its event log');

    const before = await db.query('SELECT * FROM entity ORDER BY machine, entity_id');
    const victims = (
      await db.query<{ entity_id: string; status: string }>(
        `SELECT entity_id, status FROM entity WHERE fields ? 'title' AND status <> 'DELETED' ORDER BY entity_id LIMIT 3`,
      )
    ).rows;
    const [a, b, c] = victims.map((v) => v.entity_id);
    await db.query(`UPDATE entity SET status = 'DELETED' WHERE machine = 'promotion' AND entity_id = $1`, [
      a,
    ]);
    await db.query(`DELETE FROM entity WHERE machine = 'promotion' AND entity_id = $1`, [b]);
    await db.query(
      `UPDATE entity SET fields = jsonb_set(fields, '{title,v}', '"edited"') WHERE machine = 'promotion' AND entity_id = $1`,
      [c],
    );

    const drift = await runCli(['rebuild', '--machine', 'promotion'], env);
    expect(drift.code).toBe(1);
    expect(drift.stdout).toContain('drift in 3 entities:');
    expect(drift.stdout).toContain(
      `promotion/${a}  status: stored "DELETED", recomputed "${victims[0]!.status}"`,
    );
    expect(drift.stdout).toContain(`promotion/${b}  row missing, the log has events for it`);
    expect(drift.stdout).toMatch(
      new RegExp(`promotion/${c}  attributes\\.title: stored "edited" \\(by \\w+ v\\d\\), recomputed "t\\d"`),
    );
    expect(drift.stdout).toContain('run with --fix');

    const fixed = await runCli(['rebuild', '--fix'], env);
    expect(fixed.code, fixed.stdout + fixed.stderr).toBe(0);
    expect(fixed.stdout).toContain('fixed 3 of 3 fixable rows');

    const after = await db.query('SELECT * FROM entity ORDER BY machine, entity_id');
    const strip = (rows: Array<Record<string, unknown>>) =>
      rows.map(({ updated_at: _u, created_at: _c, change_xid: _x, ...rest }) => rest);
    expect(strip(after.rows)).toEqual(strip(before.rows));

    const clean = await runCli(['rebuild'], env);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toContain('no drift');
  });

  it('reports and fixes an entity with 150,000 drifted attributes, printing a bounded summary', async () => {
    const { entity_id: id } = (
      await db.query<{ entity_id: string }>(
        `SELECT entity_id FROM entity WHERE machine = 'promotion' AND fields ? 'title' ORDER BY entity_id LIMIT 1`,
      )
    ).rows[0]!;
    const before = await db.query('SELECT fields FROM entity WHERE machine = $1 AND entity_id = $2', [
      'promotion',
      id,
    ]);
    // Attributes no logged event wrote: each one is a drift.
    await db.query(
      `UPDATE entity SET fields = fields || (SELECT jsonb_object_agg('x' || i, fields -> 'title')
         FROM generate_series(1, 150000) i) WHERE machine = 'promotion' AND entity_id = $1`,
      [id],
    );

    const drift = await runCli(['rebuild', '--machine', 'promotion'], env, { timeoutMs: 120_000 });
    expect(drift.stderr).not.toMatch(/Maximum call stack/);
    expect(drift.code, drift.stderr).toBe(1);
    expect(drift.stdout).toContain('drift in 1 entity:');
    expect(drift.stdout).toMatch(
      new RegExp(`promotion/${id}  attributes\\.x1: stored "t\\d" .*recomputed \\(none\\)`),
    );
    expect(drift.stdout).toMatch(
      new RegExp(`promotion/${id}  \\.\\.\\. and 149,9\\d\\d more drifted fields \\(150,000 in all\\)`),
    );
    expect(drift.stdout.split('\n').length).toBeLessThan(100);

    const fixed = await runCli(['rebuild', '--fix', '--machine', 'promotion'], env, { timeoutMs: 120_000 });
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stdout).toContain('fixed 1 of 1 fixable rows');
    const after = await db.query('SELECT fields FROM entity WHERE machine = $1 AND entity_id = $2', [
      'promotion',
      id,
    ]);
    expect(after.rows).toEqual(before.rows);
  }, 240_000);

  it('rejects an unknown machine', async () => {
    const run = await runCli(['rebuild', '--machine', 'nope'], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('unknown machine "nope"');
  });
});
