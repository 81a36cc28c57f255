import { z } from 'zod';
import { DEFAULTS } from '../config.ts';
import { PromosyncError, type FieldProblem } from './errors.ts';
import { fieldUsage, type EntityLimits } from './field-limits.ts';

/** The most events one request or job may carry. */
export const MAX_EVENTS_PER_REQUEST = 1000;
/** The largest `data` object, serialized, in bytes. */
export const MAX_DATA_BYTES = 16 * 1024;

/** Entity and merchant ids: 1-128 characters of [A-Za-z0-9._:-]. */
export const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** Field names: letters, digits and _, not starting with a digit; their length is an {@link EventLimits} setting. */
const fieldName = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Event ids: printable ASCII, no spaces. */
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/** Strings Postgres can store in text and jsonb: well-formed Unicode, no NUL. */
const storable = (v: string): boolean => v.isWellFormed() && !v.includes('\u0000');

const scalar = z.union([
  z.string().refine(storable, 'strings must be well-formed Unicode without NUL characters'),
  z.number(),
  z.boolean(),
  z.null(),
]);

/** `data`: a flat object of scalars, at most 16 KiB serialized. */
export const dataSchema = z
  .record(
    z
      .string()
      .regex(fieldName, 'field names are characters of [A-Za-z0-9_], not starting with a digit')
      .refine((k) => k !== '__proto__', 'field name __proto__ is not allowed'),
    scalar,
    { error: 'data must be a flat object whose values are strings, numbers, booleans or null' },
  )
  .refine((d) => Buffer.byteLength(JSON.stringify(d)) <= MAX_DATA_BYTES, {
    message: `data must be at most ${MAX_DATA_BYTES} bytes serialized`,
  });

/** One event as producers send it (docs/design.md#event-contract), before the machine-specific checks. */
export const eventSchema = z.strictObject({
  machine: z.string().min(1).max(64),
  entityId: z.string().regex(ID_PATTERN, 'entityId must be 1-128 characters of [A-Za-z0-9._:-]'),
  type: z.string().min(1).max(64),
  eventId: z
    .string()
    .min(1)
    .max(128)
    .regex(PRINTABLE_ASCII, 'eventId must be printable ASCII without spaces')
    .optional(),
  version: z
    .number({ error: 'version must be a number' })
    .int('version must be an integer')
    .min(0, 'version must be non-negative')
    .max(Number.MAX_SAFE_INTEGER, 'version must be a safe integer (at most 2^53 - 1)')
    .optional(),
  merchantId: z
    .string()
    .regex(ID_PATTERN, 'merchantId must be 1-128 characters of [A-Za-z0-9._:-]')
    .optional(),
  occurredAt: z.iso
    .datetime({ offset: true, error: 'occurredAt must be an ISO 8601 date-time' })
    // In UTC: an offset can carry 9999-12-31 into year 10000, which reads back as no valid date.
    .refine((v) => {
      const year = new Date(v).getUTCFullYear();
      return year >= 1970 && year <= 9999;
    }, 'occurredAt must be in the years 1970-9999 once its offset is applied (UTC)')
    .optional(),
  data: dataSchema.optional(),
});

export type EventInput = z.infer<typeof eventSchema>;

const EVENT_KEYS = new Set(Object.keys(eventSchema.shape));
const occurredAtSchema = eventSchema.shape.occurredAt;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;

/** The longest a string can serialize to in JSON, in UTF-8 bytes (`\uXXXX` escapes included). */
const jsonBound = (v: string): number => 6 * v.length + 2;

function plainData(data: unknown): boolean {
  if (!isPlainObject(data)) return false;
  let bound = 2;
  for (const k in data) {
    if (!Object.hasOwn(data, k) || k === '__proto__' || !fieldName.test(k)) return false;
    const v = data[k];
    if (typeof v === 'string') {
      if (!storable(v)) return false;
      bound += jsonBound(v);
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return false;
      bound += 24;
    } else if (typeof v !== 'boolean' && v !== null) return false;
    else bound += 5;
    bound += jsonBound(k) + 2;
  }
  return bound <= MAX_DATA_BYTES || Buffer.byteLength(JSON.stringify(data)) <= MAX_DATA_BYTES;
}

