import type { EventRank, MachineAnalysis } from './analysis-types.ts';

/**
 * Draws a machine as a self-contained SVG: states left to right in layers (longest path
 * from the initial state, with the edges that close cycles set aside), each transition
 * labelled with its event and rank, the initial state marked by a start dot (labelled
 * with the creation event), final states with a double border, and events in a cycle in
 * orange. Pure; the same analysis always gives the same bytes.
 */
export function renderMachineSvg(a: MachineAnalysis): string {
  return new Layout(a).svg();
}

const FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif";
const NODE_H = 44;
const MARGIN = 24;
const LABEL_H = 18;
const COLOR = {
  text: '#1f2933',
  muted: '#616e7c',
  state: '#e8f0fe',
  stateLine: '#2f5fb3',
  final: '#f1f3f5',
  finalLine: '#3e4c59',
  edge: '#52606d',
  cycle: '#c05621',
};

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const n = (x: number): string => String(Math.round(x * 10) / 10);
/** Rough width of text in a sans-serif font: enough to size boxes, not to typeset. */
const textWidth = (s: string, size: number, bold = false): number => s.length * size * (bold ? 0.64 : 0.58);
const labelText = (e: EventRank): string => `${e.type} · rank ${e.rank}`;

interface Point {
  x: number;
  y: number;
}
interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}
/** A transition between two states, all events that take it. */
interface Edge {
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
interface Item {
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

type Bezier = [Point, Point, Point, Point];

function bezierAt([p0, p1, p2, p3]: Bezier, t: number): Point {
  const u = 1 - t;
  const f = (k: 'x' | 'y'): number =>
    u * u * u * p0[k] + 3 * u * u * t * p1[k] + 3 * u * t * t * p2[k] + t * t * t * p3[k];
  return { x: f('x'), y: f('y') };
}

const overlaps = (r: Rect, s: Rect): boolean =>
  r.x < s.x + s.w && s.x < r.x + r.w && r.y < s.y + s.h && s.y < r.y + r.h;

class Layout {
  private readonly items = new Map<string, Item>();
  private readonly layers: string[][] = [];
  private readonly edges: Edge[] = [];
  private readonly cycleEvents: Set<string>;
  private readonly placed: Rect[] = [];
  private top = 0;
  private lead = 0;
  private width = 0;
  private height = 0;

  constructor(private readonly a: MachineAnalysis) {
    this.cycleEvents = new Set(a.diagnostics.flatMap((d) => (d.code === 'cycle' ? (d.cycle ?? []) : [])));
    this.buildEdges();
    this.assignLayers();
    this.orderLayers();
    this.position();
  }

