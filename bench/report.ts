import os from 'node:os';
import type { BenchSettings, ScenarioResult } from './context.ts';

/** One target, evaluated on figures of the same run. */
export interface TargetCheck {
  name: string;
  /** The measured ratio. */
  value: number;
  goal: string;
  met: boolean;
  /** The ids of the two figures the ratio divides: promosync's and the reference design's. */
  figure: string;
  reference: string;
  detail: string;
}

/** A ratio of the table: `design`'s rate over `reference`'s, both from this run. */
export interface Ratio {
  design: string;
  reference: string;
  ratio: number;
}

/** Everything a run produced; written as JSON, summarised as markdown. */
export interface BenchReport {
  mode: 'quick' | 'full' | 'custom';
  startedAt: string;
  machine: Record<string, string | number>;
  settings: Omit<BenchSettings, 'serverUrl' | 'redisUrl'>;
  /** Runs of each scenario; each result is the median run. */
  rounds: number;
  workload: { events: number; entities: number; duplicates: number; dropped: number; seed: number };
  results: ScenarioResult[];
  /** Every ratio the table shows. */
  ratios: Ratio[];
  targets: TargetCheck[];
  /** False when any promosync run failed or did not converge. */
  ok: boolean;
}

export function machineInfo(extra: Record<string, string>): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverageAtStart: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    ...extra,
  };
}

const byId = (results: ScenarioResult[], id: string): ScenarioResult | undefined =>
  results.find((r) => r.id === id && !r.error);

/** The best batched REST run: the figure of batched ingest. */
function bestRest(results: ScenarioResult[]): ScenarioResult | undefined {
  return results.filter((r) => r.id.startsWith('rest-') && !r.error).sort((a, b) => b.rate - a.rate)[0];
}

/**
 * The targets that can be judged from this run's results, each a ratio of two figures of the
 * run: batched ingest (its best REST layout) against the write set and against SYNC1 and SYNC2
 * driven by pgbench; single-event jobs against BullMQ's no-op worker. The Node-driven
 * references and the raw batched upsert are context in the detail.
 */
