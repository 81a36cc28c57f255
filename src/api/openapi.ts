import { readFileSync } from 'node:fs';
import { Router } from 'express';
import { z } from 'zod';
import {
  batchSchema,
  eventSchema,
  MAX_DATA_BYTES,
  MAX_EVENTS_PER_REQUEST,
  type ErrorCode,
  type MachineRegistry,
} from '../domain/index.ts';
import * as api from './schemas.ts';
import * as cap from './capacity-schemas.ts';
import { renderDocsPage } from './docs-page.ts';
import { STATUS } from './problem.ts';
import type { JsonSchema, MediaType, OpenApiDocument, Parameter, ResponseObject } from './openapi-types.ts';

export type * from './openapi-types.ts';

/** What each error code means to a client, for the documentation. */
export const ERROR_MEANING: Readonly<Record<ErrorCode, string>> = {
  invalid_event:
    'An event breaks the contract or its machine; errors[] names each field and what was expected. Nothing was queued.',
  invalid_request: 'A query parameter or a cursor is not valid.',
  invalid_json: 'The body is not valid JSON.',
  unsupported_media_type: 'The body is not sent as application/json.',
  payload_too_large: 'The body is larger than the server accepts.',
  too_many_events: `More than ${MAX_EVENTS_PER_REQUEST} events in one request: split the batch.`,
  unknown_machine: 'No machine of that name.',
  unauthorized: 'No API key, or an unknown or revoked one.',
  forbidden:
    "The key's role or scope does not allow this (e.g. a producer pushing another machine's events).",
  not_found: 'No such endpoint or entity, or one this key may not see.',
  rate_limited: 'The key made too many requests; retry after Retry-After seconds.',
  unavailable: 'The queue (Redis) cannot take the events; nothing was accepted, retry later.',
  redis_eviction_policy:
    "The queue's Redis may evict keys (its maxmemory-policy is not noeviction), so accepting events could lose them; nothing was accepted. The operator must set maxmemory-policy noeviction; retry later.",
  machine_invalid: 'A machine definition has errors.',
  cursor_expired:
    'A change cursor older than the changes kept: list the collection again without a cursor, then follow from its changesSince.',
  internal: 'An unexpected error; the server logged it.',
  capacity_exhausted:
    'A limit of the promotion has no room for the units asked for; limit names it (total, perCustomer or perWindow). Nothing was taken.',
  promotion_not_active:
    'The promotion is not ACTIVATED (or promosync has no status for it yet): it grants no new units.',
  order_conflict:
    'The orderId was used before with other units or another customer, or a confirmed reservation cannot be released.',
  hold_expired: 'The hold expired or was released before it was confirmed; its units went back.',
};

const REASON: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  410: 'Gone',
  413: 'Payload too large',
  409: 'Conflict',
  415: 'Unsupported media type',
  429: 'Too many requests',
  500: 'Internal error',
  503: 'Service unavailable',
};