/**
 * The common case of {@link eventSchema}, checked by hand: a plain object (as JSON.parse
 * makes it) whose fields are all well within the contract is returned as it is. Anything
 * else returns undefined and goes through the schema, which has the final word and the
 * error messages. Never accepts what the schema rejects (a property test holds it to that);
 * it exists because the schema costs several microseconds per event, twice (API and worker).
 */
export function plainEvent(item: unknown): EventInput | undefined {
  if (!isPlainObject(item)) return undefined;
  for (const k in item) if (!EVENT_KEYS.has(k) || !Object.hasOwn(item, k)) return undefined;
  const { machine, entityId, type, eventId, version, merchantId, occurredAt, data } = item;
  if (typeof machine !== 'string' || machine.length < 1 || machine.length > 64) return undefined;
  if (typeof entityId !== 'string' || !ID_PATTERN.test(entityId)) return undefined;
  if (typeof type !== 'string' || type.length < 1 || type.length > 64) return undefined;
  if (
    eventId !== undefined &&
    (typeof eventId !== 'string' || eventId.length > 128 || !PRINTABLE_ASCII.test(eventId))
  )
    return undefined;
  if (version !== undefined && !(Number.isSafeInteger(version) && (version as number) >= 0)) return undefined;
  if (merchantId !== undefined && (typeof merchantId !== 'string' || !ID_PATTERN.test(merchantId)))
    return undefined;
  if (occurredAt !== undefined && !occurredAtSchema.safeParse(occurredAt).success) return undefined;
  if (data !== undefined && !plainData(data)) return undefined;
  return item as EventInput;
}

/** A request or job body: one event, or `{ events: [...] }`. */
export const batchSchema = z.strictObject({
  events: z
    .array(z.unknown())
    .min(1, 'events must not be empty')
    .max(MAX_EVENTS_PER_REQUEST, `at most ${MAX_EVENTS_PER_REQUEST} events per request`),
});

/** Producer (source) names, of API keys and of job envelopes alike: 1-64 characters of [A-Za-z0-9._:-]. */
export const SOURCE_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
export const sourceSchema = z
  .string({ error: 'source must be a string' })
  .regex(SOURCE_PATTERN, 'source must be 1-64 characters of [A-Za-z0-9._:-]');

/** Zod issues as field problems, optionally tagged with the event's index. */
export function problemsOf(error: z.ZodError, index?: number): FieldProblem[] {
  return error.issues.flatMap((issue) => {
    const at = index === undefined ? {} : { index };
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => ({
        ...at,
        path: base ? `${base}.${k}` : k,
        message: `unknown field "${k}"`,
      }));
    }
    return [{ ...at, path: base || '(body)', message: issue.message }];
  });
}

/**
 * Problems zod cannot see: it skips an own `__proto__` key (which JSON.parse creates) in
 * records and objects, so such keys are rejected here, on the raw input.
 */
export function rawProblems(item: unknown, index?: number): FieldProblem[] {
  const at = index === undefined ? {} : { index };
  const own = (o: unknown): boolean => typeof o === 'object' && o !== null && Object.hasOwn(o, '__proto__');
  const out: FieldProblem[] = [];
  if (own(item)) out.push({ ...at, path: '__proto__', message: 'unknown field "__proto__"' });
  if (typeof item === 'object' && item !== null && own((item as { data?: unknown }).data)) {
    out.push({ ...at, path: 'data.__proto__', message: 'field name __proto__ is not allowed' });
  }
  return out;
}

