import type { MachineAnalysis } from '../domain/index.ts';
import { escapeHtml } from './escape-html.ts';
import {
  bezierAt,
  LABEL_H,
  labelText,
  MachineLayout,
  MARGIN,
  NODE_H,
  textWidth,
  type Edge,
  type Point,
  type Rect,
} from './layout.ts';

/**
 * Draws a machine as a self-contained SVG: states left to right in layers, each transition
 * labelled with its event and rank, the initial state marked by a start dot (labelled
 * with the creation event), final states with a double border, events in a cycle in
 * orange and transitions that lead back dashed. Pure; the same analysis always gives the
 * same bytes.
 */
export function renderMachineSvg(a: MachineAnalysis): string {
  return new SvgWriter(new MachineLayout(a)).svg();
}

const FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif";

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

const n = (x: number): string => String(Math.round(x * 10) / 10);

const overlaps = (r: Rect, s: Rect): boolean =>
  r.x < s.x + s.w && s.x < r.x + r.w && r.y < s.y + s.h && s.y < r.y + r.h;

/** Writes the SVG of a layout, placing each label where it covers no state and no other label. */
class SvgWriter {
  private readonly placed: Rect[];
  private width: number;
  private readonly height: number;

  constructor(private readonly layout: MachineLayout) {
    this.width = layout.width;
    this.height = layout.height;
    this.placed = [...layout.items.values()]
      .filter((it) => !it.dummy)
      .map((it) => ({
        x: it.x - it.width / 2 - 4,
        y: it.y - NODE_H / 2 - 4,
        w: it.width + 8,
        h: NODE_H + 8,
      }));
  }