/** The JSON Schema of a zod schema, as a request (`input`) or a response (`output`) sees it. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' });
  return rest;
}

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const problemRef = (status: number) => ({ $ref: `#/components/responses/Problem${status}` });
const json = (schema: JsonSchema, example?: unknown): Record<string, MediaType> => ({
  'application/json': { schema, ...(example === undefined ? {} : { example }) },
});

/** Query parameters from a strict zod object: one per property, as the route parses them. */
function queryParameters(schema: z.ZodObject, examples: Record<string, unknown> = {}): Parameter[] {
  const s = jsonSchema(schema, 'input') as { properties: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(s.properties).map(([name, prop]) => {
    const { description, ...propSchema } = prop as JsonSchema & { description?: string };
    return {
      name,
      in: 'query' as const,
      required: s.required?.includes(name) ?? false,
      ...(description === undefined ? {} : { description }),
      schema: propSchema,
      ...(name in examples ? { example: examples[name] } : {}),
    };
  });
}

const EVENT_FIELDS: Record<string, string> = {
  machine: 'The machine the entity follows, e.g. promotion.',
  entityId: 'The entity this event is about.',
  type: 'An event of that machine.',
  eventId: 'Idempotency key, unique per source: a second event with the same id is a duplicate.',
  version:
    "Producer's monotonic sequence, offset or epoch timestamp for the entity. Breaks ties between events of the same rank; required by machines ordered by version.",
  merchantId:
    'Owner of the entity: set by the first event that carries it; an event with another merchantId is rejected.',
  occurredAt: 'When it happened at the producer. Informational only: never used for ordering.',
  data: `Partial attributes, each field last-writer-wins by ordering key; null or absent means no change. At most ${MAX_DATA_BYTES} bytes serialized.`,
};

/**
 * The event contract as a schema: the fields from the same zod schema the API validates with,
 * plus the machine/type pairs (and required version) the machine registry accepts.
 */
function eventJsonSchema(registry: MachineRegistry): JsonSchema {
  const s = jsonSchema(eventSchema, 'input') as JsonSchema & { properties: Record<string, JsonSchema> };
  for (const [name, description] of Object.entries(EVENT_FIELDS)) {
    const prop = s.properties[name];
    if (prop) prop.description = description;
  }
  s.description = 'One status change of one entity: the same JSON over REST and on the queue.';
  s.anyOf = registry.list().map((info) => ({
    title: info.analysis.name,
    properties: {
      machine: { const: info.analysis.name },
      type: { enum: info.analysis.events.map((e) => e.type) },
    },
    ...(info.analysis.ordering === 'version' ? { required: ['version'] } : {}),
  }));
  return s;
}

/** `{ events: [...] }`: the batch schema the API validates with, its items being events. */
function batchJsonSchema(): JsonSchema {
  const s = jsonSchema(batchSchema, 'input') as JsonSchema & {
    properties: { events: JsonSchema };
  };
  s.properties.events.items = ref('Event');
  s.description = `Up to ${MAX_EVENTS_PER_REQUEST} events, accepted or rejected together.`;
  return s;
}

const EXAMPLE_EVENT = {
  machine: 'promotion',
  entityId: 'promo-123',
  type: 'activate',
  eventId: 'cps-food-000123',
  version: 17,
  merchantId: 'm-42',
  occurredAt: '2026-11-21T10:00:00Z',
  data: { title: '10% off' },
};

const EXAMPLE_ENTITY = {
  id: 'promo-123',
  machine: 'promotion',
  status: 'ACTIVATED',
  lastEvent: 'activate',
  version: 17,
  merchantId: 'm-42',
  attributes: { title: '10% off' },
  anomalies: 0,
  createdAt: '2026-11-21T10:00:01.120Z',
  updatedAt: '2026-11-21T10:00:01.120Z',
  changeSeq: 'ODk0MzkucHJvbW8tMTIz',
};

function problemResponses(): Record<string, ResponseObject> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of api.ERROR_CODES) {
    const status = STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, ResponseObject> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    out[`Problem${status}`] = {
      description: `${REASON[status] ?? 'Error'} (code ${codes.join(', ')})`,
      'x-problem': { status, codes: codes.map((code) => ({ code, meaning: ERROR_MEANING[code] })) },
      ...(status === 401
        ? {
            headers: {
              'WWW-Authenticate': { description: 'The authentication scheme', schema: { type: 'string' } },
            },
          }
        : {}),
      content: {
        'application/problem+json': {
          schema: ref('Problem'),
          example: {
            type: `urn:promosync:problem:${codes[0]}`,
            title: REASON[status] ?? 'Error',
            status,
            code: codes[0],
            detail: 'what went wrong, in words',
            instance: '/v1/events',
          },
        },
      },
    };
  }
  return out;
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

const READ_ROLES = ['merchant', 'producer', 'admin'];
const PUBLIC: Array<Record<string, string[]>> = [];

/**
 * The OpenAPI 3.1 document of the REST API: request schemas are generated from the zod schemas
 * the routes validate with; one set of entity paths per machine collection.
 */
