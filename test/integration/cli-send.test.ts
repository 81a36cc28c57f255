import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { runCli } from '../helpers/cli.ts';

const ev = (entityId: string, type: string, eventId: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ machine: 'promotion', entityId, type, eventId, ...extra });

/**
 * 2,300 lines whose outcomes are known when sent in order, one batch at a time: 600 promotions
 * created and activated, 100 of them completed, then late copies (same eventId: duplicates),
 * late activates (stale), deletes after complete (applied, anomalies), a merchant mismatch
 * (rejected), and lines the API refuses.
 */
function workload(): { lines: string[]; invalidLines: number[] } {
  const lines: string[] = [];
  for (let i = 0; i < 600; i++)
    lines.push(ev(`p-${i}`, 'create', `c-${i}`, { merchantId: 'm-1', data: { n: i } }));
  for (let i = 0; i < 600; i++) lines.push(ev(`p-${i}`, 'activate', `a-${i}`));
  for (let i = 0; i < 100; i++) lines.push(ev(`p-${i}`, 'complete', `k-${i}`));
  lines.push('');
  for (let i = 0; i < 400; i++) lines.push(ev(`p-${i}`, 'activate', `a-${i}`)); // 400 duplicates
  for (let i = 0; i < 50; i++) lines.push(ev(`p-${i}`, 'activate', `a2-${i}`)); // 50 stale
  for (let i = 0; i < 10; i++) lines.push(ev(`p-${i}`, 'delete', `d-${i}`)); // 10 applied anomalies
  lines.push(ev('p-200', 'activate', 'r-1', { merchantId: 'm-2' })); // rejected
  const invalidLines: number[] = [];
  const bad = (line: string): void => {
    lines.push(line);
    invalidLines.push(lines.length);
  };
  bad('{"machine": "promotion", "entityId": "p-1", "type": ');
  bad('[1, 2, 3]');
  bad(ev('p-300', 'activat', 'x-1'));
  for (let i = 600; i < 1229; i++) lines.push(ev(`p-${i}`, 'create', `c-${i}`));
  bad(ev('bad id!', 'create', 'x-2'));
  return { lines, invalidLines };
}

describe('promosync send', () => {
  const h = useHarness();
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'promosync-send-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('posts a file in batches, shows progress, and sums up every outcome and each bad line', async () => {
    const { lines, invalidLines } = workload();
    const file = path.join(dir, 'events.ndjson');
    await writeFile(file, `${lines.join('\n')}\n`);

    const run = await runCli(['send', file, '--concurrency', '1'], {
      PROMOSYNC_URL: h.url,
      PROMOSYNC_KEY: h.keys.producer,
    });
    // Progress on stderr (plain lines: stderr is not a terminal here), the summary on stdout.
    expect(run.stderr).toMatch(new RegExp(`sent ${lines.length}/${lines.length} lines: applied 1939,`));
    expect(run.stdout).toContain(`sent 2390 events from ${file} (${lines.length} lines)`);
    expect(run.stdout).toMatch(/applied\s+1939\n/);
    expect(run.stdout).toMatch(/stale\s+50\n/);
    expect(run.stdout).toMatch(/duplicate\s+400\n/);
    expect(run.stdout).toMatch(/rejected\s+1\n/);
    expect(run.stdout).toMatch(/anomalies\s+10\n/);
    expect(run.stdout).toContain('invalid lines: 4');
    expect(run.stdout).toContain(`line ${invalidLines[0]}: not JSON`);
    expect(run.stdout).toContain(`line ${invalidLines[1]}: expected one event object per line`);
    expect(run.stdout).toMatch(new RegExp(`line ${invalidLines[2]}: type: "activat" is not an event`));
    expect(run.stdout).toMatch(new RegExp(`line ${invalidLines[3]}: entityId: `));
    expect(run.code).toBe(1);

    const p0 = (await (await h.request('/v1/promotions/p-0')).json()) as Record<string, unknown>;
    expect(p0).toMatchObject({ status: 'DELETED', merchantId: 'm-1', anomalies: 1 });
    const p1228 = (await (await h.request('/v1/promotions/p-1228')).json()) as Record<string, unknown>;
    expect(p1228).toMatchObject({ status: 'CREATED' });
  });

  it('reads standard input and exits 0 when every line is valid', async () => {
    const input = [
      ev('s-1', 'create', 's-c1'),
      ev('s-1', 'activate', 's-a1'),
      ev('s-1', 'create', 's-c1'),
    ].join('\n');
    const run = await runCli(['send', '-', '--url', h.url, '--key', h.keys.producer], {}, { stdin: input });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('sent 3 events from stdin (3 lines)');
    expect(run.stdout).toMatch(/applied\s+2\n/);
    expect(run.stdout).toMatch(/duplicate\s+1\n/);
    expect(run.stdout).toContain('invalid lines: 0');
    expect(run.stderr).toMatch(/sent 3 lines: applied 2, stale 0, duplicate 1, invalid 0/);
  });

  it('stops with a clear message when the key is wrong', async () => {
    const run = await runCli(
      ['send', '-', '--url', h.url, '--key', 'psk_nope'],
      {},
      { stdin: ev('s-2', 'create', 'z') },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/promosync: the API answered 401/);
  });
});
