import { getInitialSnapshot, getNextSnapshot, type AnyStateMachine } from 'xstate';
import type { EventInput, MachineInfo } from '../src/domain/index.ts';

/** A small, fast, seeded PRNG (mulberry32): the same seed gives the same workload on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Snapshot = ReturnType<typeof getInitialSnapshot>;
interface Step {
  possible: string[];
  next: Map<string, Snapshot>;
}
const stepCache = new WeakMap<AnyStateMachine, { initial: Snapshot; steps: Map<string, Step> }>();

/**
 * Event types, in valid order, of a random walk through the machine itself: the creation
 * event, then at each step one of the events the current XState snapshot accepts
 * (`can`/`getNextSnapshot`), until the machine is final or the walk has `steps` steps.
 * Transitions are cached by state value: the generated machines keep no context, so a
 * state's possible events and successors never change, and the walk stays fast for 100k events.
 */
export function walk(info: MachineInfo, steps: number, random: () => number): string[] {
  const machine: AnyStateMachine = info.machine;
  const creation = info.analysis.creationEvent;
  const types = info.analysis.events.map((e) => e.type).filter((t) => t !== creation);
  let cache = stepCache.get(machine);
  if (!cache) stepCache.set(machine, (cache = { initial: getInitialSnapshot(machine), steps: new Map() }));
  const known = cache.steps;
  const stepOf = (snapshot: Snapshot): Step => {
    const k = JSON.stringify(snapshot.value);
    let step = known.get(k);
    if (!step) {
      const possible = snapshot.status === 'active' ? types.filter((t) => snapshot.can({ type: t })) : [];
      step = {
        possible,
        next: new Map(possible.map((t) => [t, getNextSnapshot(machine, snapshot, { type: t })])),
      };
      known.set(k, step);
    }
    return step;
  };
  let snapshot = cache.initial;
  const out = creation ? [creation] : [];
  for (let i = 0; i < steps; i++) {
    const { possible, next } = stepOf(snapshot);
    if (possible.length === 0) break;
    const type = possible[Math.floor(random() * possible.length)]!;
    snapshot = next.get(type)!;
    out.push(type);
  }
  return out;
}

/** One entity's valid history and the part of it the transport delivered. */
export interface History {
  entityId: string;
  /** The valid history, in order. */
  events: EventInput[];
  /** What survived the transport, still in history order: the input of the expected state. */
  delivered: EventInput[];
}

/** The input every design of a run consumes, identical for all of them. */
export interface Workload {
  machine: string;
  seed: number;
  histories: History[];
  /** Everything sent, in arrival order: shuffled, with duplicates. */
  sent: EventInput[];
  duplicates: number;
  dropped: number;
}

export interface WorkloadOptions {
  /** At least this many events are sent (duplicates included). */
  minEvents: number;
  /** At least this many entities. */
  minEntities: number;
  seed?: number;
  /** Share of the sent events that are a second copy of another. @defaultValue 0.1 */
  duplicateRate?: number;
  /** Share of the non-last events lost in transit. @defaultValue 0.1 */
  dropRate?: number;
  /** Prefix of entity ids, so several workloads can share a database. @defaultValue 'p' */
  prefix?: string;
}

const FIELDS = ['title', 'discount', 'budget', 'channel'] as const;

function randomData(random: () => number): EventInput['data'] {
  if (random() < 0.4) return undefined;
  const data: Record<string, string | number | boolean | null> = {};
  const n = 1 + Math.floor(random() * 3);
  for (let i = 0; i < n; i++) {
    const name = FIELDS[Math.floor(random() * FIELDS.length)]!;
    const r = random();
    data[name] =
      r < 0.4
        ? `v${Math.floor(random() * 1e6).toString(36)}`
        : r < 0.7
          ? Math.floor(random() * 2000) - 1000
          : r < 0.9
            ? random() < 0.5
            : null;
  }
  return data;
}

/**
 * Valid histories from random walks of the machine, with versions on half of them, partial
 * `data` and the entity's merchant on some events; then what an unreliable transport makes
 * of them: some intermediate events lost (never an entity's last one), some sent twice, all
 * shuffled together.
 */
export function makeWorkload(info: MachineInfo, opts: WorkloadOptions): Workload {
  const seed = opts.seed ?? 1;
  const random = prng(seed);
  const dupRate = opts.duplicateRate ?? 0.1;
  const dropRate = opts.dropRate ?? 0.1;
  const prefix = opts.prefix ?? 'p';
  const machine = info.analysis.name;
  const needsVersion = info.analysis.ordering === 'version';
  const histories: History[] = [];
  const kept: EventInput[] = [];
  let dropped = 0;
  // Sent ≈ kept · (1 + dupRate): keep generating until both minimums hold.
  const keptTarget = Math.ceil(opts.minEvents / (1 + dupRate));
  for (let n = 0; histories.length < opts.minEntities || kept.length < keptTarget; n++) {
    const entityId = `${prefix}-${n.toString(36)}`;
    const types = walk(info, Math.floor(random() * 4), random);
    const withVersions = needsVersion || random() < 0.5;
    const versionStart = Math.floor(random() * 1000);
    const merchantId = `m-${n % 97}`;
    const events = types.map((type, i): EventInput => {
      const e: EventInput = { machine, entityId, type, eventId: `${entityId}-e${i}` };
      if (withVersions) e.version = versionStart + i * 3 + 1;
      if (random() < 0.5) e.merchantId = merchantId;
      const data = randomData(random);
      if (data) e.data = data;
      return e;
    });
    const delivered = events.filter((_, i) => {
      const lost = i < events.length - 1 && random() < dropRate;
      if (lost) dropped += 1;
      return !lost;
    });
    histories.push({ entityId, events, delivered });
    kept.push(...delivered);
  }
  const sent = kept.slice();
  const copies = Math.round(kept.length * dupRate);
  for (let i = 0; i < copies; i++) sent.push(kept[Math.floor(random() * kept.length)]!);
  for (let i = sent.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [sent[i], sent[j]] = [sent[j]!, sent[i]!];
  }
  return { machine, seed, histories, sent, duplicates: copies, dropped };
}

/** The workload's events in chunks of `size`, in arrival order. */
export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