export function buildOpenApi(registry: MachineRegistry): OpenApiDocument {
  const machines = registry.list();
  const paths: OpenApiDocument['paths'] = {};

  paths['/v1/events'] = {
    post: {
      operationId: 'postEvents',
      summary: 'Push one event or a batch of events',
      description:
        'Validates every event (all or nothing), then queues them durably. Without wait the answer is 202 once the queue has them; with wait=true the answer comes after they are applied, with one result per event. The source of the events is the producer key’s source.',
      tags: ['events'],
      'x-roles': ['producer', 'admin'],
      parameters: queryParameters(api.postQuery, { wait: 'true' }),
      requestBody: {
        required: true,
        description: 'One event, or { "events": [...] }',
        content: {
          'application/json': {
            schema: { oneOf: [ref('Event'), ref('EventBatch')] },
            examples: {
              one: { summary: 'One event', value: EXAMPLE_EVENT },
              batch: {
                summary: 'A batch',
                value: {
                  events: [
                    { machine: 'promotion', entityId: 'promo-124', type: 'create', merchantId: 'm-42' },
                    { machine: 'promotion', entityId: 'promo-124', type: 'activate', eventId: 'cps-000124' },
                  ],
                },
              },
            },
          },
        },
      },
      responses: {
        '200': {
          description: 'Applied (wait=true): one result per event, in request order',
          content: json(ref('AppliedResult'), {
            accepted: 1,
            jobId: '42',
            jobs: [{ queue: 'status-events', jobId: '42', accepted: 1 }],
            results: [
              {
                eventId: 'cps-food-000123',
                entityId: 'promo-123',
                outcome: 'applied',
                anomaly: false,
                state: 'ACTIVATED',
              },
            ],
          }),
        },
        '202': {
          description: 'Queued durably; applied soon',
          content: json(ref('Accepted'), {
            accepted: 1,
            jobId: '42',
            jobs: [{ queue: 'status-events', jobId: '42', accepted: 1 }],
          }),
        },
        '400': problemRef(400),
        '401': problemRef(401),
        '403': problemRef(403),
        '413': problemRef(413),
        '415': problemRef(415),
        '503': problemRef(503),
      },
    },
  };

  const machineName: Parameter = {
    name: 'name',
    in: 'path',
    required: true,
    schema: { type: 'string', enum: machines.map((m) => m.analysis.name) },
    example: machines[0]?.analysis.name ?? 'promotion',
  };
  paths['/v1/machines'] = {
    get: {
      operationId: 'listMachines',
      summary: 'List machines with their ranks and diagnostics',
      tags: ['machines'],
      'x-roles': READ_ROLES,
      responses: {
        '200': { description: 'Every machine', content: json(ref('MachineList')) },
        '401': problemRef(401),
      },
    },
  };
  paths['/v1/machines/{name}'] = {
    get: {
      operationId: 'getMachine',
      summary: 'One machine: definition summary, ranks and diagnostics',
      tags: ['machines'],
      'x-roles': READ_ROLES,
      parameters: [machineName],
      responses: {
        '200': { description: 'The machine', content: json(ref('Machine')) },
        '401': problemRef(401),
        '404': problemRef(404),
      },
    },
  };

  paths['/v1/machines/{name}/diagram'] = {
    get: {
      operationId: 'getMachineDiagram',
      summary: 'The machine as a diagram, with its event ranks',
      description:
        'An SVG of the states and transitions, each event labelled with its rank. Browsers (Accept: text/html) get a page around it with the ranks as a table and the analysis notes; format overrides the choice.',
      tags: ['machines'],
      'x-roles': READ_ROLES,
      parameters: [machineName, ...queryParameters(api.diagramQuery, { format: 'svg' })],
      responses: {
        '200': {
          description: 'The diagram',
          content: {
            'image/svg+xml': { schema: { type: 'string' } },
            'text/html': { schema: { type: 'string' } },
          },
        },
        '400': problemRef(400),
        '401': problemRef(401),
        '404': problemRef(404),
      },
    },
  };

  const idSchema = jsonSchema(api.idParam, 'input');
  for (const info of machines) {
    const { name, collection, states } = info.analysis;
    const tag = collection;
    const exampleId = name === 'promotion' ? 'promo-123' : `${name}-1`;
    const idParameter: Parameter = {
      name: 'id',
      in: 'path',
      required: true,
      description: `The ${name}'s entityId.`,
      schema: idSchema,
      example: exampleId,
    };
    const list = queryParameters(api.listQuery, { status: states[1] ?? states[0], limit: 50 });
    const status = list.find((p) => p.name === 'status');
    if (status) status.schema = { ...status.schema, enum: states };
    const notVisible = `A merchant sees only its own ${collection}; anything else is a 404.`;
    paths[`/v1/${collection}`] = {
      get: {
        operationId: `list_${collection}`,
        summary: `List ${collection}, oldest change first`,
        description:
          `Pages through the caller's ${collection} ordered by (updatedAt, id); every page carries changesSince, ` +
          `where to follow changes from. With changesSince: the ${collection} changed after that cursor, in change ` +
          `order, none skipped (a ChangePage; 410 when the cursor is older than purged entities). updatedSince is ` +
          `approximate for following changes. ${notVisible}`,
        tags: [tag],
        'x-roles': READ_ROLES,
        parameters: list,
        responses: {
          '200': {
            description: `A page of ${collection}`,
            content: json(
              { oneOf: [ref('EntityPage'), ref('ChangePage')] },
              {
                items: name === 'promotion' ? [EXAMPLE_ENTITY] : [],
                nextCursor: null,
                changesSince: 'ODk0NDAu',
              },
            ),
          },
          '400': problemRef(400),
          '401': problemRef(401),
          '410': problemRef(410),
        },
      },
    };
    paths[`/v1/${collection}/watch`] = {
      get: {
        operationId: `watch_${collection}`,
        summary: `Stream changes of ${collection} (Server-Sent Events)`,
        description:
          `Each change is an \`event: change\` whose id is the entity's changeSeq and whose data is the entity; ` +
          `\`bookmark\` events move an idle client's position, \`resync\` means reconnect (too_slow) or list again ` +
          `(cursor_expired). Resume after a disconnect with Last-Event-ID. EventSource clients may pass the key as ` +
          `access_token instead of the Authorization header. ${notVisible}`,
        tags: [tag],
        'x-roles': READ_ROLES,
        parameters: [
          ...queryParameters(api.watchQuery),
          {
            name: 'Last-Event-ID',
            in: 'header',
            required: false,
            description: 'The id of the last event received; takes precedence over since.',
            schema: { type: 'string' },
          },
        ],
        responses: {
          '200': {
            description: 'An event stream, open until the client or the server closes it',
            content: {
              'text/event-stream': {
                schema: { type: 'string' },
                example: `event: change\nid: ${EXAMPLE_ENTITY.changeSeq}\ndata: ${JSON.stringify(EXAMPLE_ENTITY)}\n\n`,
              },
            },
          },
          '400': problemRef(400),
          '401': problemRef(401),
          '410': problemRef(410),
        },
      },
    };
    paths[`/v1/${collection}/{id}`] = {
      get: {
        operationId: `get_${name}`,
        summary: `Get one ${name}`,
        description: notVisible,
        tags: [tag],
        'x-roles': READ_ROLES,
        parameters: [idParameter],
        responses: {
          '200': {
            description: `The ${name}`,
            content: json(ref('Entity'), name === 'promotion' ? EXAMPLE_ENTITY : undefined),
          },
          '401': problemRef(401),
          '404': problemRef(404),
        },
      },
    };
    paths[`/v1/${collection}/{id}/events`] = {
      get: {
        operationId: `get_${name}_events`,
        summary: `The event log of one ${name}, with each event's outcome`,
        description: `Oldest first. ${notVisible}`,
        tags: [tag],
        'x-roles': READ_ROLES,
        parameters: [idParameter, ...queryParameters(api.eventsQuery, { limit: 100 })],
        responses: {
          '200': { description: 'A page of the event log', content: json(ref('EventLogPage')) },
          '400': problemRef(400),
          '401': problemRef(401),
          '404': problemRef(404),
        },
      },
    };
  }

  if (machines.some((m) => m.analysis.name === 'promotion')) Object.assign(paths, capacityPaths(idSchema));

  // Every /v1 endpoint answers 429 when the API runs with a rate limit.
  for (const [path, item] of Object.entries(paths)) {
    if (!path.startsWith('/v1/')) continue;
    for (const op of Object.values(item)) op.responses['429'] = problemRef(429);
  }

  paths['/healthz'] = {
    get: {
      operationId: 'healthz',
      summary: 'Liveness: the process runs',
      tags: ['operations'],
      security: PUBLIC,
      responses: { '200': { description: 'Alive', content: json(ref('Health'), { status: 'ok' }) } },
    },
  };
  paths['/readyz'] = {
    get: {
      operationId: 'readyz',
      summary: 'Readiness: Postgres and Redis answer',
      tags: ['operations'],
      security: PUBLIC,
      responses: {
        '200': { description: 'Ready', content: json(ref('Ready')) },
        '503': { description: 'A dependency does not answer', content: json(ref('Ready')) },
      },
    },
  };
  paths['/metrics'] = {
    get: {
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      description:
        'Event counters by machine, source and outcome, apply batch sizes and durations, queue depth by state, HTTP requests, process metrics.',
      tags: ['operations'],
      security: PUBLIC,
      responses: {
        '200': {
          description: 'Prometheus text exposition format',
          content: { 'text/plain': { schema: { type: 'string' } } },
        },
      },
    },
  };
  paths['/admin/queues'] = {
    get: {
      operationId: 'queueDashboard',
      summary: 'Queue dashboard (bull-board)',
      description:
        'Jobs by state, failed jobs with their errors, retry. Browsers log in with HTTP Basic auth: any username, an admin key as the password.',
      tags: ['operations'],
      security: [{ basicAuth: [] }, { bearerAuth: [] }],
      'x-roles': ['admin'],
      responses: {
        '200': {
          description: 'The dashboard page',
          content: { 'text/html': { schema: { type: 'string' } } },
        },
        '401': problemRef(401),
        '403': problemRef(403),
      },
    },
  };
  paths['/openapi.json'] = {
    get: {
      operationId: 'openapi',
      summary: 'This OpenAPI 3.1 document',
      tags: ['documentation'],
      security: PUBLIC,
      responses: {
        '200': { description: 'The document', content: json({ type: 'object' }) },
      },
    },
  };
  paths['/docs'] = {
    get: {
      operationId: 'docs',
      summary: 'The API documentation page',
      tags: ['documentation'],
      security: PUBLIC,
      responses: {
        '200': { description: 'An HTML page', content: { 'text/html': { schema: { type: 'string' } } } },
      },
    },
  };

  return {
    openapi: '3.1.1',
    info: {
      title: 'promosync API',
      version: readVersion(),
      description:
        'Keeps a copy of entity status (promotions, …) in step with the producers that own it, whatever the order in which their events arrive. Producers push events; merchants read their entities. Errors are application/problem+json with a stable code.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'events', description: 'Producers push status changes.' },
      ...machines.map((m) => ({
        name: m.analysis.collection,
        description: `Entities of machine ${m.analysis.name} (states ${m.analysis.states.join(', ')}).`,
      })),
      {
        name: 'capacity',
        description:
          'Redemption limits of promotions and the reservations that take units from them: held, then confirmed, released or expired.',
      },
      { name: 'machines', description: 'The machines, their event ranks and diagnostics.' },
      { name: 'operations', description: 'Health, readiness, metrics and the queue dashboard.' },
      { name: 'documentation', description: 'This document and its page.' },
    ],
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas: {
        Event: eventJsonSchema(registry),
        EventBatch: batchJsonSchema(),
        Accepted: jsonSchema(api.acceptedResponse),
        AppliedResult: jsonSchema(api.appliedResponse),
        Entity: entityJsonSchema(),
        EntityPage: jsonSchema(api.entityPageResponse),
        ChangePage: jsonSchema(api.changePageResponse),
        EventLogPage: jsonSchema(api.eventLogResponse),
        Machine: jsonSchema(api.machineResponse),
        MachineList: jsonSchema(api.machineListResponse),
        Health: jsonSchema(api.healthResponse),
        Ready: jsonSchema(api.readyResponse),
        Problem: jsonSchema(api.problemResponse),
        Limits: jsonSchema(cap.limitsBody, 'input'),
        ReservationRequest: jsonSchema(cap.reserveBody, 'input'),
        ReservationAnswer: jsonSchema(cap.reserveResponse),
        Reservation: jsonSchema(cap.reservationResponse),
        Capacity: jsonSchema(cap.capacityResponse),
      },
      responses: problemResponses(),
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An API key from promosync keys create. Roles: producer (push, scoped to its source and machines), merchant (read its own entities), checkout (reserve promotion capacity), admin (everything).',
        },
        basicAuth: {
          type: 'http',
          scheme: 'basic',
          description: 'For browsers (the queue dashboard): any username, an admin key as the password.',
        },
      },
    },
  };
}

