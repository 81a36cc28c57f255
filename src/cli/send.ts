import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config.ts';
import { MAX_EVENTS_PER_REQUEST, type Outcome } from '../domain/index.ts';
import { resolveTargets } from './targets.ts';

/** One parsed line on its way to the API. */
interface Line {
  line: number;
  event: unknown;
}

/** What `send` reports. */
export interface SendSummary {
  lines: number;
  /** Events the API accepted. */
  sent: number;
  outcomes: Record<Outcome, number>;
  anomalies: number;
  /** Accepted, but still queued when the API stopped waiting for them. */
  pending: number;
  invalid: Array<{ line: number; reason: string }>;
}

interface Problem {
  code?: string;
  detail?: string;
  errors?: Array<{ index?: number; path?: string; message?: string }>;
}

interface Options {
  url: string;
  key: string;
  batchSize: number;
  concurrency: number;
  waitMs: number;
}

/** A failure that ends the whole run (bad key, unreachable API…), as opposed to a bad line. */
class FatalError extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function countLines(path: string): Promise<number> {
  let lines = 0;
  let last = 10;
  for await (const chunk of createReadStream(path)) {
    const buf = chunk as Buffer;
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) lines++;
    if (buf.length > 0) last = buf[buf.length - 1]!;
  }
  return last === 10 ? lines : lines + 1;
}

/** POSTs one body; retries while the API is unreachable, rate-limited or briefly unavailable. */
async function post(o: Options, body: unknown): Promise<{ status: number; json: unknown }> {
  const url = `${o.url.replace(/\/+$/, '')}/v1/events?wait=true&timeoutMs=${o.waitMs}`;
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (err) {
      if (attempt >= 6) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
        throw new FatalError(`cannot reach the API at ${o.url} (${cause}); is promosync running?`);
      }
      await sleep(250 * 2 ** attempt);
      continue;
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = { detail: text.slice(0, 200) };
    }
    const retryable = res.status === 429 || res.status === 502 || res.status === 503 || res.status === 504;
    if (retryable && attempt < 8) {
      const after = Number(res.headers.get('retry-after'));
      await sleep(Number.isFinite(after) && after > 0 ? after * 1000 : 250 * 2 ** Math.min(attempt, 5));
      continue;
    }
    return { status: res.status, json };
  }
}

/** Sends one batch; lines the API rejects are recorded as invalid and the rest sent again. */
async function sendBatch(o: Options, items: Line[], s: SendSummary): Promise<void> {
  let rest = items;
  while (rest.length > 0) {
    const { status, json } = await post(o, { events: rest.map((l) => l.event) });
    if (status === 200 || status === 202) {
      const body = json as { results?: Array<{ outcome: Outcome; anomaly?: boolean }>; pending?: boolean };
      s.sent += rest.length;
      if (body.pending) s.pending += rest.length;
      for (const r of body.results ?? []) {
        s.outcomes[r.outcome] = (s.outcomes[r.outcome] ?? 0) + 1;
        if (r.anomaly) s.anomalies++;
      }
      return;
    }
    const problem = (json ?? {}) as Problem;
    if (status === 400 && problem.code === 'invalid_event') {
      const byIndex = new Map<number, string[]>();
      for (const e of problem.errors ?? []) {
        if (e.index === undefined || rest[e.index] === undefined) continue;
        const list = byIndex.get(e.index) ?? [];
        list.push(e.path && e.path !== '(body)' ? `${e.path}: ${e.message}` : String(e.message));
        byIndex.set(e.index, list);
      }
      if (byIndex.size > 0) {
        for (const [i, reasons] of byIndex)
          s.invalid.push({ line: rest[i]!.line, reason: reasons.join('; ') });
        rest = rest.filter((_, i) => !byIndex.has(i));
        continue;
      }
    }
    if ((status === 400 || status === 413) && rest.length > 1) {
      // No per-event answer: find the culprits one half at a time.
      const half = Math.ceil(rest.length / 2);
      await sendBatch(o, rest.slice(0, half), s);
      await sendBatch(o, rest.slice(half), s);
      return;
    }
    if (status === 400) {
      const reason = problem.errors?.map((e) => `${e.path}: ${e.message}`).join('; ') || problem.detail;
      s.invalid.push({ line: rest[0]!.line, reason: reason ?? `rejected (${status})` });
      return;
    }
    throw new FatalError(`the API answered ${status}: ${problem.detail ?? 'no details'}`);
  }
}

