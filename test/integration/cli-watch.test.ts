import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import type { EntityView } from '../../src/store/queries.ts';

const BIN = fileURLToPath(new URL('../../bin/promosync.js', import.meta.url));

/** `promosync watch`: changes as NDJSON, through the API, as an operator runs it. */
describe('promosync watch', () => {
  const h = useHarness();

  const push = async (events: unknown[]) => {
    const res = await h.request('/v1/events?wait=true', { method: 'POST', json: { events } });
    expect(res.status).toBe(200);
  };

  it("prints each change of a merchant's promotions as one JSON line, starting after --since", async () => {
    await push([{ machine: 'promotion', entityId: 'before', type: 'create', merchantId: 'm-1' }]);
    const list = (await (await h.request('/v1/promotions', { key: h.keys.merchant })).json()) as {
      changesSince: string;
    };
    const child = spawn(process.execPath, [BIN, 'watch', '--since', list.changesSince], {
      env: {
        PATH: process.env.PATH,
        PROMOSYNC_URL: h.url,
        PROMOSYNC_KEY: h.keys.merchant,
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      await push([
        { machine: 'promotion', entityId: 'cli-1', type: 'create', merchantId: 'm-1', data: { title: 'a' } },
        { machine: 'promotion', entityId: 'other', type: 'create', merchantId: 'm-2' },
      ]);
      await push([{ machine: 'promotion', entityId: 'cli-1', type: 'activate' }]);
      // A follower gets each entity's latest state; states in between may be folded.
      for (let i = 0; i < 400 && !out.includes('"ACTIVATED"'); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const lines = out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as EntityView);
      // The merchant's own promotions only ('before' may come again: a list's position can
      // lie before what it showed, never after).
      expect(
        lines.every((v) => v.merchantId === 'm-1'),
        err,
      ).toBe(true);
      const last = lines.filter((v) => v.id === 'cli-1').at(-1);
      expect(last).toMatchObject({ status: 'ACTIVATED', attributes: { title: 'a' } });
      expect(last!.changeSeq).toEqual(expect.any(String));
    } finally {
      child.kill('SIGINT');
    }
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code).toBe(0);
  });
});
