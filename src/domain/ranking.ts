import type { AnyStateMachine } from 'xstate';
import { machineGraph, type Transition } from './machine-graph.ts';
import type { Diagnostic, EventRank, MachineAnalysis, Ordering } from './analysis-types.ts';
import { RANK_SLOTS } from './ordering.ts';

export type { Diagnostic, EventRank, MachineAnalysis, Ordering } from './analysis-types.ts';

/** The largest rank a machine may have: ranks share a 63-bit ordering key with versions. */
export const MAX_RANK = RANK_SLOTS - 1;

interface MachineMeta {
  ordering: Ordering;
  creationEvent: string | undefined;
  overrides: Record<string, number>;
  collection: string;
}

function readMeta(machine: AnyStateMachine, diagnostics: Diagnostic[]): MachineMeta {
  const meta = (machine.root.meta ?? {}) as Record<string, unknown>;
  const ordering = meta.ordering ?? 'rank';
  if (ordering !== 'rank' && ordering !== 'version') {
    diagnostics.push({
      level: 'error',
      code: 'bad_meta',
      message: `meta.ordering must be "rank" or "version", got ${JSON.stringify(ordering)}`,
    });
  }
  const overrides: Record<string, number> = {};
  const rawRanks = meta.ranks ?? {};
  if (typeof rawRanks !== 'object' || rawRanks === null || Array.isArray(rawRanks)) {
    diagnostics.push({
      level: 'error',
      code: 'bad_meta',
      message: 'meta.ranks must map event types to numbers',
    });
  } else {
    for (const [event, value] of Object.entries(rawRanks)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        diagnostics.push({
          level: 'error',
          code: 'bad_meta',
          event,
          message: `meta.ranks.${event} must be a finite number, got ${JSON.stringify(value)}`,
        });
      } else overrides[event] = value;
    }
  }
  const creationEvent = typeof meta.creationEvent === 'string' ? meta.creationEvent : undefined;
  const collection = typeof meta.collection === 'string' ? meta.collection : `${machine.id}s`;
  return { ordering: ordering === 'version' ? 'version' : 'rank', creationEvent, overrides, collection };
}

/** Strongly connected components (Tarjan), each listed in definition order. */
function components(nodes: string[], edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      out.push(scc.sort((a, b) => nodes.indexOf(a) - nodes.indexOf(b)));
    }
  };
  for (const v of nodes) if (!index.has(v)) visit(v);
  return out;
}

function isCyclic(scc: string[], edges: Map<string, Set<string>>): boolean {
  return scc.length > 1 || edges.get(scc[0]!)?.has(scc[0]!) === true;
}

/**
 * A concrete loop of the state graph through `event`, written the way a reader draws it:
 * `ACTIVATED -pause-> PAUSED -activate-> ACTIVATED`.
 */
function describeCycle(event: string, members: Set<string>, transitions: Transition[]): string {
  for (const start of transitions.filter((t) => t.event === event && t.from !== null)) {
    // Shortest way back from the event's target to its source, preferring the cycle's events.
    const prev = new Map<string, Transition>();
    const queue = [start.to];
    const seen = new Set([start.to]);
    while (queue.length > 0) {
      const s = queue.shift()!;
      if (s === start.from) break;
      const outgoing = transitions
        .filter((t) => t.from === s)
        .sort((a, b) => Number(!members.has(a.event)) - Number(!members.has(b.event)));
      for (const t of outgoing) {
        if (!seen.has(t.to)) {
          seen.add(t.to);
          prev.set(t.to, t);
          queue.push(t.to);
        }
      }
    }
    if (start.from !== start.to && !prev.has(start.from!)) continue;
    const path: Transition[] = [start];
    for (let s = start.from!; s !== start.to;) {
      const t = prev.get(s)!;
      path.splice(1, 0, t);
      s = t.from!;
    }
    return [start.from!, ...path.map((t) => `-${t.event}-> ${t.to}`)].join(' ');
  }
  return [...members].join(' -> ');
}

/**
 * Derives the rank of every event type of an XState machine (docs/design.md#ranks): if event
 * A can happen before event B in some valid history, rank(A) < rank(B). Pure; never throws on
 * a bad definition, which is reported in `diagnostics` instead.
 */
