import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { createWebSocketReceiver, type StatelyInspectionEvent } from '@statelyai/inspect';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { Applier, syncMachineDefs } from '../../src/store/index.ts';
import { freshDatabase, testPool } from '../helpers/db.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function promosync(env: Record<string, string>, ...args: string[]): Running {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/promosync.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('promosync inspect', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;

  beforeAll(async () => {
    db = await freshDatabase();
    const pool = testPool(db.url);
    const registry = MachineRegistry.from(machines);
    await syncMachineDefs(pool, registry);
    const applier = new Applier(pool, registry, pino({ level: 'silent' }));
    const events = registry.prepare(
      [
        { machine: 'promotion', entityId: 'promo-1', type: 'create', version: 1, eventId: 'a' },
        { machine: 'promotion', entityId: 'promo-1', type: 'complete', version: 3, eventId: 'c' },
        // Late and older: stale, so not part of the replay.
        { machine: 'promotion', entityId: 'promo-1', type: 'activate', version: 2, eventId: 'b' },
      ],
      'test-src',
      true,
    );
    for (const event of events) await applier.apply([{ event, jobId: null }]);
    await pool.end();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("serves the replay of an entity's applied events on the local relay until Ctrl-C", async () => {
    const port = await freePort();
    const run = promosync(
      { DATABASE_URL: db.url },
      'inspect',
      'promotion',
      'promo-1',
      '--port',
      String(port),
    );
    try {
      await until('the URL', () => run.stdout().includes('Stately inspector: open'));
      expect(run.stdout()).toContain('promotion "promo-1": 2 applied events, status COMPLETED');
      expect(run.stdout()).toMatch(/1\s+creation\s+create\s+1\s+CREATED\s+CREATED/);
      expect(run.stdout()).toMatch(/2\s+inferred\s+activate\s+CREATED\s+ACTIVATED/);
      expect(run.stdout()).toMatch(/3\s+event\s+complete\s+3\s+ACTIVATED\s+COMPLETED/);
      expect(run.stdout()).toContain(`open http://localhost:${port} in a browser`);

      // The bridge page the server serves, and what a browser connecting later receives.
      const page = await fetch(`http://localhost:${port}/`);
      expect(await page.text()).toContain(`new WebSocket('ws://localhost:${port}')`);
      const received: StatelyInspectionEvent[] = [];
      createWebSocketReceiver({ server: `ws://localhost:${port}` }).subscribe((e) => received.push(e));
      await until('the replay', () => received.filter((e) => e.type === '@xstate.snapshot').length >= 4);

      const actor = received.find((e) => e.type === '@xstate.actor');
      expect(actor).toMatchObject({ name: 'promo-1' });
      expect(JSON.parse((actor as { definition: string }).definition)).toMatchObject({ id: 'promotion' });
      const events = received.filter((e) => e.type === '@xstate.event').map((e) => e.event);
      expect(events.map((e) => e.type)).toEqual(['xstate.init', 'create', 'activate', 'complete']);
      expect(events[2]).toMatchObject({ inferred: true });
      expect(events[3]).toMatchObject({ version: 3, eventId: 'c' });
      const states = received
        .filter((e) => e.type === '@xstate.snapshot')
        .map((e) => (e.snapshot as unknown as { value: string }).value);
      expect(states).toEqual(['CREATED', 'CREATED', 'ACTIVATED', 'COMPLETED']);
    } finally {
      run.child.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
  });

  it('shows a machine alone without a database', async () => {
    const port = await freePort();
    const run = promosync({ DATABASE_URL: '' }, 'inspect', 'campaign', '--port', String(port));
    try {
      await until('the URL', () => run.stdout().includes('Stately inspector: open'));
      expect(run.stdout()).toContain('campaign: the machine alone, in its initial state DRAFT');
    } finally {
      run.child.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
  });

  it('says so when the entity does not exist or the port is taken', async () => {
    const missing = promosync({ DATABASE_URL: db.url }, 'inspect', 'promotion', 'nope', '--port', '1');
    expect(await missing.exited).toBe(1);
    expect(missing.stderr()).toContain('no promotion "nope" in the database');

    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, r));
    const port = (blocker.address() as net.AddressInfo).port;
    const taken = promosync({ DATABASE_URL: '' }, 'inspect', 'promotion', '--port', String(port));
    expect(await taken.exited).toBe(1);
    expect(taken.stderr()).toContain(`port ${port} is in use; choose another with --port`);
    await new Promise((r) => blocker.close(r));
  });
});