/** An entity; a promotion with limits also carries its capacity summary. */
function entityJsonSchema(): JsonSchema {
  const s = jsonSchema(api.entityResponse) as JsonSchema & { properties: Record<string, JsonSchema> };
  s.properties.capacity = {
    ...ref('Capacity'),
    description: 'Promotions with limits or reservations only: the capacity summary.',
  };
  return s;
}

const EXAMPLE_CAPACITY = {
  promotionId: 'promo-123',
  total: { max: 1000, confirmed: 640, held: 12, remaining: 348 },
  perCustomer: { max: 1 },
  perWindow: { seconds: 3600, max: 200, confirmed: 150, held: 12, remaining: 38 },
};

/** The capacity endpoints of promotions (docs/capacity.md). */
function capacityPaths(idSchema: JsonSchema): OpenApiDocument['paths'] {
  const id: Parameter = {
    name: 'id',
    in: 'path',
    required: true,
    description: "The promotion's entityId.",
    schema: idSchema,
    example: 'promo-123',
  };
  const orderId: Parameter = {
    name: 'orderId',
    in: 'path',
    required: true,
    description: 'The orderId the reservation was made with.',
    schema: jsonSchema(cap.orderIdParam, 'input'),
    example: 'o-1',
  };
  const reservation = (example: Record<string, unknown>) =>
    json(ref('Reservation'), {
      promotionId: 'promo-123',
      orderId: 'o-1',
      customerId: 'c-9',
      units: 1,
      createdAt: '2026-11-21T10:00:00.000Z',
      expiresAt: '2026-11-21T10:05:00.000Z',
      ...example,
    });
  const CHECKOUT = ['checkout', 'admin'];
  return {
    '/v1/promotions/{id}/limits': {
      put: {
        operationId: 'putPromotionLimits',
        summary: "Set a promotion's limits",
        description:
          'Every field is optional: an absent one keeps its limit, null removes it. The promotion need not exist yet: limits may arrive before its first status event. Lowering a limit below its use takes nothing back; nothing new is granted until use is under it. Answers the capacity summary.',
        tags: ['capacity'],
        'x-roles': ['producer', 'admin'],
        parameters: [id],
        requestBody: {
          required: true,
          content: json(ref('Limits'), {
            total: 1000,
            perCustomer: 1,
            perWindow: { seconds: 3600, max: 200 },
          }),
        },
        responses: {
          '200': {
            description: 'The limits now, with their use',
            content: json(ref('Capacity'), EXAMPLE_CAPACITY),
          },
          '400': problemRef(400),
          '401': problemRef(401),
          '403': problemRef(403),
          '404': problemRef(404),
          '415': problemRef(415),
        },
      },
    },
    '/v1/promotions/{id}/capacity': {
      get: {
        operationId: 'getPromotionCapacity',
        summary: "A promotion's limits and their use",
        description:
          'Per limit: max, confirmed units, units in live holds and what remains, exact at the moment of the read (a hold past its expiry counts as released). Readable by the promotion’s merchant, checkout keys, producers of the machine and admins.',
        tags: ['capacity'],
        'x-roles': ['merchant', 'producer', 'checkout', 'admin'],
        parameters: [id, ...queryParameters(cap.capacityQuery, { customerId: 'c-9' })],
        responses: {
          '200': { description: 'The capacity summary', content: json(ref('Capacity'), EXAMPLE_CAPACITY) },
          '400': problemRef(400),
          '401': problemRef(401),
          '404': problemRef(404),
        },
      },
    },
    '/v1/promotions/{id}/reservations': {
      post: {
        operationId: 'reservePromotionUnits',
        summary: 'Reserve units of an ACTIVATED promotion (a hold)',
        description:
          'Every limit of the promotion is checked and taken together, or none. The answer comes once the hold is committed to the database. The same request again (same orderId, units and customer) gets the first answer with 200 and takes nothing twice; the same orderId with other units or another customer is order_conflict. A hold not confirmed within holdSeconds expires and its units return.',
        tags: ['capacity'],
        'x-roles': CHECKOUT,
        parameters: [id],
        requestBody: {
          required: true,
          content: json(ref('ReservationRequest'), {
            orderId: 'o-1',
            customerId: 'c-9',
            units: 1,
            holdSeconds: 300,
          }),
        },
        responses: {
          '200': { description: 'A retry: the first answer again', content: json(ref('ReservationAnswer')) },
          '201': {
            description: 'Held',
            content: json(ref('ReservationAnswer'), {
              orderId: 'o-1',
              status: 'held',
              units: 1,
              customerId: 'c-9',
              expiresAt: '2026-11-21T10:05:00.000Z',
              remaining: { total: 999, perCustomer: 0, perWindow: 199 },
            }),
          },
          '400': problemRef(400),
          '401': problemRef(401),
          '403': problemRef(403),
          '404': problemRef(404),
          '409': problemRef(409),
          '415': problemRef(415),
          '503': problemRef(503),
        },
      },
    },
    '/v1/promotions/{id}/reservations/{orderId}': {
      get: {
        operationId: 'getReservation',
        summary: 'One reservation as it is now',
        tags: ['capacity'],
        'x-roles': CHECKOUT,
        parameters: [id, orderId],
        responses: {
          '200': {
            description: 'The reservation',
            content: reservation({ status: 'held', resolvedAt: null }),
          },
          '401': problemRef(401),
          '403': problemRef(403),
          '404': problemRef(404),
        },
      },
    },
    '/v1/promotions/{id}/reservations/{orderId}/confirm': {
      post: {
        operationId: 'confirmReservation',
        summary: 'Confirm a hold: its units are taken for good',
        description: 'Idempotent. A hold that expired or was released cannot be confirmed (hold_expired).',
        tags: ['capacity'],
        'x-roles': CHECKOUT,
        parameters: [id, orderId],
        responses: {
          '200': {
            description: 'Confirmed',
            content: reservation({ status: 'confirmed', resolvedAt: '2026-11-21T10:01:00.000Z' }),
          },
          '401': problemRef(401),
          '403': problemRef(403),
          '404': problemRef(404),
          '409': problemRef(409),
        },
      },
    },
    '/v1/promotions/{id}/reservations/{orderId}/release': {
      post: {
        operationId: 'releaseReservation',
        summary: 'Release a hold: its units return at once',
        description:
          'Idempotent. A hold already past its expiry answers with status expired (its units returned then). A confirmed reservation cannot be released (order_conflict).',
        tags: ['capacity'],
        'x-roles': CHECKOUT,
        parameters: [id, orderId],
        responses: {
          '200': {
            description: 'Released (or expired before)',
            content: reservation({ status: 'released', resolvedAt: '2026-11-21T10:01:00.000Z' }),
          },
          '401': problemRef(401),
          '403': problemRef(403),
          '404': problemRef(404),
          '409': problemRef(409),
        },
      },
    },
  };
}

/** `GET /openapi.json` and `GET /docs`, both public. */
export function apiDocsRouter(deps: { registry: MachineRegistry }): Router {
  const doc = buildOpenApi(deps.registry);
  const router = Router();
  router.get('/openapi.json', (_req, res) => {
    res.json(doc);
  });
  router.get('/docs', (req, res) => {
    // The host goes into copy-and-paste shell commands: only plain host[:port] values.
    const host = req.get('host');
    const base = `${req.protocol}://${host && /^[A-Za-z0-9.:[\]-]{1,255}$/.test(host) ? host : 'localhost:3000'}`;
    res
      .setHeader(
        'Content-Security-Policy',
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
      )
      .type('html')
      .send(renderDocsPage(doc, base));
  });
  return router;
}
