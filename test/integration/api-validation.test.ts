import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { expectRefused as expectRefusedBy, type FieldProblem, type Problem } from '../helpers/problem.ts';

/** The event contract (docs/design.md#event-contract): every kind of bad input is refused with a clear reason and changes nothing. */

/** What a rejected request must leave exactly as it was. */

const valid = {
  machine: 'promotion',
  entityId: 'promo-123',
  type: 'create',
  eventId: 'cps-food-000123',
  version: 17,
  merchantId: 'm-1',
  occurredAt: '2026-11-21T10:00:00Z',
  data: { title: '10% off' },
};

/** The valid event with some fields replaced (`undefined` removes a field). */
function event(changes: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...valid };
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

describe('bad input over REST', () => {
  // One attempt per job: should a bad event slip past validation, its job fails at once
  // (and shows up in the job counts) instead of retrying beyond the test's patience.
  const h = useHarness({ env: { JOB_ATTEMPTS: '1' } });

  const post = (body: unknown, query = ''): Promise<Response> =>
    h.request(`/v1/events${query}`, { method: 'POST', json: body });

  const postRaw = (body: string, contentType = 'application/json'): Promise<Response> =>
    h.request('/v1/events', { method: 'POST', headers: { 'content-type': contentType }, body });

  /**
   * Sends a bad request and checks the answer is a problem document with `status` and
   * `code` whose `errors` include each of `problems`, and that no job, row or log entry
   * appeared.
   */
  async function expectRefused(
    send: () => Promise<Response>,
    expected: { status: number; code: string; problems?: Array<Partial<FieldProblem>> },
  ): Promise<Problem> {
    const { problem } = await expectRefusedBy(h, send, expected.status, expected.code);
    expect(problem.status).toBe(expected.status);
    expect(problem.detail).toEqual(expect.any(String));
    for (const p of expected.problems ?? []) {
      expect(problem.errors).toEqual(expect.arrayContaining([expect.objectContaining(p)]));
    }
    return problem;
  }

  it('accepts the valid event the cases below are variations of, which adds a job and a row', async () => {
    // A control: shows that the "nothing changed" checks below do see a change when there is one.
    const before = await h.state();
    const res = await post({ ...valid, entityId: 'control-1', eventId: 'control-1' });
    expect(res.status).toBe(202);
    const after = await h.state();
    expect(after.jobs.completed).toBe(before.jobs.completed! + 1);
    expect(after.entities).toBe(before.entities + 1);
    expect(after.eventLog).toBe(before.eventLog + 1);
  });

  describe('required fields', () => {
    for (const field of ['machine', 'entityId', 'type'] as const) {
      it(`an event without ${field} is refused and names ${field}`, async () => {
        await expectRefused(() => post(event({ [field]: undefined })), {
          status: 400,
          code: 'invalid_event',
          problems: [{ path: field }],
        });
      });
    }
  });

  it('an event with a field the contract does not know is refused and names that field', async () => {
    const problem = await expectRefused(() => post(event({ colour: 'red' })), {
      status: 400,
      code: 'invalid_event',
    });
    expect(problem.errors).toEqual([expect.objectContaining({ path: 'colour' })]);
  });

  it('an event of an unknown machine is refused and names machine', async () => {
    const problem = await expectRefused(() => post(event({ machine: 'coupon' })), {
      status: 400,
      code: 'invalid_event',
      problems: [{ path: 'machine' }],
    });
    expect(problem.errors![0]!.message).toContain('promotion');
  });

  it('an event type the machine does not have is refused and names type', async () => {
    const problem = await expectRefused(() => post(event({ type: 'pause' })), {
      status: 400,
      code: 'invalid_event',
      problems: [{ path: 'type' }],
    });
    expect(problem.errors![0]!.message).toContain('activate');
  });

  it('an event of a version-ordered machine without version is refused and names version', async () => {
    await expectRefused(() => post(event({ machine: 'campaign', version: undefined })), {
      status: 400,
      code: 'invalid_event',
      problems: [{ path: 'version' }],
    });
  });

  describe('entityId', () => {
    it('an entityId longer than 128 characters is refused', async () => {
      await expectRefused(() => post(event({ entityId: 'p'.repeat(129) })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'entityId' }],
      });
    });

    it('an entityId of 128 characters is accepted', async () => {
      const res = await post(event({ entityId: 'p'.repeat(128), eventId: 'long-id-ok' }));
      expect(res.status).toBe(202);
    });

    for (const bad of ['promo/123', 'promo 123', 'promo?x=1', 'prömo', '']) {
      it(`an entityId with characters outside [A-Za-z0-9._:-] (${JSON.stringify(bad)}) is refused`, async () => {
        await expectRefused(() => post(event({ entityId: bad })), {
          status: 400,
          code: 'invalid_event',
          problems: [{ path: 'entityId' }],
        });
      });
    }

    it('an entityId that is not a string is refused', async () => {
      await expectRefused(() => post(event({ entityId: 123 })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'entityId' }],
      });
    });
  });

  it('an eventId longer than 128 characters is refused', async () => {
    await expectRefused(() => post(event({ eventId: 'e'.repeat(129) })), {
      status: 400,
      code: 'invalid_event',
      problems: [{ path: 'eventId' }],
    });
  });

  describe('version', () => {
    it('a negative version is refused', async () => {
      await expectRefused(() => post(event({ version: -1 })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'version' }],
      });
    });

    it('a version that is not an integer is refused', async () => {
      await expectRefused(() => post(event({ version: 1.5 })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'version' }],
      });
    });

    it('a version given as a string is refused', async () => {
      await expectRefused(() => post(event({ version: '17' })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'version' }],
      });
    });

    it('a version beyond Number.MAX_SAFE_INTEGER is refused', async () => {
      const body = JSON.stringify(event({ version: 0 })).replace('"version":0', '"version":9007199254740993');
      await expectRefused(() => postRaw(body), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'version' }],
      });
    });

    it('version Number.MAX_SAFE_INTEGER itself is accepted', async () => {
      const res = await post(
        event({ entityId: 'max-version', eventId: 'max-version', version: Number.MAX_SAFE_INTEGER }),
      );
      expect(res.status).toBe(202);
    });
  });

  for (const bad of ['m 42', 'm/42', '', 'm'.repeat(129)]) {
    it(`a merchantId that is not 1-128 characters of [A-Za-z0-9._:-] (${JSON.stringify(bad.slice(0, 10))}) is refused`, async () => {
      await expectRefused(() => post(event({ merchantId: bad })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'merchantId' }],
      });
    });
  }

  for (const bad of ['yesterday', '2026-11-21', '2026-13-45T10:00:00Z', 1763719200000]) {
    it(`an occurredAt that is not an ISO 8601 date-time (${JSON.stringify(bad)}) is refused`, async () => {
      await expectRefused(() => post(event({ occurredAt: bad })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'occurredAt' }],
      });
    });
  }

  it('an occurredAt in year 0000, which Postgres cannot store, is refused at the edge', async () => {
    await expectRefused(() => post(event({ occurredAt: '0000-01-01T00:00:00Z' })), {
      status: 400,
      code: 'invalid_event',
      problems: [{ path: 'occurredAt' }],
    });
  });

  describe('data', () => {
    it('data with a nested object is refused and names the field', async () => {
      await expectRefused(() => post(event({ data: { title: 'x', terms: { min: 10 } } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data.terms' }],
      });
    });

    it('data with an array value is refused and names the field', async () => {
      await expectRefused(() => post(event({ data: { tags: ['food', 'cashback'] } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data.tags' }],
      });
    });

    it('data larger than 16 KiB serialized is refused', async () => {
      await expectRefused(() => post(event({ data: { blob: 'x'.repeat(16 * 1024) } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data' }],
      });
    });

    it('data that is not an object is refused', async () => {
      await expectRefused(() => post(event({ data: ['10% off'] })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data' }],
      });
    });

    it('a data field named __proto__ is refused, not silently dropped', async () => {
      // JSON.stringify cannot produce an own "__proto__" key, so the body is written by hand.
      const body = JSON.stringify(event({ data: { title: 'x' } })).replace(
        '"data":{',
        '"data":{"__proto__":"polluted",',
      );
      expect(body).toContain('"__proto__":"polluted"');
      const problem = await expectRefused(() => postRaw(body), { status: 400, code: 'invalid_event' });
      expect(problem.errors).toEqual(
        expect.arrayContaining([expect.objectContaining({ path: expect.stringMatching(/^data/) })]),
      );
    });

    it('a data field named __proto__ holding an object is refused, not silently dropped', async () => {
      const body = JSON.stringify(event({ data: { title: 'x' } })).replace(
        '"data":{',
        '"data":{"__proto__":{"isAdmin":true},',
      );
      const problem = await expectRefused(() => postRaw(body), { status: 400, code: 'invalid_event' });
      expect(problem.errors).toEqual(
        expect.arrayContaining([expect.objectContaining({ path: expect.stringMatching(/^data/) })]),
      );
    });

    it('a data string containing a NUL character is refused at the edge', async () => {
      // Postgres cannot store U+0000 in json: accepted, the job could never be applied.
      await expectRefused(() => post(event({ data: { title: 'ten\u0000percent' } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data.title' }],
      });
    });

    it('a data string holding a lone UTF-16 surrogate is refused at the edge', async () => {
      await expectRefused(() => post(event({ data: { title: 'ten\ud800percent' } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data.title' }],
      });
    });

    it('a data field name with characters outside [A-Za-z0-9_] is refused', async () => {
      await expectRefused(() => post(event({ data: { 'valid-until': '2026-12-01' } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data.valid-until' }],
      });
    });
  });

  describe('attribute limits (EVENT_MAX_FIELDS, EVENT_MAX_FIELD_NAME_LENGTH)', () => {
    const fields = (n: number, prefix = 'f') =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, i]));

    it('data with more than 100 fields is refused, saying how many are allowed', async () => {
      const problem = await expectRefused(() => post(event({ data: fields(101) })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'data' }],
      });
      expect(problem.errors!.find((p) => p.path === 'data')!.message).toMatch(/101 fields.*at most 100/);
    });

    it('data with exactly 100 fields is accepted', async () => {
      const res = await post(event({ entityId: 'limits-100', eventId: 'limits-100', data: fields(100) }));
      expect(res.status).toBe(202);
    });

    it('a data field name longer than 64 characters is refused, naming the field and the limit', async () => {
      const name = `n${'x'.repeat(64)}`;
      const problem = await expectRefused(() => post(event({ data: { [name]: 1 } })), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: `data.${name}` }],
      });
      expect(problem.errors!.find((p) => p.path === `data.${name}`)!.message).toMatch(
        /at most 64 characters/,
      );
    });

    it('a data field name of 64 characters is accepted', async () => {
      const name = `n${'x'.repeat(63)}`;
      const res = await post(event({ entityId: 'limits-64', eventId: 'limits-64', data: { [name]: 1 } }));
      expect(res.status).toBe(202);
    });
  });

  describe('the body', () => {
    it('malformed JSON is refused as invalid_json', async () => {
      await expectRefused(() => postRaw('{"machine":"promotion",'), {
        status: 400,
        code: 'invalid_json',
        problems: [{ path: '(body)' }],
      });
    });

    it('a body that is not sent as application/json is refused', async () => {
      const problem = await expectRefused(() => postRaw(JSON.stringify(valid), 'text/plain'), {
        status: 415,
        code: 'unsupported_media_type',
        problems: [{ path: 'content-type' }],
      });
      expect(problem.detail).toContain('application/json');
    });

    it('a body without a content type is refused', async () => {
      const problem = await expectRefused(
        () => h.request('/v1/events', { method: 'POST', body: new Blob([JSON.stringify(valid)]) }),
        { status: 415, code: 'unsupported_media_type', problems: [{ path: 'content-type' }] },
      );
      expect(problem.detail).toContain('application/json');
    });

    it('a body that is an array of events is refused', async () => {
      await expectRefused(() => post([valid]), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: '(body)' }],
      });
    });

    for (const scalar of [42, '"promo-123"', true, null]) {
      it(`a body that is a JSON scalar (${String(scalar)}) is refused`, async () => {
        await expectRefused(() => postRaw(String(scalar)), {
          status: 400,
          code: 'invalid_event',
          problems: [{ path: '(body)' }],
        });
      });
    }

    it('an empty JSON object is refused and names every required field', async () => {
      await expectRefused(() => post({}), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'machine' }, { path: 'entityId' }, { path: 'type' }],
      });
    });

    it('a body larger than the size limit is refused with 413 payload_too_large', async () => {
      const body = JSON.stringify(event({ data: { blob: 'x'.repeat(18 * 1024 * 1024) } }));
      await expectRefused(() => postRaw(body), { status: 413, code: 'payload_too_large' });
    });
  });

  describe('batches', () => {
    it('an empty events array is refused', async () => {
      await expectRefused(() => post({ events: [] }), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'events' }],
      });
    });

    it('events that is not an array is refused', async () => {
      await expectRefused(() => post({ events: valid }), {
        status: 400,
        code: 'invalid_event',
        problems: [{ path: 'events' }],
      });
    });

    it('more than 1000 events in one request is refused with 413 too_many_events', async () => {
      const events = Array.from({ length: 1001 }, (_, i) =>
        event({ entityId: `bulk-${i}`, eventId: `bulk-${i}` }),
      );
      await expectRefused(() => post({ events }), {
        status: 413,
        code: 'too_many_events',
        problems: [{ path: 'events' }],
      });
    });

    it('exactly 1000 events in one request are accepted', async () => {
      const events = Array.from({ length: 1000 }, (_, i) =>
        event({ entityId: `thousand-${i}`, eventId: `thousand-${i}` }),
      );
      const res = await post({ events });
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ accepted: 1000 });
    });

    it('one invalid event refuses the whole batch and its problems carry the index', async () => {
      const events = [
        event({ entityId: 'batch-ok-0', eventId: 'batch-ok-0' }),
        event({ entityId: 'batch bad 1', eventId: 'batch-bad-1' }),
        event({ entityId: 'batch-ok-2', eventId: 'batch-ok-2' }),
        event({ entityId: 'batch-bad-3', eventId: 'batch-bad-3', type: 'explode' }),
      ];
      const problem = await expectRefused(() => post({ events }), {
        status: 400,
        code: 'invalid_event',
        problems: [
          { index: 1, path: 'entityId' },
          { index: 3, path: 'type' },
        ],
      });
      expect(problem.errors!.map((e) => e.index).sort()).toEqual([1, 3]);
    });

    it('a batch of one invalid event still reports the index', async () => {
      await expectRefused(() => post({ events: [event({ version: -5 })] }), {
        status: 400,
        code: 'invalid_event',
        problems: [{ index: 0, path: 'version' }],
      });
    });

    it('a batch body with a field besides events is refused and names that field', async () => {
      const problem = await expectRefused(() => post({ events: [valid], source: 'someone-else' }), {
        status: 400,
        code: 'invalid_event',
      });
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'source' })]);
    });
  });

  describe('query parameters', () => {
    it('an unknown query parameter on POST /v1/events refuses an otherwise valid event', async () => {
      await expectRefused(() => post(valid, '?priority=high'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'priority' }],
      });
    });

    it('wait other than true or false is refused', async () => {
      await expectRefused(() => post(valid, '?wait=yes'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'wait' }],
      });
    });

    const get = (path: string) => () => h.request(path, { key: h.keys.admin });

    it('an unknown query parameter on the list is refused', async () => {
      await expectRefused(get('/v1/promotions?merchant=m-1'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'merchant' }],
      });
    });

    for (const bad of ['0', '-1', '1001', 'ten', '2.5', '']) {
      it(`a list limit of ${JSON.stringify(bad)} is refused`, async () => {
        await expectRefused(get(`/v1/promotions?limit=${bad}`), {
          status: 400,
          code: 'invalid_request',
          problems: [{ path: 'limit' }],
        });
      });
    }

    it('a repeated limit is refused', async () => {
      await expectRefused(get('/v1/promotions?limit=5&limit=10'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'limit' }],
      });
    });

    for (const bad of ['not-a-cursor', Buffer.from('[1,2]').toString('base64url'), 'x'.repeat(600)]) {
      it(`a list cursor the API did not return (${bad.slice(0, 16)}) is refused`, async () => {
        await expectRefused(get(`/v1/promotions?cursor=${bad}`), {
          status: 400,
          code: 'invalid_request',
          problems: [{ path: 'cursor' }],
        });
      });
    }

    it('an unknown status filter is refused and names status', async () => {
      const problem = await expectRefused(get('/v1/promotions?status=PAUSED'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'status' }],
      });
      expect(problem.detail).toContain('ACTIVATED');
    });

    it('an updatedSince that is not an ISO 8601 date-time is refused', async () => {
      await expectRefused(get('/v1/promotions?updatedSince=yesterday'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'updatedSince' }],
      });
    });

    it('an unknown query parameter on the event log is refused', async () => {
      await expectRefused(get('/v1/promotions/control-1/events?status=stale'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'status' }],
      });
    });

    for (const bad of ['abc', '-1', '1.5']) {
      it(`an event-log cursor that is not a log position (${bad}) is refused`, async () => {
        await expectRefused(get(`/v1/promotions/control-1/events?cursor=${bad}`), {
          status: 400,
          code: 'invalid_request',
          problems: [{ path: 'cursor' }],
        });
      });
    }

    it('an event-log cursor beyond the 64-bit range is refused as bad input, not an internal error', async () => {
      await expectRefused(get('/v1/promotions/control-1/events?cursor=9999999999999999999'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'cursor' }],
      });
    });

    it('an event-log limit above 1000 is refused', async () => {
      await expectRefused(get('/v1/promotions/control-1/events?limit=1001'), {
        status: 400,
        code: 'invalid_request',
        problems: [{ path: 'limit' }],
      });
    });
  });
});