  private buildEdges(): void {
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
        if (this.cycleEvents.has(e.type)) edge.cycle = true;
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
    this.lead = MARGIN + (creation ? Math.max(90, textWidth(labelText(creation), 12) + 40) : 56);
    const longBack = this.edges.filter((e) => e.kind === 'back' && this.span(e) > 1).length;
    const selfLoops = this.edges.some((e) => e.kind === 'self');
    this.top = MARGIN + 40 + (longBack > 0 ? 28 + longBack * 22 : selfLoops ? 44 : 12);
    let x = this.lead;
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
    for (const it of this.items.values()) {
      if (!it.dummy)
        this.placed.push({
          x: it.x - it.width / 2 - 4,
          y: it.y - NODE_H / 2 - 4,
          w: it.width + 8,
          h: NODE_H + 8,
        });
    }
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

  private span(e: Edge): number {
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
  private curves(e: Edge): Bezier[] {
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

  private edgeSvg(e: Edge): string {
    const lines = e.events.map(labelText);
    const w = Math.max(...lines.map((l) => textWidth(l, 12))) + 12;
    const h = lines.length * LABEL_H + 4;
    let path: string;
    let candidates: Point[];
    if (e.kind === 'self') {
      const it = this.items.get(e.from)!;
      const y0 = it.y - NODE_H / 2;
      const x0 = it.x - it.width / 4;
      path = `M ${n(x0 - 12)} ${n(y0)} C ${n(x0 - 36)} ${n(y0 - 44)}, ${n(x0 + 36)} ${n(y0 - 44)}, ${n(x0 + 12)} ${n(y0)}`;
      candidates = [{ x: x0, y: y0 - 42 }];
    } else {
      const curves = this.curves(e);
      path = `M ${n(curves[0]![0].x)} ${n(curves[0]![0].y)} ${curves
        .map(([, c1, c2, p]) => `C ${n(c1.x)} ${n(c1.y)}, ${n(c2.x)} ${n(c2.y)}, ${n(p.x)} ${n(p.y)}`)
        .join(' ')}`;
      // Where the label may go: a long edge's free slots first, then along its curves.
      candidates = [
        ...e.chain.slice(1, -1).map((id) => this.items.get(id)!),
        ...[0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78].flatMap((t) => curves.map((c) => bezierAt(c, t))),
      ];
    }
    const rectAt = (p: Point): Rect => ({ x: p.x - w / 2, y: p.y - h / 2, w, h });
    const at = candidates.find((p) => !this.placed.some((r) => overlaps(rectAt(p), r))) ?? candidates[0]!;
    const box = rectAt(at);
    this.placed.push(box);
    const color = e.cycle ? COLOR.cycle : COLOR.edge;
    const events = e.events.map((x) => x.type).join(' ');
    const title = e.events
      .map((x) => `${x.type}: ${e.from} → ${e.to}, rank ${x.rank}${e.cycle ? ' (in a cycle)' : ''}`)
      .join('\n');
    const text = e.events
      .map(
        (x, i) =>
          `<text x="${n(at.x)}" y="${n(box.y + 2 + LABEL_H * (i + 0.5))}" data-event="${esc(x.type)}" data-rank="${x.rank}">` +
          `<tspan font-weight="600" fill="${COLOR.text}">${esc(x.type)}</tspan>` +
          `<tspan fill="${COLOR.muted}"> · rank ${x.rank}</tspan></text>`,
      )
      .join('');
    return (
      `<g class="edge${e.cycle ? ' cycle' : ''}" data-from="${esc(e.from)}" data-to="${esc(e.to)}" data-events="${esc(events)}">` +
      `<title>${esc(title)}</title>` +
      `<path d="${path}" fill="none" stroke="${color}" stroke-width="1.6"${e.kind === 'back' ? ' stroke-dasharray="6 4"' : ''} marker-end="url(#${e.cycle ? 'arrow-cycle' : 'arrow'})"/>` +
      `<rect x="${n(box.x)}" y="${n(box.y)}" width="${n(w)}" height="${n(h)}" rx="4" fill="#ffffff" fill-opacity="0.92"/>` +
      text +
      '</g>'
    );
  }

  private stateSvg(id: string): string {
    const it = this.items.get(id)!;
    const final = this.a.finalStates.includes(id);
    const initial = id === this.a.initial;
    const x = it.x - it.width / 2;
    const y = it.y - NODE_H / 2;
    const kind = [initial ? 'initial' : '', final ? 'final' : ''].filter(Boolean).join(', ');
    return (
      `<g class="state${final ? ' final' : ''}${initial ? ' initial' : ''}" data-state="${esc(id)}" data-initial="${initial}" data-final="${final}">` +
      `<title>${esc(id)}${kind ? ` (${kind} state)` : ''}</title>` +
      `<rect x="${n(x)}" y="${n(y)}" width="${n(it.width)}" height="${NODE_H}" rx="10" fill="${final ? COLOR.final : COLOR.state}" stroke="${final ? COLOR.finalLine : COLOR.stateLine}" stroke-width="${initial ? 2.4 : 1.6}"/>` +
      (final
        ? `<rect class="inner" x="${n(x + 4)}" y="${n(y + 4)}" width="${n(it.width - 8)}" height="${NODE_H - 8}" rx="7" fill="none" stroke="${COLOR.finalLine}" stroke-width="1.2"/>`
        : '') +
      `<text x="${n(it.x)}" y="${n(it.y + 5)}" font-size="14" font-weight="700" fill="${COLOR.text}">${esc(id)}</text>` +
      '</g>'
    );
  }

  private startSvg(): string {
    const it = this.items.get(this.a.initial);
    if (!it) return '';
    const creation = this.a.creationEvent
      ? this.a.events.find((e) => e.type === this.a.creationEvent)
      : undefined;
    const x1 = MARGIN + 8;
    const x2 = it.x - it.width / 2;
    const label = creation
      ? `<text x="${n((x1 + x2) / 2)}" y="${n(it.y - 10)}" data-event="${esc(creation.type)}" data-rank="${creation.rank}">` +
        `<tspan font-weight="600" fill="${COLOR.text}">${esc(creation.type)}</tspan>` +
        `<tspan fill="${COLOR.muted}"> · rank ${creation.rank}</tspan></text>`
      : '';
    return (
      `<g class="start" data-to="${esc(this.a.initial)}"${creation ? ` data-events="${esc(creation.type)}"` : ''}>` +
      `<title>start: ${creation ? `${esc(creation.type)} enters ` : ''}${esc(this.a.initial)}</title>` +
      `<circle cx="${n(x1)}" cy="${n(it.y)}" r="7" fill="${COLOR.text}"/>` +
      `<path d="M ${n(x1 + 7)} ${n(it.y)} L ${n(x2)} ${n(it.y)}" stroke="${COLOR.edge}" stroke-width="1.6" marker-end="url(#arrow)"/>` +
      label +
      '</g>'
    );
  }

  private legendSvg(): string {
    const y = this.height - 30;
    const cycles = this.edges.some((e) => e.cycle);
    const order =
      this.a.ordering === 'version'
        ? "ordered by the producer's version; the rank breaks ties"
        : 'a higher rank wins over a lower one';
    let x = MARGIN;
    const parts: string[] = [];
    const item = (svg: string, text: string, w: number): void => {
      parts.push(`${svg}<text x="${n(x + w)}" y="${n(y + 4)}" text-anchor="start">${esc(text)}</text>`);
      x += w + textWidth(text, 12) + 22;
    };
    item(`<circle cx="${n(x + 6)}" cy="${n(y)}" r="6" fill="${COLOR.text}"/>`, 'start', 18);
    item(
      `<rect x="${n(x)}" y="${n(y - 8)}" width="26" height="16" rx="4" fill="${COLOR.final}" stroke="${COLOR.finalLine}"/>` +
        `<rect x="${n(x + 3)}" y="${n(y - 5)}" width="20" height="10" rx="3" fill="none" stroke="${COLOR.finalLine}"/>`,
      'final state',
      32,
    );
    if (cycles) {
      item(
        `<path d="M ${n(x)} ${n(y)} L ${n(x + 26)} ${n(y)}" stroke="${COLOR.cycle}" stroke-width="1.6"/>`,
        'in a cycle',
        32,
      );
    }
    if (this.edges.some((e) => e.kind === 'back')) {
      item(
        `<path d="M ${n(x)} ${n(y)} L ${n(x + 26)} ${n(y)}" stroke="${COLOR.edge}" stroke-width="1.6" stroke-dasharray="6 4"/>`,
        'leads back',
        32,
      );
    }
    item('', `event · rank: ${order}`, 0);
    this.width = Math.max(this.width, x + MARGIN);
    return `<g class="legend" font-size="12" fill="${COLOR.muted}">${parts.join('')}</g>`;
  }

  svg(): string {
    this.assignPorts();
    const states = this.a.states.map((s) => this.stateSvg(s)).join('');
    const start = this.startSvg();
    const edges = this.edges.map((e) => this.edgeSvg(e)).join('');
    const legend = this.legendSvg();
    const summary = `${this.a.ordering}-ordered · ${this.a.states.length} states · ${this.a.events.length} event types`;
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" class="machine-diagram" data-machine="${esc(this.a.name)}" ` +
      `width="${n(this.width)}" height="${n(this.height)}" viewBox="0 0 ${n(this.width)} ${n(this.height)}" ` +
      `font-family="${esc(FONT)}" role="img" aria-label="${esc(`state diagram of machine ${this.a.name}`)}">` +
      `<title>${esc(this.a.name)}: ${esc(summary)}</title>` +
      '<defs>' +
      ['arrow', 'arrow-cycle']
        .map(
          (id) =>
            `<marker id="${id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">` +
            `<path d="M 0 0 L 10 5 L 0 10 z" fill="${id === 'arrow' ? COLOR.edge : COLOR.cycle}"/></marker>`,
        )
        .join('') +
      '</defs>' +
      `<rect width="100%" height="100%" fill="#ffffff"/>` +
      `<text x="${MARGIN}" y="${MARGIN + 16}" font-size="18" font-weight="700" fill="${COLOR.text}">${esc(this.a.name)}</text>` +
      `<text x="${n(MARGIN + textWidth(this.a.name, 18, true) + 14)}" y="${MARGIN + 16}" font-size="13" fill="${COLOR.muted}">${esc(summary)}</text>` +
      `<g text-anchor="middle" font-size="12">${edges}${start}</g>` +
      `<g text-anchor="middle">${states}</g>` +
      legend +
      '</svg>'
    );
  }
}
