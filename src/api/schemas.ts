import { z } from 'zod';
import { ID_PATTERN, type ErrorCode } from '../domain/index.ts';

// The schemas of the REST API. The routes validate requests with the request schemas below,
// and the OpenAPI document is generated from these same objects (and the event contract), so
// the two cannot drift apart. The response schemas describe what the routes send.

/** An entity id in a path: the same characters the event contract allows. */
export const idParam = z.string().regex(ID_PATTERN);

/** Query of `POST /v1/events`. */
export const postQuery = z.strictObject({
  wait: z
    .enum(['true', 'false'])
    .optional()
    .meta({ description: 'Wait until the events are applied and return one result per event.' }),
  timeoutMs: z.coerce.number().int().min(1).max(120_000).optional().meta({
    description: 'With wait=true: how long to wait (default 30000). On timeout the answer is 202.',
  }),
});

const limit = z.coerce.number().int().min(1).max(1000).default(100).meta({ description: 'Page size.' });

/** Query of `GET /v1/{collection}`. */
export const listQuery = z.strictObject({
  status: z.string().max(128).optional().meta({ description: 'Only entities in this status.' }),
  updatedSince: z.iso
    .datetime({ offset: true, error: 'updatedSince must be an ISO 8601 date-time' })
    // In UTC: an offset can carry 0001-01-01 into 1 BC, which the database refuses.
    .refine((v) => {
      const year = new Date(v).getUTCFullYear();
      return year >= 1 && year <= 9999;
    }, 'updatedSince must be in the years 0001-9999 once its offset is applied (UTC)')
    .optional()
    .meta({ description: 'Only entities changed at or after this time (ISO 8601 with offset).' }),
  limit,
  cursor: z
    .string()
    .max(512)
    .optional()
    .meta({ description: 'The nextCursor of the previous page, unchanged.' }),
  changesSince: z
    .string()
    .max(256)
    .optional()
    .meta({
      description:
        'Follow changes: entities changed after this cursor (a changesSince, nextChangesSince or changeSeq ' +
        'this API returned), in change order. Not combined with status, updatedSince or cursor.',
    }),
});

/** Query of `GET /v1/{collection}/watch`. */
export const watchQuery = z.strictObject({
  since: z
    .string()
    .max(256)
    .optional()
    .meta({
      description:
        'Stream changes after this cursor (changesSince of a list, or a changeSeq). A Last-Event-ID header ' +
        'takes precedence; without either the stream starts at the current position.',
    }),
  access_token: z
    .string()
    .max(256)
    .optional()
    .meta({
      description:
        'The API key, for EventSource clients that cannot send an Authorization header. Accepted only ' +
        'here; the header takes precedence.',
    }),
});

/** Query of `GET /v1/{collection}/{id}/events`. */
export const eventsQuery = z.strictObject({
  limit,
  cursor: z
    .string()
    .regex(/^\d{1,19}$/, 'cursor is the nextCursor of the previous page')
    .refine(
      (c) => !/^\d+$/.test(c) || BigInt(c) <= 9223372036854775807n,
      'cursor is the nextCursor of the previous page',
    )
    .optional()
    .meta({ description: 'The nextCursor of the previous page, unchanged.' }),
});

/** Query of `GET /v1/machines/{name}/diagram`. */
export const diagramQuery = z.strictObject({
  format: z
    .enum(['svg', 'html'], { error: 'format must be svg or html' })
    .optional()
    .meta({ description: 'svg (the default for tools), or html: a page with the diagram and the ranks.' }),
});

const outcome = z.enum(['applied', 'stale', 'duplicate', 'conflict', 'rejected']);
const attributeValue = z.union([z.string(), z.number(), z.boolean()]);
const timestamp = z.iso.datetime();

/** The jobs a request became: one per queue partition its events fall in. */
const queuedJobs = z
  .array(
    z.object({
      queue: z.string().meta({ description: 'The queue (partition) the job is in.' }),
      jobId: z.string().meta({ description: 'Its BullMQ job id in that queue.' }),
      accepted: z.int().meta({ description: 'Events the job carries.' }),
    }),
  )
  .meta({
    description: 'One job per queue partition the events fall in; one job when the queue is not partitioned.',
  });

/** `202` of `POST /v1/events`. */
export const acceptedResponse = z.object({
  accepted: z.int().meta({ description: 'Events durably queued.' }),
  jobId: z.string().meta({ description: 'The BullMQ job carrying them (the first of `jobs`).' }),
  jobs: queuedJobs,
  pending: z
    .literal(true)
    .optional()
    .meta({ description: 'Set when wait=true timed out: the events are queued and will be applied.' }),
});

/** `200` of `POST /v1/events?wait=true`. */
export const appliedResponse = z.object({
  accepted: z.int(),
  jobId: z.string(),
  jobs: queuedJobs,
  results: z.array(
    z.object({
      eventId: z.string().nullable(),
      entityId: z.string(),
      outcome,
      anomaly: z.boolean().meta({ description: 'Applied, but the machine has no such move.' }),
      state: z.string().nullable().meta({ description: "The entity's status after the batch." }),
      reason: z
        .string()
        .optional()
        .meta({ description: 'Why the event was rejected or a conflict, e.g. "owned by source cashback".' }),
    }),
  ),
});

