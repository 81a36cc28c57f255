import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';

/** One sample of a Prometheus text exposition: name, labels and value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

describe('/metrics', () => {
  const h = useHarness();

  type Lookup = ((name: string, labels?: Record<string, string>) => number | undefined) & { names: string[] };

  async function scrape(): Promise<Lookup> {
    const res = await h.request('/metrics', { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const samples = parseMetrics(await res.text());
    // The sum of the samples with this name and (at least) these labels; undefined when there are none.
    const lookup = (name: string, labels: Record<string, string> = {}): number | undefined => {
      const hits = samples.filter(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      );
      return hits.length === 0 ? undefined : hits.reduce((sum, s) => sum + s.value, 0);
    };
    return Object.assign(lookup, { names: samples.map((s) => s.name) });
  }

  const send = async (event: Record<string, unknown>, key = h.keys.producer): Promise<string> => {
    const res = await h.request('/v1/events?wait=true', { method: 'POST', json: event, key });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { results: Array<{ outcome: string; anomaly: boolean }> };
    const r = body.results[0]!;
    return r.anomaly ? `${r.outcome}+anomaly` : r.outcome;
  };

  it('starts with the metric families declared and nothing counted', async () => {
    const m = await scrape();
    expect(m('promosync_events_received_total')).toBeUndefined();
    expect(m('promosync_apply_batch_events_count')).toBe(0);
    expect(m('promosync_queue_jobs', { queue: h.queueName, state: 'waiting' })).toBe(0);
    // Process metrics of prom-client, under the promosync_ prefix (promosync_process_cpu_user_seconds_total, promosync_nodejs_…).
    expect(m.names.some((n) => /^promosync_process_cpu_user_seconds_total$/.test(n))).toBe(true);
  });

  it('counts events received and their outcomes by machine and source as they are applied', async () => {
    const promo = { machine: 'promotion', entityId: 'm-promo-1', merchantId: 'm-1' };
    expect(await send({ ...promo, type: 'create', eventId: 'e1' })).toBe('applied');
    expect(await send({ ...promo, type: 'activate', eventId: 'e2' })).toBe('applied');
    expect(await send({ ...promo, type: 'activate', eventId: 'e2' })).toBe('duplicate');
    expect(await send({ ...promo, type: 'create', eventId: 'e3' })).toBe('stale');
    expect(await send({ ...promo, type: 'complete', eventId: 'e4', merchantId: 'm-2' })).toBe('rejected');
    // COMPLETED is final: a later delete wins by rank but is a move the machine does not have.
    const other = { machine: 'promotion', entityId: 'm-promo-2' };
    for (const type of ['create', 'activate', 'complete'])
      expect(await send({ ...other, type })).toBe('applied');
    expect(await send({ ...other, type: 'delete' })).toBe('applied+anomaly');
    // Another source (an admin key) and another machine.
    expect(
      await send({ machine: 'campaign', entityId: 'c-1', type: 'create', version: 1 }, h.keys.admin),
    ).toBe('applied');

    const m = await scrape();
    const p = { machine: 'promotion', source: 'test-src' };
    const c = { machine: 'campaign', source: 'admin' };
    expect(m('promosync_events_received_total', p)).toBe(9);
    expect(m('promosync_events_received_total', c)).toBe(1);
    expect(m('promosync_events_total', { ...p, outcome: 'applied' })).toBe(6);
    expect(m('promosync_events_total', { ...p, outcome: 'duplicate' })).toBe(1);
    expect(m('promosync_events_total', { ...p, outcome: 'stale' })).toBe(1);
    expect(m('promosync_events_total', { ...p, outcome: 'rejected' })).toBe(1);
    expect(m('promosync_events_total', { ...p, outcome: 'anomaly' })).toBe(1);
    expect(m('promosync_events_total', { ...c, outcome: 'applied' })).toBe(1);
    expect(m('promosync_events_total', { machine: 'campaign', source: 'test-src' })).toBeUndefined();

    // Every event went through one apply statement; each statement is one observation.
    const batches = m('promosync_apply_batch_events_count')!;
    expect(m('promosync_apply_batch_events_sum')).toBe(10);
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThanOrEqual(10);
    expect(m('promosync_apply_seconds_count')).toBe(batches);
    expect(m('promosync_apply_batch_events_bucket', { le: '+Inf' })).toBe(batches);

    expect(m('promosync_http_requests_total', { method: 'POST', route: '/v1/events', status: '200' })).toBe(
      10,
    );
  });

  it('does not count refused requests as received, and counts bad queue jobs as invalid', async () => {
    const before = await scrape();
    const refused = await h.request('/v1/events', {
      method: 'POST',
      json: { machine: 'promotion', entityId: 'bad id', type: 'create' },
    });
    expect(refused.status).toBe(400);
    await h.queue.add('events', {
      source: 'queue-src',
      machine: 'promotion',
      entityId: 'x',
      type: 'explode',
    });
    await h.drain();
    await expect
      .poll(
        async () => (await scrape())('promosync_events_total', { source: 'queue-src', outcome: 'invalid' }),
        {
          timeout: 10_000,
        },
      )
      .toBe(1);
    const m = await scrape();
    expect(m('promosync_events_received_total')).toBe(before('promosync_events_received_total'));
    expect(m('promosync_http_requests_total', { route: '/v1/events', status: '400' })).toBe(1);
  });

  it('reports the queue depth by state at scrape time', async () => {
    const m = await scrape();
    for (const state of ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized']) {
      expect(m('promosync_queue_jobs', { queue: h.queueName, state }), state).toBeDefined();
    }
    expect(m('promosync_queue_jobs', { queue: h.queueName, state: 'completed' })).toBeGreaterThanOrEqual(10);
    expect(m('promosync_queue_jobs', { queue: h.queueName, state: 'failed' })).toBe(1);
    expect(m('promosync_queue_jobs', { queue: h.queueName, state: 'waiting' })).toBe(0);

    // A job not due yet shows up as delayed.
    const job = await h.queue.add(
      'events',
      { source: 'queue-src', machine: 'promotion', entityId: 'later', type: 'create' },
      { delay: 600_000 },
    );
    const after = await scrape();
    expect(after('promosync_queue_jobs', { queue: h.queueName, state: 'delayed' })).toBe(1);
    await job.remove();
  });
});
