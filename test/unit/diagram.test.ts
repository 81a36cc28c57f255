import { describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { escapeHtml, renderMachineSvg } from '../../src/diagram/index.ts';
import { analyzeMachine } from '../../src/domain/index.ts';
import { machines } from '../../machines/index.ts';

const loopy = createMachine({
  id: 'loopy',
  initial: 'A',
  meta: { ordering: 'version' },
  states: {
    A: { on: { go: 'B', touch: 'A' } },
    B: { on: { next: 'C' } },
    C: { on: { restart: 'A', finish: 'D&<"E">' } },
    'D&<"E">': { type: 'final' },
  },
});

describe('machine diagrams', () => {
  it('are the same bytes for the same machine', () => {
    for (const [name, m] of Object.entries(machines)) {
      expect(renderMachineSvg(analyzeMachine(name, m))).toBe(renderMachineSvg(analyzeMachine(name, m)));
    }
  });

  it('label every transition with its event and rank, and the start with the creation event', () => {
    const a = analyzeMachine('promotion', machines.promotion!);
    const svg = renderMachineSvg(a);
    expect(svg).toContain('<g class="start" data-to="CREATED" data-events="create">');
    for (const e of a.events) {
      const labels = svg.match(new RegExp(`data-event="${e.type}" data-rank="${e.rank}"`, 'g')) ?? [];
      expect(labels, e.type).toHaveLength(e.from.length || 1);
    }
    expect(svg.match(/<rect class="inner"/g)).toHaveLength(a.finalStates.length);
  });

  it('draw self-loops, edges that lead back, and cycles', () => {
    const svg = renderMachineSvg(analyzeMachine('loopy', loopy));
    expect(svg).toMatch(/<g class="edge cycle" data-from="A" data-to="A" data-events="touch">/);
    expect(svg).toMatch(
      /<g class="edge cycle" data-from="C" data-to="A" data-events="restart">.*?stroke-dasharray/,
    );
    expect(svg).toContain('ordered by the producer&#39;s version');
  });

  it('escape names, so any state name gives well-formed markup', () => {
    const svg = renderMachineSvg(analyzeMachine('loopy', loopy));
    expect(svg).toContain('data-state="D&amp;&lt;&quot;E&quot;&gt;"');
    expect(svg).not.toContain('D&<');
    // Every tag closes: no raw `<` or `>` inside attribute values or text.
    const withoutTags = svg.replace(/<\/?[a-zA-Z][^<>]*>/g, '');
    expect(withoutTags).not.toMatch(/[<>]/);
  });

  it('escape the five characters that markup reads, in text and in quoted attributes', () => {
    expect(escapeHtml(`<a title="Tom's">R&D</a>`)).toBe(
      '&lt;a title=&quot;Tom&#39;s&quot;&gt;R&amp;D&lt;/a&gt;',
    );
    expect(escapeHtml('plain text · rank 3')).toBe('plain text · rank 3');
  });
});
