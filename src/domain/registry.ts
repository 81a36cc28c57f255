import type { AnyStateMachine } from 'xstate';
import { analyzeMachine, type EventRank, type MachineAnalysis } from './ranking.ts';
import type { FieldValue } from './field-limits.ts';
import { orderingKey } from './ordering.ts';
import { PromosyncError, type FieldProblem } from './errors.ts';
import {
  DEFAULT_EVENT_LIMITS,
  eventSchema,
  limitProblems,
  plainEvent,
  problemsOf,
  rawProblems,
  type EventInput,
  type EventLimits,
} from './event-schema.ts';

/** An event that passed validation and knows its machine: what the apply step consumes. */
export interface PreparedEvent {
  machine: string;
  entityId: string;
  type: string;
  /** K(e), see {@link orderingKey}. */
  key: bigint;
  target: string;
  version: number | null;
  eventId: string | null;
  source: string;
  merchantId: string | null;
  /** Non-null fields only; null fields mean "no change" and are dropped here. */
  data: Record<string, FieldValue> | null;
  occurredAt: string | null;
  /** The owners besides its own source this event may act for: the sending key's grants. */
  mayWriteFor?: readonly string[];
}

/** One machine, analysed and indexed for the hot path. */
export interface MachineInfo {
  analysis: MachineAnalysis;
  machine: AnyStateMachine;
  events: ReadonlyMap<string, EventRank>;
  /** from-state → states reachable in one or more steps. */
  reach: ReadonlyMap<string, ReadonlySet<string>>;
}

/** The machines promosync serves, analysed once at start. */
export class MachineRegistry {
  private readonly byName: Map<string, MachineInfo>;

  private constructor(
    infos: MachineInfo[],
    /** The attribute limits {@link MachineRegistry.validate} holds events to. */
    readonly limits: Readonly<EventLimits>,
  ) {
    this.byName = new Map(infos.map((i) => [i.analysis.name, i]));
  }

  /**
   * Analyses every machine.
   * @param limits the attribute limits of incoming events. @defaultValue {@link DEFAULT_EVENT_LIMITS}
   * @throws PromosyncError `machine_invalid` naming each machine with errors (unless `allowInvalid`).
   */
  static from(
    machines: Readonly<Record<string, AnyStateMachine>>,
    allowInvalid = false,
    limits: Readonly<EventLimits> = DEFAULT_EVENT_LIMITS,
  ): MachineRegistry {
    const infos = Object.entries(machines).map(([name, machine]) => {
      const analysis = analyzeMachine(name, machine);
      return {
        analysis,
        machine,
        events: new Map(analysis.events.map((e) => [e.type, e])),
        reach: new Map(Object.entries(analysis.reachable).map(([s, r]) => [s, new Set(r)])),
      };
    });
    const bad = infos.filter((i) => !i.analysis.ok);
    if (bad.length > 0 && !allowInvalid) {
      const lines = bad.flatMap((i) =>
        i.analysis.diagnostics
          .filter((d) => d.level === 'error')
          .map((d) => `${i.analysis.name}: ${d.message}`),
      );
      throw new PromosyncError('machine_invalid', `invalid machine definition(s):\n${lines.join('\n')}`);
    }
    return new MachineRegistry(infos, limits);
  }

  get(name: string): MachineInfo | undefined {
    return this.byName.get(name);
  }

  list(): MachineInfo[] {
    return [...this.byName.values()];
  }

  byCollection(collection: string): MachineInfo | undefined {
    return this.list().find((i) => i.analysis.collection === collection);
  }

  /** Whether `to` is reachable from `from` in the machine: applied moves that are not are anomalies. */
  isReachable(machine: string, from: string, to: string): boolean {
    return this.byName.get(machine)?.reach.get(from)?.has(to) ?? false;
  }

  /**
   * Resolves validated events against their machines.
   * @throws PromosyncError `invalid_event` listing each event whose machine, type or version is wrong.
   */
  prepare(inputs: EventInput[], source: string, indexed: boolean): PreparedEvent[] {
    const problems: FieldProblem[] = [];
    const out: PreparedEvent[] = [];
    inputs.forEach((e, i) => {
      const r = this.resolve(e, source, indexed ? i : undefined);
      if ('problem' in r) problems.push(r.problem);
      else out.push(r.event);
    });
    if (problems.length > 0) {
      throw new PromosyncError('invalid_event', `${problems.length} problem(s) in the events`, { problems });
    }
    return out;
  }

  /**
   * Validates raw events against the contract, the attribute limits and their machines at once,
   * so a client sees every problem of every event in one answer. The API and the worker both
   * validate through here.
   * @throws PromosyncError `invalid_event` listing them; nothing is returned unless all are valid.
   */
  validate(
    raw: unknown[],
    source: string,
    indexed: boolean,
  ): { inputs: EventInput[]; events: PreparedEvent[] } {
    const problems: FieldProblem[] = [];
    const inputs: EventInput[] = [];
    const events: PreparedEvent[] = [];
    raw.forEach((item, i) => {
      const at = indexed ? i : undefined;
      let input = plainEvent(item);
      if (!input) {
        const early = rawProblems(item, at);
        problems.push(...early);
        const parsed = eventSchema.safeParse(item);
        if (!parsed.success) {
          problems.push(...problemsOf(parsed.error, at));
          return;
        }
        if (early.length > 0) return;
        input = parsed.data;
      }
      const over = limitProblems(input.data, this.limits, at);
      problems.push(...over);
      const r = this.resolve(input, source, at);
      if ('problem' in r) problems.push(r.problem);
      else if (over.length === 0) {
        inputs.push(input);
        events.push(r.event);
      }
    });
    if (problems.length > 0) {
      throw new PromosyncError('invalid_event', `${problems.length} problem(s) in the events`, { problems });
    }
    return { inputs, events };
  }

  private resolve(
    e: EventInput,
    source: string,
    index: number | undefined,
  ): { event: PreparedEvent } | { problem: FieldProblem } {
    const at = index === undefined ? {} : { index };
    const info = this.byName.get(e.machine);
    if (!info) {
      return {
        problem: {
          ...at,
          path: 'machine',
          message: `unknown machine "${e.machine}"; known: ${[...this.byName.keys()].join(', ')}`,
        },
      };
    }
    const rank = info.events.get(e.type);
    if (!rank) {
      return {
        problem: {
          ...at,
          path: 'type',
          message: `"${e.type}" is not an event of machine "${e.machine}"; expected one of ${[...info.events.keys()].join(', ')}`,
        },
      };
    }
    if (info.analysis.ordering === 'version' && e.version === undefined) {
      return {
        problem: {
          ...at,
          path: 'version',
          message: `machine "${e.machine}" is ordered by version: version is required`,
        },
      };
    }
    let data: Record<string, FieldValue> | null = null;
    if (e.data) {
      for (const [k, v] of Object.entries(e.data)) {
        if (v !== null) (data ??= Object.create(null) as Record<string, FieldValue>)[k] = v;
      }
    }
    return {
      event: {
        machine: e.machine,
        entityId: e.entityId,
        type: e.type,
        key: orderingKey(info.analysis.ordering, rank.rank, e.version),
        target: rank.target,
        version: e.version ?? null,
        eventId: e.eventId ?? null,
        source,
        merchantId: e.merchantId ?? null,
        data,
        occurredAt: e.occurredAt ?? null,
      },
    };
  }
}
