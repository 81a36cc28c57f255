import type { EventRank, MachineAnalysis } from '../domain/index.ts';

// The geometry of a machine diagram; svg.ts turns it into SVG.

export const NODE_H = 44;
export const MARGIN = 24;
export const LABEL_H = 18;

/** Rough width of text in a sans-serif font: enough to size boxes, not to typeset. */
export const textWidth = (s: string, size: number, bold = false): number =>
  s.length * size * (bold ? 0.64 : 0.58);
export const labelText = (e: EventRank): string => `${e.type} · rank ${e.rank}`;

export interface Point {
  x: number;
  y: number;
}
export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}
/** A transition between two states, with all events that take it. */
export interface Edge {
  from: string;
  to: string;
  events: EventRank[];
  kind: 'forward' | 'back' | 'self';
  cycle: boolean;
  /** States and dummy points the edge passes, from → to (forward edges). */
  chain: string[];
  start?: Point;
  end?: Point;
}
/** A state, or a dummy point a long edge passes through, placed in a layer. */
export interface Item {
  id: string;
  dummy: boolean;
  width: number;
  layer: number;
  x: number;
  y: number;
}
interface Port {
  edge: Edge;
  at: 'start' | 'end';
  other: number;
  back: boolean;
}

export type Bezier = [Point, Point, Point, Point];

export function bezierAt([p0, p1, p2, p3]: Bezier, t: number): Point {
  const u = 1 - t;
  const f = (k: 'x' | 'y'): number =>
    u * u * u * p0[k] + 3 * u * u * t * p1[k] + 3 * u * t * t * p2[k] + t * t * t * p3[k];
  return { x: f('x'), y: f('y') };
}

/**
 * Where a machine's states and transitions go: layers left to right by longest path from
 * the initial state (edges that close a cycle set aside and drawn back), long edges through
 * dummy points, barycentric ordering within layers, and vertical positions pulled towards
 * neighbours so the main flow runs straight. Deterministic.
 */
export class MachineLayout {
  readonly items = new Map<string, Item>();
  readonly layers: string[][] = [];
  readonly edges: Edge[] = [];
  /** Top of the first row of states. */
  top = 0;
  width = 0;
  height = 0;

  constructor(readonly a: MachineAnalysis) {
    this.buildEdges(new Set(a.diagnostics.flatMap((d) => (d.code === 'cycle' ? (d.cycle ?? []) : []))));
    this.assignLayers();
    this.orderLayers();
    this.position();
    this.assignPorts();
  }

  private buildEdges(cycleEvents: Set<string>): void {
    const byPair = new Map<string, Edge>();
    for (const e of this.a.events) {
      for (const from of e.from) {
        const key = `${from}\u0000${e.target}`;
        let edge = byPair.get(key);
        if (!edge) {
          edge = {
            from,
            to: e.target,
            events: [],
            kind: from === e.target ? 'self' : 'forward',
            cycle: false,
            chain: [],
          };
          byPair.set(key, edge);
          this.edges.push(edge);
        }
        edge.events.push(e);
        if (cycleEvents.has(e.type)) edge.cycle = true;
      }
    }
    // Edges that close a cycle, found depth-first from the initial state, are drawn back.
    const state = new Map<string, 'open' | 'done'>();
    const visit = (s: string): void => {
      state.set(s, 'open');
      for (const e of this.edges.filter((x) => x.from === s && x.kind !== 'self')) {
        if (state.get(e.to) === 'open') e.kind = 'back';
        else if (!state.has(e.to)) visit(e.to);
      }
      state.set(s, 'done');
    };
    for (const s of [this.a.initial, ...this.a.states]) if (s && !state.has(s)) visit(s);
  }

  private assignLayers(): void {
    const layer = new Map<string, number>(this.a.states.map((s) => [s, 0]));
    const forward = this.edges.filter((e) => e.kind === 'forward');
    // Longest path: relax until stable (the forward edges form a DAG).
    for (let changed = true; changed;) {
      changed = false;
      for (const e of forward) {
        const want = layer.get(e.from)! + 1;
        if (layer.get(e.to)! < want) {
          layer.set(e.to, want);
          changed = true;
        }
      }
    }
    const add = (id: string, dummy: boolean, l: number): void => {
      while (this.layers.length <= l) this.layers.push([]);
      this.layers[l]!.push(id);
      this.items.set(id, {
        id,
        dummy,
        layer: l,
        width: dummy ? 0 : Math.max(104, textWidth(id, 14, true) + 36),
        x: 0,
        y: 0,
      });
    };
    for (const s of this.a.states) add(s, false, layer.get(s)!);
    forward.forEach((e, i) => {
      e.chain = [e.from];
      for (let l = layer.get(e.from)! + 1; l < layer.get(e.to)!; l++) {
        const id = `\u0000${i}:${l}`;
        add(id, true, l);
        e.chain.push(id);
      }
      e.chain.push(e.to);
    });
  }