export function analyzeMachine(name: string, machine: AnyStateMachine): MachineAnalysis {
  const diagnostics: Diagnostic[] = [];
  const meta = readMeta(machine, diagnostics);
  const graph = machineGraph(machine, meta.creationEvent, diagnostics);
  const { states, transitions, eventOrder } = graph;

  // The single target of each event.
  const targets = new Map<string, string>();
  const from = new Map<string, string[]>();
  for (const t of transitions) {
    const known = targets.get(t.event);
    if (known === undefined) targets.set(t.event, t.to);
    else if (known !== t.to) {
      const first = transitions.find((x) => x.event === t.event && x.to === known)!;
      diagnostics.push({
        level: 'error',
        code: 'ambiguous_target',
        event: t.event,
        message:
          `event "${t.event}" leads to different states: ${first.from ?? '(start)'} -> ${known} and ` +
          `${t.from ?? '(start)'} -> ${t.to}; an event must determine the next state on its own`,
      });
    }
    const list = from.get(t.event) ?? [];
    if (t.from !== null && !list.includes(t.from)) list.push(t.from);
    from.set(t.event, list);
  }

  // reach.get(s): states reachable from s in one or more steps.
  const reach = new Map<string, Set<string>>();
  for (const s of states) {
    const seen = new Set<string>();
    const queue = transitions.filter((t) => t.from === s).map((t) => t.to);
    while (queue.length > 0) {
      const x = queue.shift()!;
      if (seen.has(x)) continue;
      seen.add(x);
      for (const t of transitions) if (t.from === x) queue.push(t.to);
    }
    reach.set(s, seen);
  }
  const reachable0 = (a: string, b: string): boolean => a === b || (reach.get(a)?.has(b) ?? false);

  // Precedence: A before B when B's source can be reached from A's target.
  const edges = new Map<string, Set<string>>(eventOrder.map((e) => [e, new Set<string>()]));
  for (const a of transitions) {
    for (const b of transitions) {
      if (b.from !== null && reachable0(a.to, b.from)) edges.get(a.event)!.add(b.event);
    }
  }
  const originalSccs = components(eventOrder, edges);
  const sccOf = new Map<string, number>();
  originalSccs.forEach((scc, i) => scc.forEach((e) => sccOf.set(e, i)));

  // Overrides replace the machine's precedence between the events they name.
  const order = new Map<string, Set<string>>(eventOrder.map((e) => [e, new Set(edges.get(e))]));
  const overridden = Object.keys(meta.overrides);
  for (const e of overridden) {
    if (!edges.has(e)) {
      diagnostics.push({
        level: 'error',
        code: 'bad_override',
        event: e,
        message: `meta.ranks names "${e}", which is not an event of this machine`,
      });
    }
  }
  const known = overridden.filter((e) => edges.has(e));
  for (const a of known) {
    for (const b of known) {
      if (a === b) continue;
      const ra = meta.overrides[a]!;
      const rb = meta.overrides[b]!;
      if (ra === rb && a < b) {
        diagnostics.push({
          level: 'error',
          code: 'bad_override',
          event: a,
          message: `meta.ranks gives "${a}" and "${b}" the same rank ${ra}; override ranks must differ`,
        });
      }
      if (ra < rb) order.get(a)!.add(b);
      if (ra > rb && edges.get(a)!.has(b)) {
        order.get(a)!.delete(b);
        const cycle = sccOf.get(a) === sccOf.get(b);
        diagnostics.push({
          level: cycle ? 'warning' : 'error',
          code: cycle ? 'override_drops_precedence' : 'bad_override',
          event: a,
          message: cycle
            ? `meta.ranks puts "${b}" (${rb}) below "${a}" (${ra}): a late "${b}" is treated as older than ` +
              `"${a}" although "${a}" can happen before "${b}"`
            : `meta.ranks contradicts the machine: "${a}" always happens before "${b}" ` +
              `but is ranked above it (${ra} > ${rb})`,
        });
      }
    }
  }
  for (const e of eventOrder) order.get(e)!.delete(e);
  for (const e of eventOrder) {
    // A self-loop is a cycle of its own unless the event's rank is pinned.
    if (edges.get(e)!.has(e) && !(e in meta.overrides)) order.get(e)!.add(e);
  }

  const sccs = components(eventOrder, order);
  const cyclic = sccs.filter((scc) => isCyclic(scc, order));
  for (const scc of cyclic) {
    const members = new Set(scc);
    const cycle = describeCycle(scc[0]!, members, transitions);
    diagnostics.push({
      level: meta.ordering === 'version' ? 'info' : 'error',
      code: 'cycle',
      event: scc[0]!,
      cycle: scc,
      message:
        meta.ordering === 'version'
          ? `cycle ${cycle}: ordered by the producer's version (meta.ordering = "version")`
          : `cycle ${cycle}: events ${scc.map((e) => `"${e}"`).join(', ')} can each happen before the other; ` +
            'break it with meta.ranks or declare meta.ordering = "version"',
    });
  }

  // Ranks: a topological order of the components; ties broken by definition order.
  const sccIndex = new Map<string, number>();
  sccs.forEach((scc, i) => scc.forEach((e) => sccIndex.set(e, i)));
  const indegree = sccs.map(() => 0);
  const dagEdges = sccs.map(() => new Set<number>());
  for (const [a, bs] of order) {
    for (const b of bs) {
      const i = sccIndex.get(a)!;
      const j = sccIndex.get(b)!;
      if (i !== j && !dagEdges[i]!.has(j)) {
        dagEdges[i]!.add(j);
        indegree[j]! += 1;
      }
    }
  }
  const firstIndex = (scc: string[]): number => Math.min(...scc.map((e) => eventOrder.indexOf(e)));
  const ready = sccs.map((_, i) => i).filter((i) => indegree[i] === 0);
  const ranked: string[] = [];
  while (ready.length > 0) {
    ready.sort((i, j) => firstIndex(sccs[i]!) - firstIndex(sccs[j]!));
    const i = ready.shift()!;
    ranked.push(...sccs[i]!);
    for (const j of dagEdges[i]!) {
      indegree[j]! -= 1;
      if (indegree[j] === 0) ready.push(j);
    }
  }
  if (ranked.length > MAX_RANK) {
    diagnostics.push({
      level: 'error',
      code: 'too_many_events',
      message: `a machine may have at most ${MAX_RANK} event types, this one has ${ranked.length}`,
    });
  }

  const events: EventRank[] = ranked.map((type, i) => ({
    type,
    rank: i + 1,
    target: targets.get(type)!,
    from: from.get(type) ?? [],
  }));
  const droppedCycles = diagnostics.some((d) => d.level === 'error');
  return {
    name,
    collection: meta.collection,
    ordering: meta.ordering,
    initial: graph.initial,
    creationEvent: meta.creationEvent,
    states,
    finalStates: graph.finalStates,
    events,
    reachable: Object.fromEntries(states.map((s) => [s, [...reach.get(s)!]])),
    diagnostics,
    ok: !droppedCycles,
  };
}