/** Where `send` reports progress: lines done so far and the tally. */
export interface Progress {
  update(done: number, s: SendSummary): void;
  stop(done: number, s: SendSummary): void;
}

/** Progress on stderr: a bar on a terminal, a plain line at most once a second otherwise. */
function progressReporter(total: number | undefined): Progress {
  const stats = (s: SendSummary): Record<string, number> => ({
    applied: s.outcomes.applied,
    stale: s.outcomes.stale,
    duplicate: s.outcomes.duplicate,
    invalid: s.invalid.length,
  });
  if (process.stderr.isTTY && total !== undefined) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format:
          'sending |{bar}| {percentage}% {value}/{total} lines | applied {applied}, stale {stale}, duplicate {duplicate}, invalid {invalid} | {eta_formatted} left',
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, stats(emptySummary()));
    return {
      update: (done, s) => bar.update(done, stats(s)),
      stop: (done, s) => {
        bar.update(done, stats(s));
        bar.stop();
      },
    };
  }
  let last = 0;
  let printed = '';
  const line = (done: number, s: SendSummary): void => {
    const st = stats(s);
    const text = `sent ${done}${total === undefined ? '' : `/${total}`} lines: applied ${st.applied}, stale ${st.stale}, duplicate ${st.duplicate}, invalid ${st.invalid}\n`;
    if (text === printed) return;
    printed = text;
    process.stderr.write(text);
  };
  return {
    update: (done, s) => {
      if (Date.now() - last < 1000) return;
      last = Date.now();
      line(done, s);
    },
    stop: line,
  };
}

function emptySummary(): SendSummary {
  return {
    lines: 0,
    sent: 0,
    outcomes: { applied: 0, stale: 0, duplicate: 0, conflict: 0, rejected: 0 },
    anomalies: 0,
    pending: 0,
    invalid: [],
  };
}

/**
 * Streams NDJSON events to the API in batches of at most `batchSize`, with `?wait=true`, a
 * few requests in flight, and tallies the outcomes. Blank lines are skipped.
 */
export async function sendNdjson(input: Readable, o: Options, progress: Progress): Promise<SendSummary> {
  const s = emptySummary();
  const inFlight = new Set<Promise<void>>();
  // Lines whose fate is known: those of finished batches, and the ones skipped around them.
  let linesDone = 0;
  let linesDispatched = 0;
  let fatal: unknown;
  const dispatch = async (batch: Line[]): Promise<void> => {
    while (inFlight.size >= o.concurrency) await Promise.race(inFlight);
    const covered = s.lines - linesDispatched;
    linesDispatched = s.lines;
    const p: Promise<void> = sendBatch(o, batch, s)
      .catch((err) => {
        fatal ??= err;
      })
      .finally(() => {
        inFlight.delete(p);
        linesDone += covered;
        progress.update(linesDone, s);
      });
    inFlight.add(p);
  };
  let batch: Line[] = [];
  const lines = createInterface({ input, crlfDelay: Infinity });
  for await (const raw of lines) {
    if (fatal) break;
    s.lines++;
    const text = raw.trim();
    if (text === '') continue;
    let event: unknown;
    try {
      event = JSON.parse(text);
    } catch (err) {
      s.invalid.push({ line: s.lines, reason: `not JSON: ${(err as Error).message}` });
      continue;
    }
    if (typeof event !== 'object' || event === null || Array.isArray(event)) {
      s.invalid.push({ line: s.lines, reason: 'expected one event object per line' });
      continue;
    }
    batch.push({ line: s.lines, event });
    if (batch.length >= o.batchSize) {
      await dispatch(batch);
      batch = [];
    }
  }
  lines.close();
  if (batch.length > 0 && !fatal) await dispatch(batch);
  await Promise.all(inFlight);
  progress.stop(s.lines, s);
  if (fatal) throw fatal;
  s.invalid.sort((a, b) => a.line - b.line);
  return s;
}

