import type {
  JsonSchema,
  MediaType,
  Method,
  OpenApiDocument,
  Operation,
  Parameter,
} from './openapi-types.ts';
import { escapeHtml } from '../diagram/index.ts';

// The API documentation page, rendered on the server from the OpenAPI document. Everything
// (styles included) is inline: the page must work on machines without internet access.

const anchor = (op: Operation): string => `op-${op.operationId.replace(/[^A-Za-z0-9_-]/g, '-')}`;

interface Entry {
  method: Method;
  path: string;
  op: Operation;
}

function entries(doc: OpenApiDocument): Entry[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    (Object.entries(item) as Array<[Method, Operation]>).map(([method, op]) => ({ method, path, op })),
  );
}

/** Follows a local `$ref` to its target in the document. */
function deref(doc: OpenApiDocument, schema: JsonSchema): JsonSchema {
  const r = schema.$ref;
  if (typeof r !== 'string') return schema;
  const name = r.replace('#/components/schemas/', '');
  return doc.components.schemas[name] ?? schema;
}

const refName = (schema: JsonSchema): string | undefined =>
  typeof schema.$ref === 'string' ? schema.$ref.split('/').at(-1) : undefined;

/** A short human description of a schema's type, e.g. `integer`, `"a" | "b"`, `array of Event`. */
function typeLabel(schema: JsonSchema): string {
  const name = refName(schema);
  if (name) return name;
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  if ('const' in schema) return JSON.stringify(schema.const);
  const alternatives = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  if (Array.isArray(alternatives) && schema.type === undefined)
    return alternatives.map(typeLabel).join(' | ');
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : String(schema.type ?? 'any');
  if (type === 'array' && schema.items && typeof schema.items === 'object') {
    return `array of ${typeLabel(schema.items as JsonSchema)}`;
  }
  if (typeof schema.format === 'string') return `${type} (${schema.format})`;
  return type;
}

/** Constraints worth reading: lengths, bounds, patterns (unless a format says it better), default. */
function constraints(schema: JsonSchema): string[] {
  const out: string[] = [];
  const add = (key: string, label: string): void => {
    if (schema[key] !== undefined) out.push(`${label} ${String(schema[key])}`);
  };
  add('minLength', 'min length');
  add('maxLength', 'max length');
  add('minimum', 'min');
  add('maximum', 'max');
  add('minItems', 'min items');
  add('maxItems', 'max items');
  if (typeof schema.pattern === 'string' && schema.format === undefined)
    out.push(`pattern ${schema.pattern}`);
  if (schema.propertyNames && typeof schema.propertyNames === 'object') {
    const p = (schema.propertyNames as JsonSchema).pattern;
    if (typeof p === 'string') out.push(`keys match ${p}`);
  }
  if (schema.default !== undefined) out.push(`default ${JSON.stringify(schema.default)}`);
  return out;
}

function constraintCell(schema: JsonSchema): string {
  return constraints(schema)
    .map((c) => `<code>${escapeHtml(c)}</code>`)
    .join(' ');
}

/** The type label with each alternative unbreakable, so long enums wrap between alternatives only. */
function typeCell(schema: JsonSchema): string {
  return typeLabel(schema)
    .split(' | ')
    .map((t) => `<code>${escapeHtml(t)}</code>`)
    .join(' | ');
}

