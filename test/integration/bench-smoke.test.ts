import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ADMIN_URL, REDIS_URL } from '../helpers/db.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Report {
  ok: boolean;
  results: {
    id: string;
    error?: string;
    count: number;
    convergence?: { ok: boolean };
    wrongStatuses?: number;
    rowCounts?: { ok: boolean };
  }[];
}

describe('the benchmark', () => {
  let out: string | undefined;
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  // Checks that the quick run works end to end and that every promosync run converged;
  // throughput is never asserted (the figures depend on the machine and its load).
  it('runs every scenario of the quick mode and every promosync run converges', async () => {
    out = await mkdtemp(path.join(tmpdir(), 'promosync-bench-'));
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', 'bench/cli.ts', '--quick', '--out', out!],
          {
            cwd: ROOT,
            env: { ...process.env, BENCH_DATABASE_URL: ADMIN_URL, BENCH_REDIS_URL: REDIS_URL },
            maxBuffer: 16 * 1024 * 1024,
          },
          (err, stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      },
    );
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toContain('Batched REST ingest');

    const files = await readdir(out);
    const json = files.find((f) => f.startsWith('quick-') && f.endsWith('.json'));
    expect(files).toContain('quick.md');
    const report = JSON.parse(await readFile(path.join(out, json!), 'utf8')) as Report;
    expect(report.results.map((r) => r.id).sort()).toEqual(
      [
        'ceiling',
        'ceiling-pgbench',
        'naive',
        'queue-noop',
        'queue-noop-peak',
        'queue-promosync',
        'rest-combined',
        'rest-split-1',
        'sync1',
        'sync1-pgbench',
        'sync2',
        'sync2-pgbench',
        'write-set',
        'write-set-pgbench',
      ].sort(),
    );
    for (const r of report.results) {
      expect(r.error, r.id).toBeUndefined();
      expect(r.count, r.id).toBeGreaterThan(10_000);
    }
    const promosync = report.results.filter((r) => r.id.startsWith('rest-') || r.id === 'queue-promosync');
    for (const r of promosync) expect(r.convergence?.ok, r.id).toBe(true);
    // The reference designs that compare keys, whatever drives them, leave every status right,
    // and the write set writes every row it must: otherwise their figures mean nothing.
    for (const r of report.results.filter((x) => x.wrongStatuses !== undefined && x.id !== 'naive'))
      expect.soft(r.wrongStatuses, r.id).toBe(0);
    for (const id of ['write-set', 'write-set-pgbench'])
      expect.soft(report.results.find((r) => r.id === id)?.rowCounts?.ok, id).toBe(true);
    expect(report.ok).toBe(true);
  }, 600_000);
});