  /** Barycentric ordering, a few sweeps each way, to keep crossings few. */
  private orderLayers(): void {
    const links: Array<[string, string]> = this.edges.flatMap((e) =>
      e.chain.slice(1).map((id, i): [string, string] => [e.chain[i]!, id]),
    );
    const index = (): Map<string, number> =>
      new Map(this.layers.flatMap((l) => l.map((id, i): [string, number] => [id, i])));
    // Odd count: the last sweep goes down, so states follow the states they come from.
    for (let sweep = 0; sweep < 5; sweep++) {
      const down = sweep % 2 === 0;
      const order = down ? this.layers.keys() : [...this.layers.keys()].reverse();
      for (const l of order) {
        const pos = index();
        const layer = this.layers[l]!;
        const key = new Map(
          layer.map((id, i) => {
            const near = links
              .filter(([u, v]) => (down ? v === id : u === id))
              .map(([u, v]) => pos.get(down ? u : v)!)
              .filter((p) => p !== undefined);
            return [id, near.length ? near.reduce((s, p) => s + p, 0) / near.length : i];
          }),
        );
        const dummy = (id: string): number => Number(this.items.get(id)!.dummy);
        const before = [...layer];
        layer.sort(
          (x, y) => key.get(x)! - key.get(y)! || dummy(x) - dummy(y) || before.indexOf(x) - before.indexOf(y),
        );
      }
    }
  }

  private position(): void {
    const labelW = Math.max(0, ...this.a.events.map((e) => textWidth(labelText(e), 12)));
    const gap = Math.max(130, labelW + 80);
    const creation = this.a.creationEvent
      ? this.a.events.find((e) => e.type === this.a.creationEvent)
      : undefined;
    const lead = MARGIN + (creation ? Math.max(90, textWidth(labelText(creation), 12) + 40) : 56);
    const longBack = this.edges.filter((e) => e.kind === 'back' && this.span(e) > 1).length;
    const selfLoops = this.edges.some((e) => e.kind === 'self');
    this.top = MARGIN + 40 + (longBack > 0 ? 28 + longBack * 22 : selfLoops ? 44 : 12);
    let x = lead;
    for (const layer of this.layers) {
      const w = Math.max(24, ...layer.map((id) => this.items.get(id)!.width));
      for (const id of layer) this.items.get(id)!.x = x + w / 2;
      x += w + gap;
    }
    this.width = Math.max(x - gap + MARGIN, 360);
    this.assignY();
    const bottom = Math.max(
      ...[...this.items.values()].map((it) => it.y + (it.dummy ? LABEL_H : NODE_H / 2)),
    );
    this.height = bottom + 28 + 48;
  }

  /**
   * Vertical positions: each item pulled towards the mean of its neighbours in the layer
   * before (then after), keeping the order and a minimum distance, so long edges run
   * straight and states line up with the states they lead to.
   */
  private assignY(): void {
    const half = (id: string): number => (this.items.get(id)!.dummy ? LABEL_H / 2 + 4 : NODE_H / 2);
    const sep = (u: string, v: string): number => half(u) + half(v) + (this.items.get(u)!.dummy ? 18 : 30);
    const links: Array<[string, string]> = this.edges.flatMap((e) =>
      e.chain.slice(1).map((id, i): [string, string] => [e.chain[i]!, id]),
    );
    const y = (id: string): number => this.items.get(id)!.y;
    const place = (layer: string[], want: (id: string) => number): void => {
      layer.forEach((id, i) => {
        const prev = layer[i - 1];
        this.items.get(id)!.y = prev === undefined ? want(id) : Math.max(want(id), y(prev) + sep(prev, id));
      });
      for (let i = layer.length - 2; i >= 0; i--) {
        const id = layer[i]!;
        const next = layer[i + 1]!;
        this.items.get(id)!.y = Math.min(y(id), y(next) - sep(id, next));
      }
    };
    for (const layer of this.layers) place(layer, () => 0);
    for (let round = 0; round < 8; round++) {
      const down = round % 2 === 0;
      const order = down ? [...this.layers.keys()] : [...this.layers.keys()].reverse();
      for (const l of order) {
        const layer = this.layers[l]!;
        place(layer, (id) => {
          // Links between two states weigh double: the main flow runs straighter than bypasses.
          const near = links
            .filter(([u, v]) => (down ? v === id : u === id))
            .map(([u, v]) => ({
              y: y(down ? u : v),
              w: this.items.get(u)!.dummy || this.items.get(v)!.dummy ? 1 : 2,
            }));
          const weight = near.reduce((a, b) => a + b.w, 0);
          return weight ? near.reduce((a, b) => a + b.y * b.w, 0) / weight : y(id);
        });
      }
    }
    const min = Math.min(...[...this.items.values()].map((it) => it.y - half(it.id)));
    for (const it of this.items.values()) it.y += this.top - min;
  }