function parametersTable(params: Parameter[]): string {
  if (params.length === 0) return '';
  const rows = params
    .map(
      (p) => `<tr>
  <td><code>${escapeHtml(p.name)}</code>${p.required ? ' <span class="req">required</span>' : ''}</td>
  <td>${escapeHtml(p.in)}</td>
  <td class="type">${typeCell(p.schema)}</td>
  <td>${escapeHtml(p.description ?? '')} ${constraintCell(p.schema)}</td>
</tr>`,
    )
    .join('\n');
  return `<h4>Parameters</h4>
<table><thead><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

/** The fields of an object schema as a table. */
function fieldsTable(doc: OpenApiDocument, name: string, schema: JsonSchema): string {
  const s = deref(doc, schema);
  const props = (s.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((s.required ?? []) as string[]);
  const rows = Object.entries(props)
    .map(
      ([field, prop]) => `<tr>
  <td><code>${escapeHtml(field)}</code>${required.has(field) ? ' <span class="req">required</span>' : ''}</td>
  <td class="type">${typeCell(prop)}</td>
  <td>${escapeHtml(String(prop.description ?? ''))} ${constraintCell(prop)}</td>
</tr>`,
    )
    .join('\n');
  const extra: string[] = [];
  if (s.additionalProperties === false) extra.push('Other fields are rejected.');
  if (typeof s.description === 'string') extra.unshift(s.description);
  const variants = Array.isArray(s.anyOf) ? (s.anyOf as JsonSchema[]).map(variantLine) : [];
  return `<h5><code>${escapeHtml(name)}</code></h5>
${extra.length > 0 ? `<p>${escapeHtml(extra.join(' '))}</p>` : ''}
<table><thead><tr><th>Field</th><th>Type</th><th>Description</th></tr></thead><tbody>${rows}</tbody></table>
${variants.length > 0 ? `<p>Accepted combinations (one of):</p><ul class="variants">${variants.join('')}</ul>` : ''}`;
}

/** One alternative of an `anyOf` that narrows some properties, e.g. a machine and its events. */
function variantLine(v: JsonSchema): string {
  const props = (v.properties ?? {}) as Record<string, JsonSchema>;
  const parts = Object.entries(props).map(
    ([k, p]) => `<code>${escapeHtml(k)}</code> = ${escapeHtml(typeLabel(p))}`,
  );
  const required = Array.isArray(v.required) ? (v.required as string[]) : [];
  if (required.length > 0)
    parts.push(`${required.map((r) => `<code>${escapeHtml(r)}</code>`).join(', ')} required`);
  return `<li>${parts.join('; ')}</li>`;
}

function requestBody(doc: OpenApiDocument, op: Operation): string {
  const body = op.requestBody;
  if (!body) return '';
  return Object.entries(body.content)
    .map(([type, media]) => {
      const s = media.schema;
      const alternatives = (s.oneOf ?? s.anyOf) as JsonSchema[] | undefined;
      const schemas = Array.isArray(alternatives) ? alternatives : [s];
      const tables = schemas.map((alt) => fieldsTable(doc, refName(alt) ?? 'body', alt)).join('\n');
      return `<h4>Request body <span class="muted">${escapeHtml(type)}${body.required ? ', required' : ''}</span></h4>
${body.description ? `<p>${escapeHtml(body.description)}</p>` : ''}
${tables}
${examplesOf(media)}`;
    })
    .join('\n');
}

function examplesOf(media: MediaType): string {
  const list: Array<{ summary: string; value: unknown }> = media.examples
    ? Object.values(media.examples)
    : media.example !== undefined
      ? [{ summary: 'Example', value: media.example }]
      : [];
  return list
    .map(
      (e) =>
        `<p class="ex-title">${escapeHtml(e.summary)}</p><pre><code>${escapeHtml(JSON.stringify(e.value, null, 2))}</code></pre>`,
    )
    .join('\n');
}

function responsesTable(doc: OpenApiDocument, op: Operation): string {
  const rows = Object.entries(op.responses)
    .map(([status, r]) => {
      const resolved =
        '$ref' in r ? doc.components.responses[r.$ref.replace('#/components/responses/', '')] : r;
      if (!resolved) return '';
      const content = Object.entries(resolved.content ?? {})
        .map(([type, m]) => {
          const name = refName(m.schema);
          return `<code>${escapeHtml(type)}</code>${name ? ` <code>${escapeHtml(name)}</code>` : ''}`;
        })
        .join(' ');
      return `<tr><td><span class="status s${escapeHtml(status.charAt(0))}">${escapeHtml(status)}</span></td><td>${escapeHtml(resolved.description)}</td><td>${content}</td></tr>`;
    })
    .join('\n');
  return `<h4>Responses</h4>
<table><thead><tr><th>Status</th><th>Meaning</th><th>Body</th></tr></thead><tbody>${rows}</tbody></table>`;
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** A curl command for the operation, filled in with the document's examples. */
export function curlExample(doc: OpenApiDocument, base: string, entry: Entry): string {
  const { method, path, op } = entry;
  const params = op.parameters ?? [];
  let url = path;
  for (const p of params.filter((x) => x.in === 'path')) {
    url = url.replace(`{${p.name}}`, encodeURIComponent(String(p.example ?? p.name)));
  }
  const query = params
    .filter((p) => p.in === 'query' && p.example !== undefined)
    .map((p) => `${encodeURIComponent(p.name)}=${encodeURIComponent(String(p.example))}`)
    .join('&');
  const lines = [
    `curl -sS${method === 'get' ? '' : ` -X ${method.toUpperCase()}`} "${base}${url}${query ? `?${query}` : ''}"`,
  ];
  const security = op.security ?? doc.security;
  const schemes = security.flatMap((s) => Object.keys(s));
  if (schemes[0] === 'basicAuth') lines.push(`-u "admin:$PROMOSYNC_ADMIN_KEY"`);
  else if (schemes.includes('bearerAuth')) lines.push(`-H "Authorization: Bearer $PROMOSYNC_KEY"`);
  const media = op.requestBody?.content['application/json'];
  if (media) {
    const example = media.examples ? Object.values(media.examples)[0]?.value : media.example;
    lines.push(`-H 'Content-Type: application/json'`);
    if (example !== undefined) lines.push(`-d ${shellQuote(JSON.stringify(example, null, 2))}`);
  }
  return lines.join(' \\\n     ');
}

function authLine(doc: OpenApiDocument, op: Operation): string {
  const security = op.security ?? doc.security;
  if (security.length === 0) return '<p class="auth">No authentication.</p>';
  const schemes = security
    .flatMap((s) => Object.keys(s))
    .map((k) => (k === 'basicAuth' ? 'HTTP Basic (password: the key)' : 'Bearer key'))
    .join(' or ');
  const roles = op['x-roles']
    ? ` &middot; roles: ${op['x-roles'].map((r) => `<b>${escapeHtml(r)}</b>`).join(', ')}`
    : '';
  return `<p class="auth">Auth: ${escapeHtml(schemes)}${roles}</p>`;
}

function operationCard(doc: OpenApiDocument, base: string, e: Entry): string {
  const { method, path, op } = e;
  return `<article class="op" id="${anchor(op)}" data-method="${method}" data-path="${escapeHtml(path)}">
<h3><span class="method ${method}">${method.toUpperCase()}</span> <code class="path">${escapeHtml(path)}</code></h3>
<p class="summary">${escapeHtml(op.summary)}</p>
${op.description ? `<p>${escapeHtml(op.description)}</p>` : ''}
${authLine(doc, op)}
${parametersTable(op.parameters ?? [])}
${requestBody(doc, op)}
${responsesTable(doc, op)}
<h4>Example</h4>
<pre class="curl"><code>${escapeHtml(curlExample(doc, base, e))}</code></pre>
</article>`;
}

function errorsSection(doc: OpenApiDocument): string {
  const rows = Object.values(doc.components.responses)
    .flatMap((r) =>
      r['x-problem'] ? r['x-problem'].codes.map((c) => ({ ...c, status: r['x-problem']!.status })) : [],
    )
    .map(
      (p) =>
        `<tr><td><code>${escapeHtml(p.code)}</code></td><td><span class="status s${String(p.status)[0]}">${p.status}</span></td><td>${escapeHtml(p.meaning)}</td></tr>`,
    )
    .join('\n');
  return `<section id="errors"><h2>Errors</h2>
<p>Every error is <code>application/problem+json</code> (RFC 9457) with a stable <code>code</code>; input errors list each problem in <code>errors</code> (<code>index</code>, <code>path</code>, <code>message</code>).</p>
<table><thead><tr><th>Code</th><th>Status</th><th>Meaning</th></tr></thead><tbody>${rows}</tbody></table>
</section>`;
}

const STYLE = `
:root{--bg:#fbfbfc;--fg:#1d2330;--muted:#5d6678;--line:#dfe3ea;--card:#fff;--code:#f2f4f8;--accent:#2456c8}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:20px 32px;border-bottom:1px solid var(--line);background:#fff}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:4px 0;color:var(--muted);max-width:980px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.layout{display:grid;grid-template-columns:300px minmax(0,1fr);align-items:start}
nav{position:sticky;top:0;max-height:100vh;overflow:auto;padding:16px 12px 32px 24px;border-right:1px solid var(--line)}
nav h2{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:18px 0 6px}
nav ul{list-style:none;margin:0;padding:0}
nav li{margin:3px 0;font-size:13px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav .method{font-size:10px;min-width:40px}
main{padding:8px 32px 64px;max-width:1100px}
main h2{margin:32px 0 8px;font-size:20px;border-bottom:1px solid var(--line);padding-bottom:6px}
.tag-desc{color:var(--muted);margin-top:0}
.op{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 20px;margin:16px 0}
.op h3{margin:2px 0 6px;font-size:17px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.op h4{margin:16px 0 6px;font-size:14px}
.op h5{margin:10px 0 4px;font-size:13px}
.summary{font-weight:600;margin:4px 0}
.auth{color:var(--muted);font-size:13px}
.muted{color:var(--muted);font-weight:normal}
.method{display:inline-block;min-width:52px;text-align:center;padding:2px 8px;border-radius:4px;color:#fff;font:600 12px/1.6 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.method.get{background:#1f7a4d}.method.post{background:#2456c8}.method.put{background:#8a5a00}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;background:var(--code);padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}
.path{font-size:15px;background:none;padding:0}
pre{background:#1d2330;color:#e8ecf3;padding:12px 14px;border-radius:6px;overflow:auto;margin:6px 0}
pre code{background:none;color:inherit;padding:0}
pre.curl{white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0 8px}
th,td{border:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f5f7fa;font-weight:600}
td:first-child{white-space:nowrap}
td.type code{white-space:nowrap}
.req{color:#b3261e;font-size:11px;font-weight:600}
.status{display:inline-block;padding:0 6px;border-radius:3px;font:600 12px ui-monospace,monospace;background:#e8edf5}
.status.s2{background:#dcf3e6;color:#145c37}.status.s4{background:#fde8d7;color:#8a3a00}.status.s5{background:#fadadd;color:#8c1c23}
.ex-title{margin:8px 0 2px;font-size:13px;color:var(--muted)}
.variants{margin:4px 0;padding-left:20px;font-size:13px}
@media (max-width:900px){.layout{grid-template-columns:1fr}nav{position:static;max-height:none;border-right:0}}
`;

/**
 * The documentation page: every operation of the document with its method, path, summary,
 * parameters, request body, responses and a curl example against `base`.
 */
export function renderDocsPage(doc: OpenApiDocument, base: string): string {
  const all = entries(doc);
  const byTag = doc.tags
    .map((t) => ({ tag: t, ops: all.filter((e) => e.op.tags[0] === t.name) }))
    .filter((g) => g.ops.length > 0);
  const nav = byTag
    .map(
      (g) =>
        `<h2>${escapeHtml(g.tag.name)}</h2><ul>${g.ops
          .map(
            (e) =>
              `<li><a href="#${anchor(e.op)}"><span class="method ${e.method}">${e.method.toUpperCase()}</span> ${escapeHtml(e.path)}</a></li>`,
          )
          .join('')}</ul>`,
    )
    .join('\n');
  const sections = byTag
    .map(
      (g) => `<section id="tag-${escapeHtml(g.tag.name)}"><h2>${escapeHtml(g.tag.name)}</h2>
<p class="tag-desc">${escapeHtml(g.tag.description)}</p>
${g.ops.map((e) => operationCard(doc, base, e)).join('\n')}</section>`,
    )
    .join('\n');
  const schemes = Object.entries(doc.components.securitySchemes)
    .map(
      ([name, s]) =>
        `<li><code>${escapeHtml(name)}</code> (${escapeHtml(s.scheme)}): ${escapeHtml(s.description)}</li>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(doc.info.title)} ${escapeHtml(doc.info.version)}</title>
<style>${STYLE}</style></head>
<body>
<header><h1>${escapeHtml(doc.info.title)} <span class="muted">${escapeHtml(doc.info.version)}</span></h1>
<p>${escapeHtml(doc.info.description)}</p>
<p>OpenAPI ${escapeHtml(doc.openapi)} document: <a href="/openapi.json">/openapi.json</a> &middot; base URL <code>${escapeHtml(base)}</code></p></header>
<div class="layout"><nav aria-label="Endpoints">${nav}<h2>Reference</h2><ul><li><a href="#auth">Authentication</a></li><li><a href="#errors">Errors</a></li></ul></nav>
<main>
<section id="auth"><h2>Authentication</h2>
<p>Send an API key as <code>Authorization: Bearer &lt;key&gt;</code>. Create keys with <code>promosync keys create --role producer|merchant|checkout|admin</code>; the key is printed once.</p>
<ul>${schemes}</ul></section>
${sections}
${errorsSection(doc)}
</main></div>
</body></html>
`;
}
