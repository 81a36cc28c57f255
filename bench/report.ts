import os from 'node:os';
import type { BenchSettings, ScenarioResult } from './context.ts';

/** One target of the issue / SPEC §7, evaluated on figures of the same run. */
export interface TargetCheck {
  name: string;
  /** The measured ratio or rate, and what it had to reach. */
  value: number;
  goal: string;
  met: boolean;
  detail: string;
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

/** The targets that can be judged from this run's results. */
export function checkTargets(results: ScenarioResult[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const rest = results.filter((r) => r.id.startsWith('rest-') && !r.error).sort((a, b) => b.rate - a.rate)[0];
  const ceiling = byId(results, 'ceiling');
  if (rest) {
    const ratio = ceiling ? rest.rate / ceiling.rate : NaN;
    out.push({
      name: 'Batched ingest',
      value: rest.rate,
      goal: '≥ 100k events/s, or ≥ 0.5× the raw batched-upsert ceiling',
      met: rest.rate >= 100_000 || ratio >= 0.5,
      detail: `${fmtRate(rest.rate)} events/s (${rest.name})${ceiling ? `, ${ratio.toFixed(2)}× the ceiling of ${fmtRate(ceiling.rate)} rows/s` : ''}`,
    });
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
      detail: `${fmtRate(q.rate)} events/s against ${fmtRate(noop.rate)} jobs/s at the same concurrency: ${ratio.toFixed(2)}×${peak ? `; ${(q.rate / peak.rate).toFixed(2)}× the no-op's ${fmtRate(peak.rate)} jobs/s at ${peak.notes[0]?.match(/concurrency \d+/)?.[0] ?? 'its peak concurrency'}` : ''}`,
    });
  }
  for (const [id, factor] of [
    ['sync1', 2],
    ['sync2', 4],
  ] as const) {
    const ref = byId(results, id);
    if (rest && ref) {
      const ratio = rest.rate / ref.rate;
      out.push({
        name: `Batched ingest vs ${id.toUpperCase()}`,
        value: ratio,
        goal: `≥ ${factor}×`,
        met: ratio >= factor,
        detail: `${fmtRate(rest.rate)} against ${fmtRate(ref.rate)} events/s: ${ratio.toFixed(1)}×${q ? `; single-event jobs ${(q.rate / ref.rate).toFixed(1)}×` : ''}`,
      });
    }
  }
  out.push(...capacityTargets(results));
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
      detail: `${fmtRate(ours.rate)} against ${fmtRate(ref.rate)} reservations/s: ${ratio.toFixed(2)}×`,
    });
  }
  if (half?.latency) {
    out.push({
      name: 'Reservation latency at half peak',
      value: half.latency.p99,
      goal: 'p99 ≤ 20 ms',
      met: half.latency.p99 <= 20,
      detail: `p50 ${half.latency.p50.toFixed(1)} ms, p99 ${half.latency.p99.toFixed(1)} ms at ${fmtRate(half.rate)} reservations/s`,
    });
  }
  if (ours && many) {
    out.push({
      name: 'Reservations over 100 promotions',
      value: many.rate / ours.rate,
      goal: '≥ the hot promotion’s rate',
      met: many.rate >= ours.rate,
      detail: `${fmtRate(many.rate)} against ${fmtRate(ours.rate)} reservations/s`,
    });
  }
  if (expiry?.latency) {
    out.push({
      name: 'Hold expiry recorded',
      value: expiry.latency.p99,
      goal: 'p99 ≤ 1 s after expiresAt',
      met: expiry.latency.p99 <= 1000,
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

/** Rows of the results table: design, rate, ratio to the reference, latency, correctness, CPU. */
export function tableRows(results: ScenarioResult[]): string[][] {
  const ceiling = byId(results, 'ceiling');
  const noop = byId(results, 'queue-noop');
  const sync1 = byId(results, 'sync1');
  return results.map((r) => {
    const ref = r.id.startsWith('queue-') ? noop : r.id.startsWith('rest-') ? ceiling : sync1;
    const ratio = ref && ref !== r && !r.error ? `${(r.rate / ref.rate).toFixed(2)}× ${ref.id}` : '';
    return [
      r.name,
      r.error ? `FAILED` : `${fmtRate(r.rate)} ${r.unit}`,
      ratio,
      fmtMs(r.latency?.p50),
      fmtMs(r.latency?.p99),
      r.error && !r.convergence ? r.error.split('\n')[0]!.slice(0, 80) : correctness(r),
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
    lines.push(`- ${t.met ? 'met' : '**not met**'}: ${t.name} (${t.goal}): ${t.detail}`);
  lines.push('', '## Notes', '');
  for (const r of report.results) {
    for (const n of r.notes) lines.push(`- ${r.id}: ${n}`);
    if (r.error) lines.push(`- ${r.id}: error: ${r.error.split('\n')[0]}`);
    for (const ex of r.convergence?.examples ?? []) lines.push(`- ${r.id}: ${ex}`);
  }
  return `${lines.join('\n')}\n`;
}
