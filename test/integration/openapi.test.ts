import { beforeAll, describe, expect, it } from 'vitest';
import type { Express } from 'express';
import pino from 'pino';
import { useHarness } from '../helpers/harness.ts';
import { REDIS_URL } from '../helpers/db.ts';
import { validates } from '../helpers/json-schema.ts';
import { promo } from '../helpers/events.ts';
import { createApp } from '../../src/api/index.ts';
import { CapacityService } from '../../src/capacity/index.ts';
import { ERROR_MEANING, type OpenApiDocument } from '../../src/api/openapi.ts';
import { writeProblem, STATUS } from '../../src/api/problem.ts';
import { PromosyncError, type ErrorCode } from '../../src/domain/index.ts';
import { EventQueue, createRedis } from '../../src/queue/index.ts';

/** The routes an Express app serves, as `METHOD path`, from its router stack. */
function appRoutes(app: Express): Array<{ method: string; path: string }> {
  interface Layer {
    name: string;
    rawPath?: string;
    route?: { path: string; methods: Record<string, boolean> };
    handle: { stack?: Layer[] };
  }
  const out: Array<{ method: string; path: string }> = [];
  const walk = (stack: Layer[], prefix: string): void => {
    for (const layer of stack) {
      if (layer.route) {
        for (const m of Object.keys(layer.route.methods))
          out.push({ method: m, path: prefix + layer.route.path });
      } else if (layer.handle.stack) {
        walk(layer.handle.stack, prefix);
      } else if (layer.name === 'app' && layer.rawPath) {
        // A mounted sub-application (the queue dashboard): its entry page.
        out.push({ method: 'get', path: prefix + layer.rawPath });
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
  return out;
}

/** `/v1/:collection/:id` → a regex that `/v1/promotions/{id}` (with `{id}` filled in) matches. */
const expressPattern = (path: string): RegExp =>
  new RegExp(`^${path.replace(/[.]/g, '\\.').replace(/:[A-Za-z]+/g, '[^/]+')}$`);
const filled = (docPath: string): string => docPath.replace(/\{[^}]+\}/g, 'x');

describe('the OpenAPI document', () => {
  const h = useHarness();
  let doc: OpenApiDocument;

  beforeAll(async () => {
    const res = await h.request('/openapi.json', { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    doc = (await res.json()) as OpenApiDocument;
  });

  it('is served without a key as an OpenAPI 3.1 document with a bearer scheme', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info.title).toBe('promosync API');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        expect(op.operationId, `${method} ${path}`).toBeTruthy();
        expect(op.summary, `${method} ${path}`).toBeTruthy();
        expect(Object.keys(op.responses).length, `${method} ${path}`).toBeGreaterThan(0);
        for (const p of (path.match(/\{[^}]+\}/g) ?? []).map((x) => x.slice(1, -1))) {
          expect(op.parameters?.some((q) => q.in === 'path' && q.name === p && q.required)).toBe(true);
        }
      }
    }
  });

  it('documents every route the app serves, and only those', async () => {
    const redis = createRedis(REDIS_URL);
    const queue = new EventQueue({ connection: redis, name: h.queueName });
    try {
      const app = createApp({
        registry: h.service.registry,
        queue,
        prisma: h.service.db.prisma,
        verify: async () => null,
        logger: pino({ level: 'silent' }),
        metrics: h.service.metrics,
        probes: {},
        changes: h.service.changes!,
        capacity: new CapacityService({ pool: h.service.db.pool, logger: pino({ level: 'silent' }) }),
      });
      const routes = appRoutes(app);
      const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
        Object.keys(item).map((method) => ({ method, path })),
      );
      expect(routes.length).toBeGreaterThanOrEqual(10);
      for (const r of routes) {
        const re = expressPattern(r.path);
        const hits = documented.filter((d) => d.method === r.method && re.test(filled(d.path)));
        expect(hits, `${r.method.toUpperCase()} ${r.path} is documented`).not.toHaveLength(0);
      }
      for (const d of documented) {
        const served = routes.some(
          (r) => r.method === d.method && expressPattern(r.path).test(filled(d.path)),
        );
        expect(served, `${d.method.toUpperCase()} ${d.path} is served`).toBe(true);
      }
      // One set of entity paths per machine collection.
      for (const info of h.service.registry.list()) {
        const c = info.analysis.collection;
        expect(Object.keys(doc.paths)).toEqual(
          expect.arrayContaining([`/v1/${c}`, `/v1/${c}/{id}`, `/v1/${c}/{id}/events`]),
        );
      }
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });

  it('every documented public path answers without a key', async () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      const op = item.get;
      if (!op || op.security === undefined || op.security.length > 0) continue;
      const res = await h.request(path, { key: null });
      expect(res.status, path).toBe(200);
      await res.arrayBuffer();
    }
  });

  it('its request body schema accepts and rejects the same events as POST /v1/events', async () => {
    const schema = doc.paths['/v1/events']!.post!.requestBody!.content['application/json']!.schema;
    const ok = { machine: 'promotion', entityId: 'promo-1', type: 'create' };
    const samples: Array<{ name: string; body: unknown; valid: boolean }> = [
      { name: 'minimal event', body: ok, valid: true },
      {
        name: 'every field',
        body: {
          ...ok,
          type: 'activate',
          eventId: 'cps-food-000123',
          version: 17,
          merchantId: 'm-1',
          occurredAt: '2026-11-21T10:00:00+01:00',
          data: { title: '10% off', percent: 10, stackable: false, note: null },
        },
        valid: true,
      },
      { name: 'batch', body: { events: [ok, { ...ok, type: 'activate' }] }, valid: true },
      {
        name: 'version-ordered machine with a version',
        body: { machine: 'campaign', entityId: 'c-1', type: 'launch', version: 3 },
        valid: true,
      },
      { name: 'empty object', body: {}, valid: false },
      { name: 'array body', body: [ok], valid: false },
      { name: 'missing type', body: { machine: 'promotion', entityId: 'p' }, valid: false },
      { name: 'entityId with a space', body: { ...ok, entityId: 'promo 1' }, valid: false },
      { name: 'entityId too long', body: { ...ok, entityId: 'x'.repeat(129) }, valid: false },
      { name: 'unknown machine', body: { ...ok, machine: 'nope' }, valid: false },
      { name: 'type not of the machine', body: { ...ok, type: 'launch' }, valid: false },
      { name: 'negative version', body: { ...ok, version: -1 }, valid: false },
      { name: 'fractional version', body: { ...ok, version: 1.5 }, valid: false },
      { name: 'version as a string', body: { ...ok, version: '3' }, valid: false },
      { name: 'version above 2^53-1', body: { ...ok, version: 2 ** 53 }, valid: false },
      { name: 'unknown field', body: { ...ok, priority: 1 }, valid: false },
      { name: 'occurredAt not ISO 8601', body: { ...ok, occurredAt: 'yesterday' }, valid: false },
      { name: 'eventId with a space', body: { ...ok, eventId: 'a b' }, valid: false },
      { name: 'merchantId with a slash', body: { ...ok, merchantId: 'm/1' }, valid: false },
      { name: 'nested data', body: { ...ok, data: { a: { b: 1 } } }, valid: false },
      { name: 'data field starting with a digit', body: { ...ok, data: { '1x': 1 } }, valid: false },
      { name: 'data as an array', body: { ...ok, data: [1] }, valid: false },
      {
        name: 'version-ordered machine without a version',
        body: { machine: 'campaign', entityId: 'c-1', type: 'launch' },
        valid: false,
      },
      { name: 'empty batch', body: { events: [] }, valid: false },
      { name: 'batch with a bad event', body: { events: [ok, { machine: 'promotion' }] }, valid: false },
      { name: 'batch with another key', body: { events: [ok], extra: true }, valid: false },
      {
        name: 'batch over the limit',
        body: { events: Array.from({ length: 1001 }, () => ok) },
        valid: false,
      },
    ];
    for (const s of samples) {
      const res = await h.request('/v1/events', { method: 'POST', json: s.body });
      await res.arrayBuffer();
      expect(res.status < 300, `the API ${s.valid ? 'accepts' : 'rejects'} ${s.name}`).toBe(s.valid);
      expect(
        validates(doc, schema, s.body),
        `the document ${s.valid ? 'accepts' : 'rejects'} ${s.name}`,
      ).toBe(s.valid);
    }
    await h.drain();
  });

  it('its query parameters bound the values the API accepts', async () => {
    const params = doc.paths['/v1/promotions']!.get!.parameters!;
    const limit = params.find((p) => p.name === 'limit')!;
    const status = params.find((p) => p.name === 'status')!;
    for (const [value, valid] of [
      [1, true],
      [1000, true],
      [0, false],
      [1001, false],
    ] as const) {
      const res = await h.request(`/v1/promotions?limit=${value}`, { key: h.keys.merchant });
      await res.arrayBuffer();
      expect(res.status === 200, `limit=${value}`).toBe(valid);
      expect(validates(doc, limit.schema, value), `limit=${value}`).toBe(valid);
    }
    for (const [value, valid] of [
      ['ACTIVATED', true],
      ['LAUNCHED', false],
    ] as const) {
      const res = await h.request(`/v1/promotions?status=${value}`, { key: h.keys.merchant });
      await res.arrayBuffer();
      expect(res.status === 200, `status=${value}`).toBe(valid);
      expect(validates(doc, status.schema, value), `status=${value}`).toBe(valid);
    }
    const unknown = await h.request('/v1/promotions?colour=red', { key: h.keys.merchant });
    expect(unknown.status).toBe(400);
    expect(params.map((p) => p.name)).not.toContain('colour');
  });

  it('documents each error code with the status the API answers it with', () => {
    const documented = Object.values(doc.components.responses).flatMap((r) =>
      (r['x-problem']?.codes ?? []).map((c) => [c.code, r['x-problem']!.status] as const),
    );
    const codes = Object.keys(STATUS) as ErrorCode[];
    expect(documented.map(([c]) => c).sort()).toEqual([...codes].sort());
    expect(Object.keys(ERROR_MEANING).sort()).toEqual([...codes].sort());
    for (const [code, status] of documented) {
      const res = { statusCode: 0, setHeader: () => res, end: () => res };
      writeProblem(res as never, new PromosyncError(code, 'x'), '/x');
      expect(res.statusCode, code).toBe(status);
    }
  });

  it('answers errors as problem+json in the documented shape', async () => {
    const res = await h.request('/v1/events', { method: 'POST', json: { machine: 'promotion' } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(validates(doc, { $ref: '#/components/schemas/Problem' }, await res.json())).toBe(true);
  });

  it('describes what the read endpoints return', async () => {
    const post = await h.request('/v1/events?wait=true', {
      method: 'POST',
      json: promo('shape-1', 'create', { merchantId: 'm-1', data: { t: 'x' } }),
    });
    expect(post.status).toBe(200);
    const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
    expect(validates(doc, ref('AppliedResult'), await post.json())).toBe(true);
    const checks: Array<[string, string]> = [
      ['/v1/promotions/shape-1', 'Entity'],
      ['/v1/promotions', 'EntityPage'],
      ['/v1/promotions/shape-1/events', 'EventLogPage'],
      ['/v1/machines', 'MachineList'],
      ['/v1/machines/campaign', 'Machine'],
    ];
    for (const [path, name] of checks) {
      const res = await h.request(path, { key: h.keys.merchant });
      expect(res.status, path).toBe(200);
      expect(validates(doc, ref(name), await res.json()), `${path} is a ${name}`).toBe(true);
    }
    const accepted = await h.request('/v1/events', {
      method: 'POST',
      json: { machine: 'promotion', entityId: 'shape-2', type: 'create' },
    });
    expect(validates(doc, ref('Accepted'), await accepted.json())).toBe(true);
    await h.drain();
  });
});
