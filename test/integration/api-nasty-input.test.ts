import { request as httpRequest } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import type { Problem } from '../helpers/problem.ts';

/**
 * Inputs that once got past validation into the database or the parsers and came back as
 * 500s. Each must be a 4xx problem document, and none may break a later read.
 */

const promo = (entityId: string, extra: Record<string, unknown> = {}) => ({
  machine: 'promotion',
  entityId,
  type: 'create',
  ...extra,
});

/** A raw HTTP request: fetch would refuse or repair some of these paths and bodies. */
function raw(
  url: string,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<{ status: number; type: string; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'GET',
        path: opts.path,
        headers: opts.headers,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }),
        );
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('nasty input never yields a 5xx', () => {
  const h = useHarness({ env: { JOB_ATTEMPTS: '1', RATE_LIMIT_PER_SECOND: '0' } });

  const post = (body: unknown): Promise<Response> => h.request('/v1/events', { method: 'POST', json: body });

  async function expectProblem(res: Response, status: number, code: string): Promise<Problem> {
    const problem = (await res.json()) as Problem;
    expect({ status: res.status, code: problem.code }).toEqual({ status, code });
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    return problem;
  }

  describe('occurredAt is bounded to the years 1970-9999 after its offset is applied', () => {
    for (const at of [
      '9999-12-31T23:59:59-14:00',
      '0001-01-01T00:00:00+14:00',
      '0001-01-01T00:00:00Z',
      '1969-12-31T23:59:59.999Z',
      '1970-01-01T00:00:00+00:01',
    ]) {
      it(`${at} is refused with invalid_event naming occurredAt, and stores nothing`, async () => {
        const before = await h.state();
        const problem = await expectProblem(
          await post(promo('oa-bad', { occurredAt: at })),
          400,
          'invalid_event',
        );
        expect(JSON.stringify(problem)).toContain('occurredAt');
        expect(await h.state()).toEqual(before);
      });
    }

    for (const at of ['1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '9999-12-31T23:59:59+14:00']) {
      it(`${at} is accepted and read back`, async () => {
        const id = `oa-ok-${at.slice(0, 4)}-${at.length}`;
        expect((await post(promo(id, { occurredAt: at }))).status).toBe(202);
        await h.drain();
        const res = await h.request(`/v1/promotions/${id}/events`);
        expect(res.status).toBe(200);
        const { items } = (await res.json()) as { items: Array<{ occurredAt: string }> };
        expect(new Date(items[0]!.occurredAt).getTime()).toBe(new Date(at).getTime());
      });
    }
  });

  it('an event log holding a timestamp outside 1970-9999 (stored before the bound) still reads, never a 500', async () => {
    expect((await post(promo('old-row'))).status).toBe(202);
    await h.drain();
    await h.service.db.pool.query(
      `INSERT INTO event_log (machine, entity_id, type, source, outcome, occurred_at)
       VALUES ('promotion', 'old-row', 'create', 'test-src', 'stale', '10000-01-01T13:59:59Z'),
              ('promotion', 'old-row', 'create', 'test-src', 'stale', '0001-12-31T10:00:00Z BC'),
              ('promotion', 'old-row', 'create', 'test-src', 'stale', '200000-06-01T00:00:00Z')`,
    );
    for (const key of [h.keys.producer, h.keys.admin]) {
      const res = await h.request('/v1/promotions/old-row/events', { key });
      expect(res.status, await res.clone().text()).toBe(200);
      const { items } = (await res.json()) as { items: Array<{ occurredAt: string | null }> };
      expect(items.map((i) => i.occurredAt)).toEqual([
        null,
        '+010000-01-01T13:59:59.000Z',
        '0000-12-31T10:00:00.000Z',
        '+200000-06-01T00:00:00.000Z',
      ]);
    }
  });

  it('updatedSince before year 1 after its offset is refused as invalid_request, not a database error', async () => {
    for (const since of ['0001-01-01T00:00:00%2B14:00', '0000-01-01T00:00:00Z']) {
      const problem = await expectProblem(
        await h.request(`/v1/promotions?updatedSince=${since}`, { key: h.keys.admin }),
        400,
        'invalid_request',
      );
      expect(JSON.stringify(problem)).toContain('updatedSince');
    }
    expect(
      (await h.request('/v1/promotions?updatedSince=0001-01-01T00:00:00Z', { key: h.keys.admin })).status,
    ).toBe(200);
  });

  describe('compressed bodies that do not decompress are refused', () => {
    const garbage = Buffer.from('this is not compressed at all');
    for (const encoding of ['deflate', 'br', 'gzip']) {
      it(`Content-Encoding: ${encoding} with a malformed body is 400 invalid_request`, async () => {
        const before = await h.state();
        const res = await raw(h.url, {
          method: 'POST',
          path: '/v1/events',
          headers: {
            authorization: `Bearer ${h.keys.producer}`,
            'content-type': 'application/json',
            'content-encoding': encoding,
          },
          body: garbage,
        });
        expect(res.status, res.body).toBe(400);
        expect(res.type).toMatch(/^application\/problem\+json/);
        expect(JSON.parse(res.body).code).toBe('invalid_request');
        expect(await h.state()).toEqual(before);
      });
    }

    for (const [encoding, pack] of [
      ['deflate', deflateSync],
      ['br', brotliCompressSync],
      ['gzip', gzipSync],
    ] as const) {
      it(`Content-Encoding: ${encoding} with a well-formed body is accepted`, async () => {
        const res = await raw(h.url, {
          method: 'POST',
          path: '/v1/events',
          headers: {
            authorization: `Bearer ${h.keys.producer}`,
            'content-type': 'application/json',
            'content-encoding': encoding,
          },
          body: pack(Buffer.from(JSON.stringify(promo(`enc-${encoding}`)))),
        });
        expect(res.status, res.body).toBe(202);
      });
    }
  });

  it('a malformed percent-escape in the path is 400 invalid_request', async () => {
    for (const path of [
      '/v1/promotions/%E0%A4%A',
      '/v1/promotions/%E0%A4%A/events',
      '/v1/%ZZ',
      '/v1/promotions/%',
    ]) {
      const res = await raw(h.url, { path, headers: { authorization: `Bearer ${h.keys.admin}` } });
      expect(res.status, `${path}: ${res.body}`).toBe(400);
      expect(res.type).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.body).code).toBe('invalid_request');
    }
  });

  it('no request in a list of nasty inputs is answered with a 5xx', async () => {
    const auth = { authorization: `Bearer ${h.keys.admin}`, 'content-type': 'application/json' };
    const bodies: Array<string | Buffer> = [
      JSON.stringify(promo('n1', { occurredAt: '9999-12-31T23:59:59-14:00' })),
      JSON.stringify(promo('n2', { occurredAt: '+010000-01-01T00:00:00Z' })),
      JSON.stringify(promo('n3', { occurredAt: '2026-02-30T00:00:00Z' })),
      JSON.stringify(promo('n4', { occurredAt: '2026-01-01T24:00:00Z' })),
      JSON.stringify(promo('n5', { version: 1e308 })),
      JSON.stringify(promo('n6', { data: { a: '\ud800' } })),
      JSON.stringify({ events: [null] }),
      '{"machine":"promotion","entityId":"n7","type":"create","data":{"__proto__":{"x":1}}}',
      '{"events":' + '['.repeat(5000) + ']'.repeat(5000) + '}',
      '\u0000',
      '{"a":1',
      Buffer.from([0xff, 0xfe, 0x00]),
    ];
    const requests: Array<{
      method: string;
      path: string;
      headers: Record<string, string>;
      body?: string | Buffer;
    }> = [
      ...bodies.map((body) => ({ method: 'POST', path: '/v1/events', headers: auth, body })),
      ...['deflate', 'br', 'gzip', 'identity', 'compress', 'deflate, br', 'x'].map((e) => ({
        method: 'POST',
        path: '/v1/events',
        headers: { ...auth, 'content-encoding': e },
        body: '\x78\x9c garbage',
      })),
      {
        method: 'POST',
        path: '/v1/events',
        headers: { ...auth, 'content-type': 'application/json; charset=utf-7' },
        body: '{}',
      },
      {
        method: 'POST',
        path: '/v1/events?wait=true&timeoutMs=1e400',
        headers: auth,
        body: JSON.stringify(promo('n8')),
      },
      ...[
        '/v1/promotions/%E0%A4%A',
        '/v1/promotions/%C0%AF',
        '/v1/promotions/%00',
        '/v1/%E0%A4%A/x',
        '/v1/promotions/x/%E0%A4%A',
        '/v1/promotions?updatedSince=0001-01-01T00:00:00%2B14:00',
        '/v1/promotions?updatedSince=9999-12-31T23:59:59-14:00',
        '/v1/promotions?updatedSince=%E0%A4%A',
        '/v1/promotions?updatedSince=-271821-04-20T00:00:00Z',
        '/v1/promotions?limit=%00',
        '/v1/promotions?cursor=' + 'A'.repeat(500),
        '/v1/promotions/old-row/events?cursor=99999999999999999999',
        '/v1/machines/%E0%A4%A',
        '/v1/machines/promotion/diagram?format=%E0',
        '/%E0%A4%A',
        '/readyz/%E0',
      ].map((path) => ({ method: 'GET', path, headers: auth })),
    ];
    const answers: string[] = [];
    for (const r of requests) {
      const res = await raw(h.url, r);
      answers.push(
        `${res.status} ${r.method} ${r.path} ${JSON.stringify(r.headers['content-encoding'] ?? '')}`,
      );
    }
    expect(answers.filter((a) => a.startsWith('5'))).toEqual([]);
  });
});
