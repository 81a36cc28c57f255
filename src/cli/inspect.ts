import net from 'node:net';
import type { Command } from 'commander';
import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import { machines } from '../../machines/index.ts';
import { loadConfig } from '../config.ts';
import { planReplay, runReplay, type HistoryEvent, type ReplayPlan } from '../diagram/index.ts';
import { MachineRegistry } from '../domain/index.ts';
import { getEntity, getEntityEvents, openDatabase } from '../store/index.ts';

/**
 * The local relay keeps the last 200 messages for a browser that connects later; a replay
 * step costs two (the event and the snapshot), the actor's start three, each jump four more.
 */
const DEFAULT_LAST = 90;

/** The entity's applied events, oldest first, and its current status. */
async function loadHistory(
  url: string,
  machine: string,
  entityId: string,
): Promise<{ history: HistoryEvent[]; status: string }> {
  const db = openDatabase(url, 2);
  try {
    const scope = { merchantId: null };
    const entity = await getEntity(db.prisma, machine, entityId, scope);
    if (!entity) throw new Error(`no ${machine} "${entityId}" in the database`);
    const history: HistoryEvent[] = [];
    let after: bigint | undefined;
    for (;;) {
      const page = await getEntityEvents(db.prisma, machine, entityId, scope, {
        limit: 1000,
        ...(after !== undefined ? { after } : {}),
      });
      for (const e of page?.items ?? []) {
        if (e.outcome !== 'applied') continue;
        history.push({ type: e.type, version: e.version, eventId: e.eventId, logId: e.id, data: e.data });
      }
      if (!page?.nextCursor) break;
      after = BigInt(page.nextCursor);
    }
    return { history, status: entity.status };
  } finally {
    await db.close();
  }
}

function assertPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${port} is in use; choose another with --port`
            : `cannot listen on port ${port}: ${err.message}`,
        ),
      ),
    );
    probe.listen(port, () => probe.close(() => resolve()));
  });
}

/** Resolves once something accepts connections on the port (the relay started listening). */
async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, 'localhost');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the inspector server did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The replay as a table, so the terminal tells the same story as the inspector. */
export function formatPlan(plan: ReplayPlan): string {
  const rows = [['#', 'step', 'event', 'version', 'from', 'to']];
  plan.steps.forEach((s, i) =>
    rows.push([
      String(plan.omitted + i + 1),
      s.kind,
      s.type,
      s.event?.version === null || s.event === null ? '' : String(s.event.version),
      s.from,
      s.to,
    ]),
  );
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  const notes = [
    ...(plan.omitted > 0
      ? [`(${plan.omitted} earlier steps left out; the actor starts in ${plan.start})`]
      : []),
    ...plan.ignored.map((x) => `ignored ${x.event.type} (log id ${x.event.logId ?? '?'}): ${x.reason}`),
  ];
  return [...lines, ...notes].map((l) => `  ${l}`).join('\n');
}

/** `inspect <machine> [entityId]`. */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description(
      "show a machine in the Stately inspector, replaying an entity's applied events (needs DATABASE_URL)",
    )
    .argument('<machine>', 'machine name, e.g. promotion')
    .argument('[entityId]', 'entity whose history to replay; without it the machine is shown alone')
    .option('--port <port>', 'port of the local inspector server', '8080')
    .option('--last <n>', 'replay only the last n steps of a long history', String(DEFAULT_LAST))
    .option('--open', 'open the inspector in the default browser')
    .addHelpText(
      'after',
      '\nThe inspector server runs on this machine and relays the replay to the browser page it serves;\n' +
        'that page embeds the Stately inspector UI. Ctrl-C stops it.\n\n' +
        'Examples:\n  promosync inspect promotion\n  DATABASE_URL=postgresql://… promosync inspect promotion promo-123 --port 8081',
    )
    .action(
      async (
        machineName: string,
        entityId: string | undefined,
        o: { port: string; last: string; open?: boolean },
      ) => {
        const port = Number(o.port);
        const last = Number(o.last);
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--port must be 1-65535');
        if (!Number.isInteger(last) || last < 1) throw new Error('--last must be a positive integer');
        const registry = MachineRegistry.from(machines);
        const info = registry.get(machineName);
        if (!info) {
          throw new Error(
            `no machine ${machineName}; known: ${registry
              .list()
              .map((i) => i.analysis.name)
              .join(', ')}`,
          );
        }

        let history: HistoryEvent[] = [];
        let status: string | undefined;
        if (entityId !== undefined) {
          const config = loadConfig();
          if (!config.databaseUrl)
            throw new Error("DATABASE_URL is not set: it is needed to read the entity's event log");
          ({ history, status } = await loadHistory(config.databaseUrl, machineName, entityId));
        }
        const plan = planReplay(info, entityId ?? machineName, history, { maxSteps: last });

        await assertPortFree(port);
        const server = createInspectorServer({ port, autoOpen: o.open ?? false });
        await waitForPort(port);
        const inspector = createWebSocketInspector({
          url: `ws://localhost:${port}`,
          maxDeferredEvents: 1000,
        });
        const result = runReplay(info, plan, inspector.inspect);

        const out = process.stdout;
        if (entityId === undefined) {
          out.write(`${machineName}: the machine alone, in its initial state ${plan.start}\n`);
        } else {
          out.write(`${machineName} "${entityId}": ${history.length} applied events, status ${status}\n`);
          out.write(`${formatPlan(plan)}\n`);
          if (result.end !== status) {
            out.write(
              `note: the replay ends in ${result.end} but the row is ${status} ` +
                '(the log does not hold every applied event)\n',
            );
          }
        }
        out.write(`Stately inspector: open http://localhost:${port} in a browser (Ctrl-C to stop)\n`);

        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        for (const a of result.actors) a.stop();
        inspector.stop();
        server.stop();
        // A browser still connected holds the server open; nothing is left to finish.
        setTimeout(() => process.exit(0), 200).unref();
      },
    );
}