  private edgeSvg(e: Edge): string {
    const lines = e.events.map(labelText);
    const w = Math.max(...lines.map((l) => textWidth(l, 12))) + 12;
    const h = lines.length * LABEL_H + 4;
    let path: string;
    let candidates: Point[];
    if (e.kind === 'self') {
      const it = this.layout.items.get(e.from)!;
      const y0 = it.y - NODE_H / 2;
      const x0 = it.x - it.width / 4;
      path = `M ${n(x0 - 12)} ${n(y0)} C ${n(x0 - 36)} ${n(y0 - 44)}, ${n(x0 + 36)} ${n(y0 - 44)}, ${n(x0 + 12)} ${n(y0)}`;
      candidates = [{ x: x0, y: y0 - 42 }];
    } else {
      const curves = this.layout.curves(e);
      path = `M ${n(curves[0]![0].x)} ${n(curves[0]![0].y)} ${curves
        .map(([, c1, c2, p]) => `C ${n(c1.x)} ${n(c1.y)}, ${n(c2.x)} ${n(c2.y)}, ${n(p.x)} ${n(p.y)}`)
        .join(' ')}`;
      // Where the label may go: a long edge's free slots first, then along its curves.
      candidates = [
        ...e.chain.slice(1, -1).map((id) => this.layout.items.get(id)!),
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
          `<text x="${n(at.x)}" y="${n(box.y + 2 + LABEL_H * (i + 0.5))}" data-event="${escapeHtml(x.type)}" data-rank="${x.rank}">` +
          `<tspan font-weight="600" fill="${COLOR.text}">${escapeHtml(x.type)}</tspan>` +
          `<tspan fill="${COLOR.muted}"> · rank ${x.rank}</tspan></text>`,
      )
      .join('');
    return (
      `<g class="edge${e.cycle ? ' cycle' : ''}" data-from="${escapeHtml(e.from)}" data-to="${escapeHtml(e.to)}" data-events="${escapeHtml(events)}">` +
      `<title>${escapeHtml(title)}</title>` +
      `<path d="${path}" fill="none" stroke="${color}" stroke-width="1.6"${e.kind === 'back' ? ' stroke-dasharray="6 4"' : ''} marker-end="url(#${e.cycle ? 'arrow-cycle' : 'arrow'})"/>` +
      `<rect x="${n(box.x)}" y="${n(box.y)}" width="${n(w)}" height="${n(h)}" rx="4" fill="#ffffff" fill-opacity="0.92"/>` +
      text +
      '</g>'
    );
  }

  private stateSvg(id: string): string {
    const it = this.layout.items.get(id)!;
    const final = this.layout.a.finalStates.includes(id);
    const initial = id === this.layout.a.initial;
    const x = it.x - it.width / 2;
    const y = it.y - NODE_H / 2;
    const kind = [initial ? 'initial' : '', final ? 'final' : ''].filter(Boolean).join(', ');
    return (
      `<g class="state${final ? ' final' : ''}${initial ? ' initial' : ''}" data-state="${escapeHtml(id)}" data-initial="${initial}" data-final="${final}">` +
      `<title>${escapeHtml(id)}${kind ? ` (${kind} state)` : ''}</title>` +
      `<rect x="${n(x)}" y="${n(y)}" width="${n(it.width)}" height="${NODE_H}" rx="10" fill="${final ? COLOR.final : COLOR.state}" stroke="${final ? COLOR.finalLine : COLOR.stateLine}" stroke-width="${initial ? 2.4 : 1.6}"/>` +
      (final
        ? `<rect class="inner" x="${n(x + 4)}" y="${n(y + 4)}" width="${n(it.width - 8)}" height="${NODE_H - 8}" rx="7" fill="none" stroke="${COLOR.finalLine}" stroke-width="1.2"/>`
        : '') +
      `<text x="${n(it.x)}" y="${n(it.y + 5)}" font-size="14" font-weight="700" fill="${COLOR.text}">${escapeHtml(id)}</text>` +
      '</g>'
    );
  }

  private startSvg(): string {
    const it = this.layout.items.get(this.layout.a.initial);
    if (!it) return '';
    const creation = this.layout.a.creationEvent
      ? this.layout.a.events.find((e) => e.type === this.layout.a.creationEvent)
      : undefined;
    const x1 = MARGIN + 8;
    const x2 = it.x - it.width / 2;
    const label = creation
      ? `<text x="${n((x1 + x2) / 2)}" y="${n(it.y - 10)}" data-event="${escapeHtml(creation.type)}" data-rank="${creation.rank}">` +
        `<tspan font-weight="600" fill="${COLOR.text}">${escapeHtml(creation.type)}</tspan>` +
        `<tspan fill="${COLOR.muted}"> · rank ${creation.rank}</tspan></text>`
      : '';
    return (
      `<g class="start" data-to="${escapeHtml(this.layout.a.initial)}"${creation ? ` data-events="${escapeHtml(creation.type)}"` : ''}>` +
      `<title>start: ${creation ? `${escapeHtml(creation.type)} enters ` : ''}${escapeHtml(this.layout.a.initial)}</title>` +
      `<circle cx="${n(x1)}" cy="${n(it.y)}" r="7" fill="${COLOR.text}"/>` +
      `<path d="M ${n(x1 + 7)} ${n(it.y)} L ${n(x2)} ${n(it.y)}" stroke="${COLOR.edge}" stroke-width="1.6" marker-end="url(#arrow)"/>` +
      label +
      '</g>'
    );
  }

  private legendSvg(): string {
    const y = this.height - 30;
    const cycles = this.layout.edges.some((e) => e.cycle);
    const order =
      this.layout.a.ordering === 'version'
        ? "ordered by the producer's version; the rank breaks ties"
        : 'a higher rank wins over a lower one';
    let x = MARGIN;
    const parts: string[] = [];
    const item = (svg: string, text: string, w: number): void => {
      parts.push(
        `${svg}<text x="${n(x + w)}" y="${n(y + 4)}" text-anchor="start">${escapeHtml(text)}</text>`,
      );
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
    if (this.layout.edges.some((e) => e.kind === 'back')) {
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
    const states = this.layout.a.states.map((s) => this.stateSvg(s)).join('');
    const start = this.startSvg();
    const edges = this.layout.edges.map((e) => this.edgeSvg(e)).join('');
    const legend = this.legendSvg();
    const summary = `${this.layout.a.ordering}-ordered · ${this.layout.a.states.length} states · ${this.layout.a.events.length} event types`;
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" class="machine-diagram" data-machine="${escapeHtml(this.layout.a.name)}" ` +
      `width="${n(this.width)}" height="${n(this.height)}" viewBox="0 0 ${n(this.width)} ${n(this.height)}" ` +
      `font-family="${escapeHtml(FONT)}" role="img" aria-label="${escapeHtml(`state diagram of machine ${this.layout.a.name}`)}">` +
      `<title>${escapeHtml(this.layout.a.name)}: ${escapeHtml(summary)}</title>` +
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
      `<text x="${MARGIN}" y="${MARGIN + 16}" font-size="18" font-weight="700" fill="${COLOR.text}">${escapeHtml(this.layout.a.name)}</text>` +
      `<text x="${n(MARGIN + textWidth(this.layout.a.name, 18, true) + 14)}" y="${MARGIN + 16}" font-size="13" fill="${COLOR.muted}">${escapeHtml(summary)}</text>` +
      `<g text-anchor="middle" font-size="12">${edges}${start}</g>` +
      `<g text-anchor="middle">${states}</g>` +
      legend +
      '</svg>'
    );
  }
}