describe('attribute limits set lower', () => {
  const h = useHarness({
    env: { EVENT_MAX_FIELDS: '3', EVENT_MAX_FIELD_NAME_LENGTH: '8', ENTITY_MAX_FIELDS: '4' },
  });

  const post = (data: Record<string, unknown>, entityId = 'low-1') =>
    h.request('/v1/events', { method: 'POST', json: { ...valid, entityId, eventId: entityId, data } });

  it('the API refuses data over the configured limits and accepts data within them', async () => {
    const before = await h.state();
    const tooMany = await post({ a: 1, b: 2, c: 3, d: 4 });
    expect(tooMany.status).toBe(400);
    expect(((await tooMany.json()) as Problem).errors).toEqual([
      expect.objectContaining({ path: 'data', message: expect.stringMatching(/4 fields.*at most 3/) }),
    ]);
    const tooLong = await post({ abcdefghi: 1 });
    expect(tooLong.status).toBe(400);
    expect(((await tooLong.json()) as Problem).errors).toEqual([
      expect.objectContaining({
        path: 'data.abcdefghi',
        message: expect.stringMatching(/at most 8 characters/),
      }),
    ]);
    expect(await h.state()).toEqual(before);
    expect((await post({ abcdefgh: 1, b: 2, c: 3 }, 'low-ok')).status).toBe(202);
  });

  it("an event that would pass the entity's field limit is rejected with the reason, and changes nothing", async () => {
    const send = async (eventId: string, data: Record<string, unknown>, type = 'create') => {
      const res = await h.request('/v1/events?wait=true', {
        method: 'POST',
        json: { ...valid, entityId: 'low-entity', eventId, type, data },
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { results: Array<{ outcome: string; reason?: string }> }).results[0]!;
    };
    expect((await send('le-1', { a: 1, b: 2, c: 3 })).outcome).toBe('applied');
    expect(await send('le-2', { d: 4, e: 5 }, 'activate')).toMatchObject({
      outcome: 'rejected',
      reason: 'entity field limit: the entity would have 5 fields, at most 4 are allowed',
    });
    const res = await h.request('/v1/promotions/low-entity', { key: h.keys.admin });
    expect(await res.json()).toMatchObject({ status: 'CREATED', attributes: { a: 1, b: 2, c: 3 } });
    expect((await send('le-3', { a: 9, d: 4 }, 'activate')).outcome).toBe('applied');
  });

  it('a job put on the queue directly over the limits fails at once, without retries, naming the field', async () => {
    const job = await h.queue.add(
      'events',
      { source: 'direct', ...valid, entityId: 'low-q', data: { a: 1, b: 2, c: 3, d: 4 } },
      { attempts: 5 },
    );
    await h.drain();
    const failed = (await h.queue.getJob(job.id!))!;
    expect(await failed.getState()).toBe('failed');
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toMatch(/"path":"data".*at most 3/);
    const res = await h.request('/v1/promotions/low-q', { key: h.keys.admin });
    expect(res.status).toBe(404);
  });
});
