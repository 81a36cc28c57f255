import { describe, expect, it } from 'vitest';
import type { EventInput } from '../../src/domain/event-schema.ts';
import { REDIS_URL } from '../helpers/db.ts';
import { useFaultStage } from '../helpers/fault-stage.ts';
import {
  buildWorkload,
  checkConvergence,
  failedJobs,
  prng,
  Producer,
  report,
  sleep,
  waitDrained,
} from '../helpers/load.ts';

const FIRST_EVENTS = 8000;
const REPLAYS = 20_000;

interface RowState {
  status: string;
  last_event: string;
  key: string;
  version: string | null;
  merchant_id: string | null;
  fields: unknown;
  updated_at: Date;
}

describe('a flood of duplicates and replays of old events', () => {
  const stage = useFaultStage('replay', { obliterateOn: REDIS_URL });

  const rows = async (): Promise<Map<string, RowState>> => {
    const r = await stage.pool.query<RowState & { machine: string; entity_id: string }>(
      'SELECT machine, entity_id, status, last_event, key::text AS key, version::text AS version, merchant_id, fields, updated_at FROM entity',
    );
    return new Map(r.rows.map(({ machine, entity_id, ...rest }) => [`${machine}/${entity_id}`, rest]));
  };

  it('moves no state backwards, and does not even touch a row', async () => {
    const env = stage.env({ REDIS_URL });
    const { api } = await stage.startServices(env);

    // First every history in full (shuffled), until it is all applied.
    const load = buildWorkload(stage.registry, { minEvents: FIRST_EVENTS, seed: 4404, prefix: 'd' });
    const first = new Producer({ url: api.url, key: stage.key, maxBatch: 50, concurrency: 8, seed: 19 });
    await first.run(load.sends);
    await waitDrained(REDIS_URL, stage.queueName);
    const before = await rows();
    const maxLogId = (
      await stage.pool.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM event_log')
    ).rows[0]!.id;

    // Then replays of old events: half exact copies (same eventId), half the same events
    // re-sent under new eventIds (a producer replaying its history), in random order.
    const all = load.histories.flatMap((h) => h.events);
    const rnd = prng(4405);
    const replays: EventInput[] = Array.from({ length: REPLAYS }, (_, n) => {
      const e = all[Math.floor(rnd() * all.length)]!;
      return rnd() < 0.5 ? e : { ...e, eventId: `${e.eventId}-replay-${n}` };
    });
    const flood = new Producer({
      url: api.url,
      key: stage.key,
      maxBatch: 50,
      concurrency: 8,
      eventsPerSecond: 2500,
      seed: 23,
    });
    let sampling = true;
    let samples = 0;
    const backwards: string[] = [];
    const changed = new Set<string>();
    const sampler = (async () => {
      while (sampling) {
        for (const [id, row] of await rows()) {
          const was = before.get(id);
          if (!was) changed.add(`${id}: appeared`);
          else {
            if (BigInt(row.key) < BigInt(was.key)) backwards.push(`${id}: key ${was.key} -> ${row.key}`);
            if (row.updated_at.getTime() !== was.updated_at.getTime()) changed.add(id);
          }
        }
        samples += 1;
        await sleep(250);
      }
    })();
    await flood.run(replays);
    await waitDrained(REDIS_URL, stage.queueName);
    sampling = false;
    await sampler;
    const after = await rows();

    const failed = await failedJobs(REDIS_URL, stage.queueName);
    const c = await checkConvergence(stage.pool, stage.registry, load.histories, first.acked, stage.source);
    const replayLog = await stage.pool.query<{ outcome: string; n: string }>(
      'SELECT outcome, count(*) AS n FROM event_log WHERE id > $1 GROUP BY outcome',
      [maxLogId],
    );
    const replayOutcomes = Object.fromEntries(replayLog.rows.map((r) => [r.outcome, Number(r.n)]));
    report('duplicates and replays', [first, flood], c, {
      firstPass: { sent: first.stats.sent, acknowledged: first.stats.acknowledged },
      replays: {
        sent: flood.stats.sent,
        acknowledged: flood.stats.acknowledged,
        logged: replayLog.rows.reduce((n, r) => n + Number(r.n), 0),
      },
      replayOutcomes,
      samples,
      rowsMovedBackwards: backwards.length,
      rowsTouched: changed.size,
      failedJobs: failed.length,
    });

    expect(first.stats.unacknowledged).toBe(0);
    expect(flood.stats.unacknowledged).toBe(0);
    expect(first.unexpected.concat(flood.unexpected)).toEqual([]);
    expect(flood.stats.sent).toBeGreaterThanOrEqual(REPLAYS);
    expect(samples).toBeGreaterThan(3);
    expect(backwards.slice(0, 5)).toEqual([]);
    expect([...changed].slice(0, 5)).toEqual([]);
    expect(after).toEqual(before);
    // Every replay was received and logged, none applied.
    expect(replayOutcomes.applied ?? 0).toBe(0);
    expect((replayOutcomes.duplicate ?? 0) + (replayOutcomes.stale ?? 0)).toBe(flood.stats.acknowledged);
    expect(failed).toEqual([]);
    expect(c.lost).toBe(0);
    expect(c.appliedTwice).toBe(0);
    expect(c.mismatches.slice(0, 5)).toEqual([]);
  });
});
