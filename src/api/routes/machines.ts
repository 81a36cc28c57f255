import { Router, type Request } from 'express';
import { escapeHtml, renderMachineSvg } from '../../diagram/index.ts';
import { PromosyncError } from '../../domain/index.ts';
import type { MachineInfo, MachineRegistry } from '../../domain/index.ts';
import { authenticate, type KeyVerifier } from '../auth.ts';
import { parseQuery } from '../validate.ts';
import { diagramQuery } from '../schemas.ts';

/** The machine as the API shows it: definition summary, ranks and diagnostics. */
export function machineView(info: MachineInfo): Record<string, unknown> {
  const a = info.analysis;
  return {
    name: a.name,
    collection: a.collection,
    ordering: a.ordering,
    initial: a.initial,
    creationEvent: a.creationEvent ?? null,
    states: a.states,
    finalStates: a.finalStates,
    events: a.events,
    diagnostics: a.diagnostics,
    ok: a.ok,
  };
}

/** A page around the diagram: the same ranks as a table, and the analysis' notes. */
export function diagramPage(info: MachineInfo): string {
  const a = info.analysis;
  const rows = a.events
    .map(
      (e) =>
        `<tr data-event="${escapeHtml(e.type)}"><td class="num">${e.rank}</td><td><code>${escapeHtml(e.type)}</code></td>` +
        `<td>${escapeHtml(e.from.join(', ') || '(creates the entity)')}</td><td>${escapeHtml(e.target)}</td></tr>`,
    )
    .join('');
  const notes = a.diagnostics
    .map(
      (d) =>
        `<li class="${d.level}"><strong>${d.level}</strong> ${escapeHtml(d.code)}: ${escapeHtml(d.message)}</li>`,
    )
    .join('');
  const ordering =
    a.ordering === 'version'
      ? "Ordered by the producer's <code>version</code>; the rank only breaks ties between equal versions."
      : 'Ordered by rank: an event of a higher rank wins over one of a lower rank, whatever order they arrive in.';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(a.name)} · promosync machine</title>
<style>
  body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; margin: 0; padding: 24px 32px;
         background: #f5f7fa; color: #1f2933; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  p.lead { margin: 0 0 16px; color: #52606d; }
  figure { margin: 0 0 24px; background: #fff; border: 1px solid #d9e2ec; border-radius: 10px; padding: 8px;
           display: inline-block; max-width: 100%; overflow-x: auto; box-shadow: 0 1px 3px rgba(15, 23, 42, 0.06); }
  figure svg { display: block; }
  table { border-collapse: separate; border-spacing: 0; background: #fff; border: 1px solid #d9e2ec;
          border-radius: 10px; overflow: hidden; }
  h2 { font-size: 17px; margin: 8px 0 10px; }
  th, td { padding: 6px 14px; text-align: left; border-bottom: 1px solid #edf1f5; font-size: 14px; }
  tr:last-child td { border-bottom: none; }
  th { background: #f0f4f8; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  ul.notes { padding-left: 20px; }
  li.warning strong { color: #b44d12; } li.error strong { color: #c81e1e; } li.info strong { color: #2f5fb3; }
</style>
</head>
<body>
<h1>${escapeHtml(a.name)}</h1>
<p class="lead">Collection <code>/v1/${escapeHtml(a.collection)}</code> · ${ordering}</p>
<figure>${renderMachineSvg(a)}</figure>
<h2>Events by rank</h2>
<table><thead><tr><th>rank</th><th>event</th><th>from</th><th>to</th></tr></thead><tbody>${rows}</tbody></table>
${notes ? `<h2>Analysis notes</h2><ul class="notes">${notes}</ul>` : ''}
</body>
</html>
`;
}

const findMachine = (registry: MachineRegistry, req: Request): MachineInfo => {
  const info = registry.get(String(req.params.name));
  if (!info) throw new PromosyncError('not_found', `no machine ${String(req.params.name)}`);
  return info;
};

/** `GET /v1/machines`, `GET /v1/machines/:name` and `GET /v1/machines/:name/diagram`. */
export function machinesRouter(deps: { registry: MachineRegistry; verify: KeyVerifier }): Router {
  const router = Router();
  const auth = authenticate(deps.verify, ['merchant', 'producer', 'admin']);
  router.get('/v1/machines', auth, (_req, res) => {
    res.json({ items: deps.registry.list().map(machineView) });
  });
  router.get('/v1/machines/:name', auth, (req, res) => {
    res.json(machineView(findMachine(deps.registry, req)));
  });
  // An SVG for tools and `curl`, a page around it for browsers (`Accept: text/html`).
  router.get('/v1/machines/:name/diagram', auth, (req, res) => {
    const info = findMachine(deps.registry, req);
    const q = parseQuery(diagramQuery, req.query);
    const format = q.format ?? (req.accepts(['image/svg+xml', 'text/html']) === 'text/html' ? 'html' : 'svg');
    res.setHeader('Vary', 'Accept');
    // Inline styles only: the page and the SVG load nothing else.
    res.setHeader(
      'Content-Security-Policy',
      "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    );
    if (format === 'svg') res.type('image/svg+xml').send(renderMachineSvg(info.analysis));
    else res.type('html').send(diagramPage(info));
  });
  return router;
}
