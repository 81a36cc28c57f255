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
import { renderDocsPage } from './docs-page.ts';
import { STATUS } from './problem.ts';

/** A JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1). */
export type JsonSchema = { [key: string]: unknown };

export interface Parameter {
  name: string;
  in: 'query' | 'path';
  required: boolean;
  description?: string;
  schema: JsonSchema;
  example?: unknown;
}

export interface MediaType {
  schema: JsonSchema;
  example?: unknown;
  examples?: Record<string, { summary: string; value: unknown }>;
}

export interface ResponseObject {
  description: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
  content?: Record<string, MediaType>;
  /** On problem responses: the status and the error codes that answer with it. */
  'x-problem'?: { status: number; codes: Array<{ code: ErrorCode; meaning: string }> };
}

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  /** Empty: no authentication. Absent: the document's default (a Bearer key). */
  security?: Array<Record<string, string[]>>;
  /** Roles whose keys may call the operation. */
  'x-roles'?: string[];
  parameters?: Parameter[];
  requestBody?: { required: boolean; description?: string; content: Record<string, MediaType> };
  responses: Record<string, ResponseObject | { $ref: string }>;
}

export type Method = 'get' | 'post';

export interface OpenApiDocument {
  openapi: string;
  info: {
    title: string;
    version: string;
    description: string;
    license: { name: string; identifier: string };
  };
  tags: Array<{ name: string; description: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    responses: Record<string, ResponseObject>;
    securitySchemes: Record<string, { type: 'http'; scheme: string; description: string }>;
  };
}

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
  machine_invalid: 'A machine definition has errors.',
  internal: 'An unexpected error; the server logged it.',
};

const REASON: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  413: 'Payload too large',
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
        description: `Pages through the caller's ${collection} ordered by (updatedAt, id). Follow changes with updatedSince and nextCursor. ${notVisible}`,
        tags: [tag],
        'x-roles': READ_ROLES,
        parameters: list,
        responses: {
          '200': {
            description: `A page of ${collection}`,
            content: json(ref('EntityPage'), {
              items: name === 'promotion' ? [EXAMPLE_ENTITY] : [],
              nextCursor: null,
            }),
          },
          '400': problemRef(400),
          '401': problemRef(401),
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
        Entity: jsonSchema(api.entityResponse),
        EntityPage: jsonSchema(api.entityPageResponse),
        EventLogPage: jsonSchema(api.eventLogResponse),
        Machine: jsonSchema(api.machineResponse),
        MachineList: jsonSchema(api.machineListResponse),
        Health: jsonSchema(api.healthResponse),
        Ready: jsonSchema(api.readyResponse),
        Problem: jsonSchema(api.problemResponse),
      },
      responses: problemResponses(),
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An API key from promosync keys create. Roles: producer (push, scoped to its source and machines), merchant (read its own entities), admin (everything).',
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