  /** How many layers an edge crosses. */
  span(e: Edge): number {
    return Math.abs(this.items.get(e.from)!.layer - this.items.get(e.to)!.layer);
  }

  /** Spreads the ends of edges along the sides of each state, ordered by where they lead. */
  private assignPorts(): void {
    const sides = new Map<string, Port[]>();
    const push = (state: string, side: string, p: Port): void => {
      const key = `${state}\u0000${side}`;
      sides.set(key, [...(sides.get(key) ?? []), p]);
    };
    for (const e of this.edges) {
      if (e.kind === 'forward') {
        const next = this.items.get(e.chain[1]!)!;
        const prev = this.items.get(e.chain.at(-2)!)!;
        push(e.from, 'right', { edge: e, at: 'start', other: next.y, back: false });
        push(e.to, 'left', { edge: e, at: 'end', other: prev.y, back: false });
      } else if (e.kind === 'back' && this.span(e) === 1) {
        push(e.from, 'left', { edge: e, at: 'start', other: this.items.get(e.to)!.y, back: true });
        push(e.to, 'right', { edge: e, at: 'end', other: this.items.get(e.from)!.y, back: true });
      } else if (e.kind === 'back') {
        push(e.from, 'top', { edge: e, at: 'start', other: this.items.get(e.to)!.x, back: true });
        push(e.to, 'top', { edge: e, at: 'end', other: this.items.get(e.from)!.x, back: true });
      }
    }
    for (const [key, ports] of sides) {
      const [state, side] = key.split('\u0000') as [string, string];
      const it = this.items.get(state)!;
      ports.sort((p, q) => p.other - q.other || Number(p.back) - Number(q.back));
      ports.forEach((p, i) => {
        const f = (i + 1) / (ports.length + 1);
        // Top ports keep to the right half: a self-loop takes the left.
        const point =
          side === 'top'
            ? { x: it.x + (it.width / 2 - 10) * f, y: it.y - NODE_H / 2 }
            : {
                x: side === 'right' ? it.x + it.width / 2 : it.x - it.width / 2,
                y: it.y - NODE_H / 2 + 8 + (NODE_H - 16) * f,
              };
        p.edge[p.at] = point;
      });
    }
  }

  /** The curves an edge is drawn with. */
  curves(e: Edge): Bezier[] {
    const s = e.start!;
    const t = e.end!;
    if (e.kind === 'forward') {
      const pts = [s, ...e.chain.slice(1, -1).map((id) => this.items.get(id)!), t];
      return pts.slice(1).map((q, i) => {
        const p = pts[i]!;
        const dx = (q.x - p.x) / 2;
        return [p, { x: p.x + dx, y: p.y }, { x: q.x - dx, y: q.y }, q];
      });
    }
    if (this.span(e) === 1) {
      const dx = (s.x - t.x) / 2;
      return [[s, { x: s.x - dx, y: s.y + 26 }, { x: t.x + dx, y: t.y + 26 }, t]];
    }
    const lanes = this.edges.filter((x) => x.kind === 'back' && this.span(x) > 1);
    const laneY = MARGIN + 48 + lanes.indexOf(e) * 22;
    return [[s, { x: s.x, y: laneY - 10 }, { x: t.x, y: laneY - 10 }, t]];
  }
}
