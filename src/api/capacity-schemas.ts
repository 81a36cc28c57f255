import { z } from 'zod';
import { DEFAULT_HOLD_SECONDS, ID_PATTERN, MAX_HOLD_SECONDS, MAX_UNITS } from '../domain/index.ts';

// Request and response schemas of the capacity endpoints: the routes validate with them and
// the OpenAPI document is generated from them.

const ref = (what: string) =>
  z.string().regex(ID_PATTERN, `${what} must be 1-128 characters of [A-Za-z0-9._:-]`);

/** An order id in a path. */
export const orderIdParam = ref('orderId');

/** Largest value of a limit. */
export const MAX_LIMIT = 1_000_000_000_000;

const limitValue = (what: string) =>
  z
    .int(`${what} must be an integer`)
    .min(0, `${what} must be 0 or more`)
    .max(MAX_LIMIT, `${what} must be at most ${MAX_LIMIT}`)
    .nullable()
    .optional();

/** Body of `PUT /v1/promotions/{id}/limits`. */
export const limitsBody = z.strictObject({
  total: limitValue('total').meta({
    description: 'Units over the promotion’s lifetime; null removes the limit.',
  }),
  perCustomer: limitValue('perCustomer').meta({
    description: 'Units one customer may hold or have confirmed; null removes the limit.',
  }),
  perWindow: z
    .strictObject({
      seconds: z
        .int('perWindow.seconds must be an integer')
        .min(1, 'perWindow.seconds must be at least 1')
        .max(2_592_000, 'perWindow.seconds must be at most 2592000 (30 days)'),
      max: z
        .int('perWindow.max must be an integer')
        .min(0, 'perWindow.max must be 0 or more')
        .max(MAX_LIMIT, `perWindow.max must be at most ${MAX_LIMIT}`),
    })
    .nullable()
    .optional()
    .meta({
      description:
        'Units reserved within any sliding window of `seconds` (held or confirmed; released units do not count); null removes the limit.',
    }),
});

/** Body of `POST /v1/promotions/{id}/reservations`. */
export const reserveBody = z.strictObject({
  orderId: ref('orderId').meta({
    description: 'Idempotency key per promotion: the same request again gets the first answer.',
  }),
  customerId: ref('customerId')
    .optional()
    .meta({ description: 'Required when the promotion has a perCustomer limit.' }),
  units: z
    .int('units must be an integer')
    .min(1, 'units must be at least 1')
    .max(MAX_UNITS, `units must be at most ${MAX_UNITS}`)
    .default(1),
  holdSeconds: z
    .int('holdSeconds must be an integer')
    .min(1, 'holdSeconds must be at least 1')
    .max(MAX_HOLD_SECONDS, `holdSeconds must be at most ${MAX_HOLD_SECONDS}`)
    .default(DEFAULT_HOLD_SECONDS)
    .meta({ description: 'How long the hold lasts unconfirmed before its units return.' }),
});

/** Query of `GET /v1/promotions/{id}/capacity`. */
export const capacityQuery = z.strictObject({
  customerId: ref('customerId')
    .optional()
    .meta({ description: 'Show the perCustomer figures of this customer.' }),
});

const remaining = z
  .object({
    total: z.int().nullable(),
    perCustomer: z.int().nullable(),
    perWindow: z.int().nullable(),
  })
  .meta({ description: 'Units left under each limit right after this grant; null where there is no limit.' });

const status = z.enum(['held', 'confirmed', 'released', 'expired']);

/** `201`/`200` of `POST /v1/promotions/{id}/reservations`. */
export const reserveResponse = z.object({
  orderId: z.string(),
  status,
  units: z.int(),
  customerId: z.string().nullable(),
  expiresAt: z.iso.datetime(),
  remaining,
});

/** A reservation as it is now. */
export const reservationResponse = z.object({
  promotionId: z.string(),
  orderId: z.string(),
  customerId: z.string().nullable(),
  units: z.int(),
  status,
  createdAt: z.iso.datetime(),
  expiresAt: z.iso.datetime(),
  resolvedAt: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'When it was confirmed, released or expired.' }),
});

const limitUse = z.object({
  max: z.int(),
  confirmed: z.int(),
  held: z.int().meta({ description: 'Units in holds that have not expired.' }),
  remaining: z.int(),
});

/** `GET /v1/promotions/{id}/capacity`. */
export const capacityResponse = z.object({
  promotionId: z.string(),
  total: limitUse.nullable(),
  perCustomer: z
    .object({
      max: z.int(),
      confirmed: z.int().optional(),
      held: z.int().optional(),
      remaining: z.int().optional(),
    })
    .nullable()
    .meta({ description: 'Use figures only for the customer named by ?customerId=.' }),
  perWindow: limitUse.extend({ seconds: z.int() }).nullable(),
});