/** The summary as printed on stdout. */
export function formatSummary(s: SendSummary, source: string, seconds: number): string {
  const rate = seconds > 0 ? ` (${Math.round(s.sent / seconds)} events/s)` : '';
  const out = [`sent ${s.sent} events from ${source} (${s.lines} lines) in ${seconds.toFixed(1)} s${rate}`];
  const row = (name: string, n: number, note = ''): string =>
    `  ${name.padEnd(10)} ${String(n).padStart(8)}${note}`;
  out.push(row('applied', s.outcomes.applied), row('stale', s.outcomes.stale));
  out.push(row('duplicate', s.outcomes.duplicate), row('conflict', s.outcomes.conflict));
  out.push(row('rejected', s.outcomes.rejected));
  out.push(row('anomalies', s.anomalies));
  if (s.pending > 0)
    out.push(row('pending', s.pending, '  (queued; the API stopped waiting before they were applied)'));
  out.push(`invalid lines: ${s.invalid.length}`);
  for (const i of s.invalid) out.push(`  line ${i.line}: ${i.reason}`);
  return `${out.join('\n')}\n`;
}

const positiveInt = (max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new Error(`expected an integer from 1 to ${max}, got ${v}`);
  return n;
};

/** `send <file.ndjson|->`. */
export function registerSend(program: Command): void {
  program
    .command('send')
    .description('push NDJSON events (one event per line) to the API and report their outcomes')
    .argument('<file>', 'an NDJSON file, or - for standard input')
    .option(
      '--url <url>',
      'the API (env PROMOSYNC_URL; default: the running `start`, else http://127.0.0.1:3000)',
    )
    .option('--key <key>', 'a producer or admin API key (env PROMOSYNC_KEY)')
    .option(
      '--batch-size <n>',
      `events per request, at most ${MAX_EVENTS_PER_REQUEST}`,
      positiveInt(MAX_EVENTS_PER_REQUEST),
      1000,
    )
    .option('--concurrency <n>', 'requests in flight', positiveInt(64), 2)
    .option(
      '--wait-ms <ms>',
      'how long the API waits for each batch to be applied',
      positiveInt(120_000),
      60_000,
    )
    .addHelpText(
      'after',
      `
Each batch is posted with ?wait=true, so the summary shows what happened to every event:
applied, stale, duplicate, rejected, and anomalies. Lines that are not JSON or that the API
rejects are listed with their line numbers, and the exit status is 1 if there are any.
Progress goes to stderr (a bar on a terminal), the summary to stdout.

Examples:
  promosync send events.ndjson --key psk_…
  PROMOSYNC_URL=http://promosync:3000 PROMOSYNC_KEY=psk_… promosync send events.ndjson
  producer-export | promosync send - --batch-size 500 > summary.txt`,
    )
    .action(
      async (
        file: string,
        opts: { url?: string; key?: string; batchSize: number; concurrency: number; waitMs: number },
      ) => {
        const config = loadConfig();
        const key = opts.key ?? config.apiKey;
        if (!key) {
          throw new Error(
            'no API key: pass --key or set PROMOSYNC_KEY (create one with `promosync keys create --role producer --source <name>`)',
          );
        }
        const url = opts.url ?? (await resolveTargets(config)).apiUrl;
        const fromStdin = file === '-';
        if (!fromStdin) await stat(file); // a clear ENOENT before anything else
        const total = fromStdin ? undefined : await countLines(file);
        const started = Date.now();
        const summary = await sendNdjson(
          fromStdin ? process.stdin : createReadStream(file),
          { url, key, batchSize: opts.batchSize, concurrency: opts.concurrency, waitMs: opts.waitMs },
          progressReporter(total),
        );
        process.stdout.write(
          formatSummary(summary, fromStdin ? 'stdin' : file, (Date.now() - started) / 1000),
        );
        if (summary.invalid.length > 0) process.exitCode = 1;
      },
    );
}
