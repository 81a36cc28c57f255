import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
// Inside the repository, so the machine files written here resolve `xstate` from node_modules.
const DIR = path.join(ROOT, 'test-output', `cli-machines-${randomBytes(4).toString('hex')}`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI, as a user does. */
function promosync(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'bin/promosync.js'), ...args],
      { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'silent' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const BAD = `import { createMachine } from 'xstate';

// ACTIVATED -pause-> PAUSED -activate-> ACTIVATED: a cycle nothing resolves.
export const pausable = createMachine({
  id: 'pausable',
  initial: 'CREATED',
  states: {
    CREATED: { on: { activate: 'ACTIVATED' } },
    ACTIVATED: { on: { pause: 'PAUSED', complete: 'DONE' } },
    PAUSED: { on: { activate: 'ACTIVATED' } },
    DONE: { type: 'final' },
  },
});

export const split = createMachine({
  id: 'split',
  type: 'parallel',
  states: {
    left: { initial: 'a', states: { a: { on: { go: 'b' } }, b: {} } },
    right: { initial: 'c', states: { c: { after: { 1000: 'd' } }, d: {} } },
  },
});
`;

const OVERRIDDEN = `import { createMachine } from 'xstate';

export const pausable = createMachine({
  id: 'pausable',
  initial: 'CREATED',
  meta: { ranks: { pause: 1, activate: 2 } },
  states: {
    CREATED: { on: { activate: 'ACTIVATED' } },
    ACTIVATED: { on: { pause: 'PAUSED', complete: 'DONE' } },
    PAUSED: { on: { activate: 'ACTIVATED' } },
    DONE: { type: 'final' },
  },
});
`;

describe('promosync machines check|export', () => {
  beforeAll(async () => {
    await mkdir(DIR, { recursive: true });
    await writeFile(path.join(DIR, 'bad.ts'), BAD);
    await writeFile(path.join(DIR, 'overridden.ts'), OVERRIDDEN);
  });
  afterAll(async () => {
    await rm(DIR, { recursive: true, force: true });
  });

  it('prints a table of events, ranks, targets and from-states for every registered machine', async () => {
    const r = await promosync('machines', 'check');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('machine promotion (rank-ordered, initial CREATED, final COMPLETED, DELETED)');
    expect(r.stdout).toMatch(/event\s+rank\s+target\s+from/);
    expect(r.stdout).toMatch(/activate\s+2\s+ACTIVATED\s+CREATED\n/);
    expect(r.stdout).toMatch(/delete\s+4\s+DELETED\s+CREATED, ACTIVATED\n/);
    expect(r.stdout).toContain('machine campaign (version-ordered, initial DRAFT, final ENDED, CANCELLED)');
    expect(r.stdout).toMatch(/pause\s+\d\s+PAUSED\s+LIVE\n/);
    // The campaign's cycle is accepted, and the check says why.
    expect(r.stdout).toMatch(
      /info\s+cycle LIVE -pause-> PAUSED -resume-> LIVE: ordered by the producer's version/,
    );
    expect(r.stderr).toBe('');
  });

  it('prints the same analysis as JSON with --json', async () => {
    const r = await promosync('machines', 'check', '--json');
    expect(r.code).toBe(0);
    const analyses = JSON.parse(r.stdout) as Array<{
      name: string;
      ok: boolean;
      ordering: string;
      events: Array<{ type: string; rank: number; target: string; from: string[] }>;
    }>;
    expect(analyses.map((a) => [a.name, a.ordering, a.ok])).toEqual([
      ['promotion', 'rank', true],
      ['campaign', 'version', true],
    ]);
    expect(analyses[0]!.events[0]).toEqual({ type: 'create', rank: 1, target: 'CREATED', from: [] });
  });

  it('exits 1 on a machine with an unresolved cycle, naming the cycle, and names unsupported states', async () => {
    const r = await promosync('machines', 'check', path.join(DIR, 'bad.ts'));
    expect(r.code).toBe(1);
    const cycle = r.stdout.split('\n').find((l) => /^\s+error\s+cycle /.test(l));
    expect(cycle).toMatch(/cycle PAUSED -activate-> ACTIVATED -pause-> PAUSED: events "activate", "pause"/);
    expect(r.stdout).toMatch(/error\s+unsupported_parallel: state \(root\) is a parallel state/);
    expect(r.stdout).toMatch(/error\s+unsupported_after: state right\.c has delayed \(after\) transitions/);
    expect(r.stderr).toMatch(/^\d+ error\(s\)\n$/);

    const json = await promosync('machines', 'check', path.join(DIR, 'bad.ts'), '--json');
    expect(json.code).toBe(1);
    const [pausable] = JSON.parse(json.stdout) as Array<{
      ok: boolean;
      diagnostics: Array<{ cycle?: string[] }>;
    }>;
    expect(pausable!.ok).toBe(false);
    expect(pausable!.diagnostics.find((d) => d.cycle)?.cycle).toEqual(['activate', 'pause']);
  });

  it('passes a cycle resolved by rank overrides, warning about the precedence it drops', async () => {
    const r = await promosync('machines', 'check', path.join(DIR, 'overridden.ts'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /warning\s+override_drops_precedence: meta\.ranks puts "pause" \(1\) below "activate"/,
    );
    expect(r.stdout).toMatch(/pause\s+1\s+PAUSED\s+ACTIVATED\n\s+activate\s+2\s+ACTIVATED\s+CREATED, PAUSED/);
  });

  it('exports plain createMachine code that checks the same as the registered machine', async () => {
    const names = ['promotion', 'campaign'];
    const files = await Promise.all(
      names.map(async (name) => {
        const r = await promosync('machines', 'export', name);
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(
          /^import \{ createMachine \} from 'xstate';\n\nexport const machine = createMachine\(\{/,
        );
        expect(r.stdout).toContain('"type": "final"');
        expect(r.stdout).toContain('"initial": ');
        expect(r.stdout).toContain('"meta": {');
        const file = path.join(DIR, `${name}-exported.ts`);
        await writeFile(file, r.stdout);
        return file;
      }),
    );
    const [exported, original] = await Promise.all([
      promosync('machines', 'check', ...files, '--json'),
      promosync('machines', 'check', '--json'),
    ]);
    expect(JSON.parse(exported.stdout)).toEqual(JSON.parse(original.stdout));
  });

  it('draws a machine as SVG', async () => {
    const r = await promosync('machines', 'diagram', 'promotion');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    for (const [type, rank] of [
      ['create', 1],
      ['activate', 2],
      ['complete', 3],
      ['delete', 4],
    ]) {
      expect(r.stdout).toContain(`data-event="${type}" data-rank="${rank}"`);
    }
  });

  it('names the known machines when exporting an unknown one', async () => {
    const r = await promosync('machines', 'export', 'nope');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no machine nope; known: promotion, campaign');
  });
});
