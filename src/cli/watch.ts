import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../domain/index.ts';
import { resolveTargets } from './targets.ts';
import { SseParser } from './sse.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A failure reconnecting cannot fix (a bad key, a cursor too old). */
class FatalError extends Error {}

export interface WatchOptions {
  url: string;
  key: string;
  collection: string;
  since: string | undefined;
  /** Called with each change's entity view, as received. */
  onChange: (json: string) => void;
  /** Called after a disconnect, before reconnecting. */
  onReconnect?: (err: unknown, attempt: number) => void;
  signal?: AbortSignal;
}

/**
 * Follows `GET /v1/{collection}/watch` until `signal` aborts: reconnects after any disconnect
 * with `Last-Event-ID` (the last change or bookmark received), so no change is skipped.
 * @throws FatalError when the API refuses (401, 403, 404, 410): reconnecting would not help.
 */
export async function watchChanges(o: WatchOptions): Promise<void> {
  let last = o.since;
  for (let attempt = 0; !o.signal?.aborted;) {
    try {
      const headers: Record<string, string> = {
        authorization: `Bearer ${o.key}`,
        accept: 'text/event-stream',
      };
      if (last !== undefined) headers['last-event-id'] = last;
      const res = await fetch(`${o.url.replace(/\/+$/, '')}/v1/${o.collection}/watch`, {
        headers,
        ...(o.signal ? { signal: o.signal } : {}),
      });
      if (res.status !== 200) {
        const text = await res.text();
        let detail = text;
        try {
          detail = (JSON.parse(text) as { detail?: string }).detail ?? text;
        } catch {
          // not a problem document
        }
        if (res.status >= 400 && res.status < 500 && res.status !== 429)
          throw new FatalError(`the API answered ${res.status}: ${detail}`);
        throw new Error(`the API answered ${res.status}: ${detail}`);
      }
      attempt = 0;
      let resync: string | undefined;
      const parser = new SseParser((e) => {
        if (e.event === 'change') o.onChange(e.data);
        if (e.event === 'resync') resync = e.data;
        if (e.id !== undefined && (e.event === 'change' || e.event === 'bookmark')) last = e.id;
      });
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) parser.push(decoder.decode(chunk as Uint8Array, { stream: true }));
      throw new Error(resync === undefined ? 'the stream ended' : `the API asked to resync: ${resync}`);
    } catch (err) {
      if (err instanceof FatalError || o.signal?.aborted) throw err;
      attempt++;
      o.onReconnect?.(err, attempt);
      await sleep(Math.min(10_000, 250 * 2 ** Math.min(attempt, 6)));
    }
  }
}

/** `watch`. */
export function registerWatch(program: Command): void {
  program
    .command('watch')
    .description('print changes of a collection as they happen, one entity per line (NDJSON)')
    .option('--machine <name>', 'the machine whose entities to follow', 'promotion')
    .option('--since <cursor>', "start after this cursor (a list's changesSince, or a changeSeq)")
    .option(
      '--url <url>',
      'the API (env PROMOSYNC_URL; default: the running `start`, else http://127.0.0.1:3000)',
    )
    .option('--key <key>', 'an API key (env PROMOSYNC_KEY)')
    .addHelpText(
      'after',
      `
Each line is an entity view with its changeSeq. After a disconnect the command reconnects
and resumes after the last change or bookmark it received. Without --since it starts with
changes from now on. A 410 (cursor_expired) ends it with status 1: list the collection again.

Examples:
  promosync watch --key psk_…
  promosync watch --machine campaign --since <changesSince> | jq .status`,
    )
    .action(async (opts: { machine: string; since?: string; url?: string; key?: string }) => {
      const config = loadConfig();
      const key = opts.key ?? config.apiKey;
      if (!key) throw new Error('no API key: pass --key or set PROMOSYNC_KEY');
      const info = MachineRegistry.from(machines).get(opts.machine);
      if (!info) throw new Error(`unknown machine "${opts.machine}"`);
      const url = opts.url ?? (await resolveTargets(config)).apiUrl;
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await watchChanges({
          url,
          key,
          collection: info.analysis.collection,
          since: opts.since,
          signal: stop.signal,
          onChange: (json) => process.stdout.write(`${json}\n`),
          onReconnect: (err, attempt) =>
            process.stderr.write(
              `promosync watch: ${err instanceof Error ? err.message : String(err)}; reconnecting (${attempt})\n`,
            ),
        });
      } catch (err) {
        if (!stop.signal.aborted) throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