/**
 * Limits of one event's attributes, set per deployment (docs/design.md#attribute-limits). The
 * contract's own bounds (a flat object, at most {@link MAX_DATA_BYTES}) hold whatever they are.
 */
export interface EventLimits {
  /** Fields `data` may have. */
  maxFields: number;
  /** The longest field name, in characters. */
  maxFieldNameLength: number;
  /** The limits of one entity's attributes, which the apply statement holds rows to. */
  entity: Readonly<EntityLimits>;
}

/** The limits when none are configured. */
export const DEFAULT_EVENT_LIMITS: Readonly<EventLimits> = Object.freeze({
  maxFields: DEFAULTS.eventMaxFields,
  maxFieldNameLength: DEFAULTS.eventMaxFieldNameLength,
  entity: Object.freeze({ maxFields: DEFAULTS.entityMaxFields, maxFieldBytes: DEFAULTS.entityMaxFieldBytes }),
});

const clipName = (name: string): string => (name.length <= 128 ? name : `${name.slice(0, 128)}…`);

/** Problems of a contract-valid event's `data` with the deployment's {@link EventLimits}. */
export function limitProblems(
  data: EventInput['data'],
  limits: Readonly<EventLimits>,
  index?: number,
): FieldProblem[] {
  if (!data) return [];
  const at = index === undefined ? {} : { index };
  const out: FieldProblem[] = [];
  let fields = 0;
  for (const name in data) {
    fields += 1;
    if (name.length > limits.maxFieldNameLength) {
      out.push({
        ...at,
        path: `data.${clipName(name)}`,
        message: `field names are at most ${limits.maxFieldNameLength} characters; this one has ${name.length}`,
      });
    }
  }
  if (fields > limits.maxFields) {
    out.push({
      ...at,
      path: 'data',
      message: `data has ${fields} fields; at most ${limits.maxFields} are allowed per event`,
    });
  }
  // One event must fit an entity that has no fields yet (docs/design.md#attribute-limits).
  const usage = fieldUsage(data);
  if (usage.fields > limits.entity.maxFields) {
    out.push({
      ...at,
      path: 'data',
      message: `data has ${usage.fields} fields; an entity may have at most ${limits.entity.maxFields}`,
    });
  } else if (usage.bytes > limits.entity.maxFieldBytes) {
    out.push({
      ...at,
      path: 'data',
      message: `data takes ${usage.bytes} bytes as attributes; an entity's may take at most ${limits.entity.maxFieldBytes}`,
    });
  }
  return out;
}

/** A request or job body split into its raw events. */
export interface SplitBody {
  raw: unknown[];
  /**
   * Whether the body was a list (`{ events: [...] }`, even of one): problems then name the
   * event's index, so the producer can find it in what it sent.
   */
  indexed: boolean;
}

/**
 * Splits a body into raw events: `{ events: [...] }` or one event object.
 * @throws PromosyncError `invalid_event` when the body is neither.
 */
export function splitBody(body: unknown): SplitBody {
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && 'events' in body) {
    const parsed = batchSchema.safeParse(body);
    const events = (body as { events?: unknown }).events;
    if (Array.isArray(events) && events.length > MAX_EVENTS_PER_REQUEST) {
      throw new PromosyncError(
        'too_many_events',
        `at most ${MAX_EVENTS_PER_REQUEST} events per request, got ${events.length}`,
        {
          problems: [
            {
              path: 'events',
              message: `split the batch into requests of at most ${MAX_EVENTS_PER_REQUEST} events`,
            },
          ],
        },
      );
    }
    if (!parsed.success) {
      throw new PromosyncError('invalid_event', 'the events array is invalid', {
        problems: problemsOf(parsed.error),
      });
    }
    return { raw: parsed.data.events, indexed: true };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new PromosyncError('invalid_event', 'the body must be one event object or { "events": [...] }', {
      problems: [{ path: '(body)', message: 'expected an object' }],
    });
  }
  return { raw: [body], indexed: false };
}
