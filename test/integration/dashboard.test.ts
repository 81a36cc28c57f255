import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';

const basic = (password: string, user = 'ops'): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('the queue dashboard at /admin/queues', () => {
  const h = useHarness();

  const get = (path: string, authorization?: string) =>
    fetch(`${h.url}${path}`, { headers: authorization ? { authorization } : {} });

  it('asks a browser to log in when no key is sent', async () => {
    const res = await get('/admin/queues');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="promosync admin"/);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('asks again for an unknown key, as password or Bearer token', async () => {
    for (const auth of [basic('not-a-key'), basic(''), 'Bearer not-a-key', 'Basic !!!']) {
      const res = await get('/admin/queues', auth);
      expect(res.status, auth).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="promosync admin"/);
      await res.arrayBuffer();
    }
  });

  it('refuses merchant and producer keys', async () => {
    for (const auth of [basic(h.keys.merchant), `Bearer ${h.keys.merchant}`, basic(h.keys.producer)]) {
      const res = await get('/admin/queues', auth);
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ code: 'forbidden' });
    }
  });

  it('serves the dashboard and its assets to an admin key (any username)', async () => {
    for (const auth of [basic(h.keys.admin), basic(h.keys.admin, ''), `Bearer ${h.keys.admin}`]) {
      const res = await get('/admin/queues', auth);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      const html = await res.text();
      expect(html).toContain('<div id="root">');
      expect(html).toContain('<base href="/admin/queues/"');
    }
    const html = await (await get('/admin/queues', basic(h.keys.admin))).text();
    const assets = [...html.matchAll(/(?:src|href)="(static\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThan(1);
    for (const asset of assets) {
      const res = await get(`/admin/queues/${asset}`, basic(h.keys.admin));
      expect(res.status, asset).toBe(200);
      await res.arrayBuffer();
      const anonymous = await get(`/admin/queues/${asset}`);
      expect(anonymous.status, asset).toBe(401);
      await anonymous.arrayBuffer();
    }
  });

  it("lists the event queue with its jobs through the dashboard's API", async () => {
    const post = await h.request('/v1/events', {
      method: 'POST',
      json: { machine: 'promotion', entityId: 'dash-1', type: 'create' },
    });
    expect(post.status).toBe(202);
    await h.drain();
    const res = await get('/admin/queues/api/queues?activeQueue=' + h.queueName, basic(h.keys.admin));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { queues: Array<{ name: string; counts: Record<string, number> }> };
    const queue = body.queues.find((q) => q.name === h.queueName);
    expect(queue).toBeDefined();
    expect(queue!.counts.completed).toBeGreaterThanOrEqual(1);
  });
});