export function checkTargets(results: ScenarioResult[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const rest = bestRest(results);
  const vs = (id: string): string => {
    const ref = byId(results, id);
    return rest && ref
      ? `${(rest.rate / ref.rate).toFixed(2)}× ${id} (${fmtRate(ref.rate)} ${ref.unit})`
      : '';
  };
  const context = (ids: string[]): string => {
    const parts = ids.map(vs).filter((p) => p !== '');
    return parts.length > 0 ? `; for context: ${parts.join(', ')}` : '';
  };
  const ws = byId(results, 'write-set');
  if (rest && ws) {
    const ratio = rest.rate / ws.rate;
    out.push({
      name: 'Batched ingest vs the write set',
      value: ratio,
      goal: '≥ 0.6× the same rows written with no logic',
      met: ratio >= 0.6,
      figure: rest.id,
      reference: ws.id,
      detail: `${fmtRate(rest.rate)} events/s (${rest.id}) against ${fmtRate(ws.rate)} events/s (${ws.id}): ${ratio.toFixed(2)}×${context(['write-set-pgbench', 'ceiling'])}`,
    });
  }
  for (const [id, factor] of [
    ['sync1', 1.5],
    ['sync2', 4],
  ] as const) {
    const ref = byId(results, `${id}-pgbench`);
    if (rest && ref) {
      const ratio = rest.rate / ref.rate;
      out.push({
        name: `Batched ingest vs ${id.toUpperCase()} driven by pgbench`,
        value: ratio,
        goal: `≥ ${factor}×`,
        met: ratio >= factor,
        figure: rest.id,
        reference: ref.id,
        detail: `${fmtRate(rest.rate)} events/s (${rest.id}) against ${fmtRate(ref.rate)} events/s (${ref.id}): ${ratio.toFixed(2)}×${context([id])}`,
      });
    }
  }
  const q = byId(results, 'queue-promosync');
  const noop = byId(results, 'queue-noop');
  const peak = byId(results, 'queue-noop-peak');
  if (q && noop) {
    const ratio = q.rate / noop.rate;
    out.push({
      name: 'Single-event jobs',
      value: ratio,
      goal: '≥ 0.8× BullMQ no-op worker',
      met: ratio >= 0.8,
      figure: q.id,
      reference: noop.id,
      detail: `${fmtRate(q.rate)} events/s (${q.id}) against ${fmtRate(noop.rate)} jobs/s (${noop.id}) at the same concurrency: ${ratio.toFixed(2)}×${peak ? `; ${(q.rate / peak.rate).toFixed(2)}× the no-op's ${fmtRate(peak.rate)} jobs/s at ${peak.notes[0]?.match(/concurrency \d+/)?.[0] ?? 'its peak concurrency'}` : ''}`,
    });
  }
  out.push(...capacityTargets(results));
  return out;
}

/**
 * The figures a result is shown against: batched ingest against both ceilings, single-event
 * jobs against the no-op worker, a pgbench-driven design against its Node-driven twin, the
 * write set against the raw batched upsert, promosync's reservations against the reference
 * endpoint and the in-memory Lua endpoint, the other designs against SYNC1.
 */
function referencesOf(id: string): string[] {
  if (id.startsWith('rest-')) return ['ceiling', 'write-set'];
  if (id === 'capacity-promosync' || id === 'capacity-100') return ['capacity-reference', 'capacity-lua'];
  if (id === 'capacity-lua') return ['capacity-reference'];
  if (id.startsWith('capacity-')) return [];
  if (id.startsWith('queue-')) return ['queue-noop'];
  if (id.endsWith('-pgbench')) return [id.slice(0, -'-pgbench'.length)];
  if (id === 'write-set') return ['ceiling'];
  return ['sync1'];
}

/** Every ratio of the table, for the JSON. */
export function tableRatios(results: ScenarioResult[]): Ratio[] {
  const out: Ratio[] = [];
  for (const r of results) {
    if (r.error) continue;
    for (const refId of referencesOf(r.id)) {
      const ref = byId(results, refId);
      if (ref && ref !== r && Number.isFinite(r.rate / ref.rate))
        out.push({ design: r.id, reference: ref.id, ratio: r.rate / ref.rate });
    }
  }
  return out;
}

/** The capacity targets: ≥ 5× the per-request UPDATE, p99 ≤ 20 ms at half peak, 100 promotions ≥ one. */
function capacityTargets(results: ScenarioResult[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const ours = byId(results, 'capacity-promosync');
  const ref = byId(results, 'capacity-reference');
  const half = byId(results, 'capacity-half-peak');
  const many = byId(results, 'capacity-100');
  const expiry = byId(results, 'capacity-expiry');
  if (ours && ref) {
    const ratio = ours.rate / ref.rate;
    out.push({
      name: 'Reservations on one hot promotion',
      value: ratio,
      goal: '≥ 5× one conditional UPDATE per request',
      met: ratio >= 5,
      figure: ours.id,
      reference: ref.id,
      detail: `${fmtRate(ours.rate)} against ${fmtRate(ref.rate)} reservations/s: ${ratio.toFixed(2)}×`,
    });
  }
  if (half?.latency) {
    out.push({
      name: 'Reservation latency at half peak',
      value: half.latency.p99,
      goal: 'p99 ≤ 20 ms',
      met: half.latency.p99 <= 20,
      figure: half.id,
      reference: half.id,
      detail: `p50 ${half.latency.p50.toFixed(1)} ms, p99 ${half.latency.p99.toFixed(1)} ms at ${fmtRate(half.rate)} reservations/s`,
    });
  }
  if (ours && many) {
    out.push({
      name: 'Reservations over 100 promotions',
      value: many.rate / ours.rate,
      goal: '≥ the hot promotion’s rate',
      met: many.rate >= ours.rate,
      figure: many.id,
      reference: ours.id,
      detail: `${fmtRate(many.rate)} against ${fmtRate(ours.rate)} reservations/s`,
    });
  }
  if (expiry?.latency) {
    out.push({
      name: 'Hold expiry recorded',
      value: expiry.latency.p99,
      goal: 'p99 ≤ 1 s after expiresAt',
      met: expiry.latency.p99 <= 1000,
      figure: expiry.id,
      reference: expiry.id,
      detail: `p50 ${expiry.latency.p50.toFixed(0)} ms, p99 ${expiry.latency.p99.toFixed(0)} ms over ${expiry.latency.samples} holds`,
    });
  }
  return out;
}

export function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : n >= 1000 ? `${(n / 1000).toFixed(2)}k` : n.toFixed(0);
}

function fmtMs(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '' : `${Math.round(n)} ms`;
}

function correctness(r: ScenarioResult): string {
  if (r.convergence) {
    const c = r.convergence;
    return c.ok
      ? `converged (${c.entities} entities)`
      : `FAILED: ${c.wrong} wrong, ${c.missing} missing, ${c.unexpected} unexpected, ${c.logged}/${c.sent} logged`;
  }
  if (r.rowCounts) {
    const { got, want } = r.rowCounts;
    return r.rowCounts.ok
      ? `rows right (${got.eventLog} logged, ${got.eventKey} keys, ${got.entity} entities)`
      : `FAILED: ${got.eventLog}/${want.eventLog} logged, ${got.eventKey}/${want.eventKey} keys, ${got.entity}/${want.entity} entities`;
  }
  if (r.wrongStatuses !== undefined)
    return r.wrongStatuses === 0 ? 'statuses right' : `${r.wrongStatuses} wrong statuses`;
  return '';
}

function cpuSplit(r: ScenarioResult): string {
  if (!r.cpu || r.cpu.wall <= 0 || r.count === 0) return '';
  const parts = Object.entries(r.cpu.seconds)
    .filter(([, s]) => s / r.cpu!.wall >= 0.02)
    .sort((a, b) => b[1] - a[1])
    .map(([k, s]) => `${k.replace(/^promosync /, '')} ${Math.round((1e6 * s) / r.count)}`);
  return `${parts.join(', ')}; machine ${Math.round(100 * r.cpu.machineBusy)}% busy`;
}

/** Rows of the results table: design, rate, ratio to the references, latency, correctness, CPU. */
export function tableRows(results: ScenarioResult[]): string[][] {
  const ratios = tableRatios(results);
  return results.map((r) => {
    const ratio = ratios
      .filter((x) => x.design === r.id)
      .map((x) => `${x.ratio.toFixed(2)}× ${x.reference}`)
      .join(', ');
    return [
      r.name,
      r.error ? `FAILED` : `${fmtRate(r.rate)} ${r.unit}`,
      ratio,
      fmtMs(r.latency?.p50),
      fmtMs(r.latency?.p99),
      r.error && !r.convergence && !r.rowCounts ? r.error.split('\n')[0]!.slice(0, 80) : correctness(r),
      cpuSplit(r),
    ];
  });
}

export const HEADER = [
  'Design',
  'Throughput',
  'Ratio',
  'p50',
  'p99',
  'Correctness',
  'CPU µs per event (per job, per row)',
];

/** A plain-text table for the terminal. */
export function textTable(rows: string[][]): string {
  const all = [HEADER, ...rows];
  const widths = HEADER.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(HEADER), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function markdownTable(rows: string[][]): string {
  const esc = (c: string): string => c.replace(/\|/g, '\\|');
  return [
    `| ${HEADER.join(' | ')} |`,
    `|${HEADER.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** The markdown summary of a run: machine, input, table, targets, notes. */
export function markdownReport(report: BenchReport): string {
  const lines: string[] = [];
  lines.push(`# promosync benchmark (${report.mode})`, '');
  lines.push(
    `Run ${report.startedAt}. ${report.ok ? 'Every promosync run converged.' : '**Some run failed or did not converge.**'}`,
    '',
  );
  lines.push('## Machine', '');
  for (const [k, v] of Object.entries(report.machine)) lines.push(`- ${k}: ${v}`);
  lines.push('', '## Input', '');
  const w = report.workload;
  lines.push(
    `${w.events} events over ${w.entities} entities (seed ${w.seed}): valid histories from random walks of the promotion machine, ${w.dropped} intermediate events dropped, ${w.duplicates} duplicates, shuffled.`,
    '',
    `Settings: \`${JSON.stringify(report.settings)}\``,
    '',
    ...(report.rounds > 1
      ? [
          `Every scenario ran ${report.rounds} times, interleaved; each line is its median run (all rounds in the notes).`,
          '',
        ]
      : []),
  );
  lines.push('## Results', '', markdownTable(tableRows(report.results)), '');
  lines.push('## Targets', '');
  for (const t of report.targets)
    lines.push(
      `- ${t.met ? 'met' : '**not met**'}: ${t.name} (${t.goal}; \`${t.figure}\` over \`${t.reference}\`): ${t.detail}`,
    );
  lines.push('', '## Notes', '');
  for (const r of report.results) {
    for (const n of r.notes) lines.push(`- ${r.id}: ${n}`);
    if (r.error) lines.push(`- ${r.id}: error: ${r.error.split('\n')[0]}`);
    for (const ex of r.convergence?.examples ?? []) lines.push(`- ${r.id}: ${ex}`);
  }
  return `${lines.join('\n')}\n`;
}