/** An entity (`GET /v1/{collection}/{id}`). */
export const entityResponse = z.object({
  id: z.string(),
  machine: z.string(),
  status: z.string(),
  lastEvent: z.string().meta({ description: 'Type of the event that set the status.' }),
  version: z.int().nullable(),
  merchantId: z.string().nullable(),
  attributes: z.record(z.string(), attributeValue),
  anomalies: z
    .int()
    .meta({ description: 'Applied events the machine does not allow from the prior status.' }),
  createdAt: timestamp,
  updatedAt: timestamp,
  changeSeq: z.string().meta({
    description: "Opaque position of the entity's last change: a later change has a greater one.",
  }),
});

/** A page of entities. */
export const entityPageResponse = z.object({
  items: z.array(entityResponse),
  nextCursor: z
    .string()
    .nullable()
    .meta({ description: 'Pass as cursor for the next page; null at the end.' }),
  changesSince: z.string().meta({
    description:
      'Where to follow this listing from (the same on every page of it): pass as changesSince or to the watch.',
  }),
});

/** A page of changes (`GET /v1/{collection}?changesSince=`). */
export const changePageResponse = z.object({
  items: z.array(entityResponse).meta({ description: 'Changed entities, in change order.' }),
  nextChangesSince: z.string().meta({ description: 'Pass as changesSince for the next page.' }),
  more: z.boolean().meta({ description: 'The page was full: more changes may follow at once.' }),
});

/** A page of an entity's event log. */
export const eventLogResponse = z.object({
  items: z.array(
    z.object({
      id: z.string(),
      type: z.string(),
      eventId: z.string().nullable(),
      version: z.int().nullable(),
      source: z.string(),
      merchantId: z.string().nullable(),
      data: z.record(z.string(), z.union([attributeValue, z.null()])).nullable(),
      occurredAt: timestamp.nullable(),
      receivedAt: timestamp,
      outcome,
      anomaly: z.boolean(),
    }),
  ),
  nextCursor: z.string().nullable(),
});

/** A machine: definition summary, ranks and diagnostics. */
export const machineResponse = z.object({
  name: z.string(),
  collection: z.string(),
  ordering: z.enum(['rank', 'version']),
  initial: z.string(),
  creationEvent: z.string().nullable(),
  states: z.array(z.string()),
  finalStates: z.array(z.string()),
  events: z
    .array(
      z.object({
        type: z.string(),
        rank: z.int().meta({ description: '1-based; a higher rank wins over a lower one.' }),
        target: z.string().meta({ description: 'The state this event leads to.' }),
        from: z.array(z.string()).meta({ description: 'The states that accept this event.' }),
      }),
    )
    .meta({ description: 'Sorted by rank.' }),
  diagnostics: z.array(
    z.looseObject({ level: z.enum(['error', 'warning', 'info']), code: z.string(), message: z.string() }),
  ),
  ok: z.boolean(),
});

export const machineListResponse = z.object({ items: z.array(machineResponse) });

export const healthResponse = z.object({ status: z.literal('ok') });

export const readyResponse = z.object({
  status: z.enum(['ready', 'unavailable']),
  checks: z.record(z.string(), z.object({ ok: z.boolean(), error: z.string().optional() })),
});

/** Every error code, in the order the API documentation lists them. */
export const ERROR_CODES = [
  'invalid_event',
  'invalid_request',
  'invalid_json',
  'payload_too_large',
  'too_many_events',
  'unsupported_media_type',
  'unknown_machine',
  'unauthorized',
  'forbidden',
  'not_found',
  'rate_limited',
  'unavailable',
  'redis_eviction_policy',
  'machine_invalid',
  'cursor_expired',
  'internal',
  'capacity_exhausted',
  'promotion_not_active',
  'order_conflict',
  'hold_expired',
] as const satisfies readonly ErrorCode[];

// Fails to compile when an ErrorCode is missing above.
const _allCodes: Record<Exclude<ErrorCode, (typeof ERROR_CODES)[number]>, never> = {};
void _allCodes;

/** An RFC 9457 problem document, as every error answer carries. */
export const problemResponse = z.object({
  type: z.string().meta({ description: 'urn:promosync:problem:<code>' }),
  title: z.string(),
  status: z.int(),
  code: z.enum(ERROR_CODES).meta({ description: 'Stable error code; see the errors table.' }),
  detail: z.string(),
  instance: z.string().meta({ description: 'The request path.' }),
  errors: z
    .array(
      z.object({
        index: z.int().optional().meta({ description: 'Position in the events array.' }),
        path: z.string().meta({ description: 'Dotted path of the field, e.g. data.title.' }),
        message: z.string(),
      }),
    )
    .optional()
    .meta({ description: 'One entry per problem, for input errors.' }),
});
