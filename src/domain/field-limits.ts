/** A scalar attribute value. */
export type FieldValue = string | number | boolean;

/**
 * Limits of one entity's attributes, set per deployment (docs/design.md#attribute-limits): how
 * many fields a row may hold and how large they may be together, as {@link sqlFieldBytes} counts.
 */
export interface EntityLimits {
  /** Fields one entity may have. */
  maxFields: number;
  /** The size of one entity's fields together, in bytes. */
  maxFieldBytes: number;
}

/** Bytes a number or a boolean counts for. */
const SCALAR_BYTES = 8;

/**
 * SQL for the size one field counts for against {@link EntityLimits.maxFieldBytes}, from its
 * name (text) and its value (a jsonb scalar): the name's bytes in UTF-8 and, for a string, its
 * value's; a number or a boolean counts 8.
 */
export function sqlFieldBytes(name: string, value: string): string {
  return `(octet_length(${name}) + CASE WHEN jsonb_typeof(${value}) = 'string' THEN octet_length(${value} #>> '{}') ELSE ${SCALAR_BYTES} END)`;
}

/** How the reason of a rejection for an entity's field limits starts (rebuild looks for it in the log). */
export const FIELD_LIMIT_REASON = 'entity field limit';

/** The two reasons, as text around the count or size the entity would have and its limit. */
const REASON = {
  fields: [`${FIELD_LIMIT_REASON}: the entity would have `, ' fields, at most ', ' are allowed'],
  bytes: [`${FIELD_LIMIT_REASON}: its fields would take `, ' bytes, at most ', ' are allowed'],
} as const;

/**
 * SQL for the reason of a rejection for an entity's field limits ({@link limitReason} in SQL),
 * from SQL expressions: whether the count passed its limit (else the size did), the fields and
 * bytes the entity would have, and its limits.
 */
export function sqlFieldLimitReason(
  overFields: string,
  fields: string,
  bytes: string,
  maxFields: string,
  maxBytes: string,
): string {
  const text = ([a, b, c]: readonly string[], n: string, max: string): string =>
    `'${a}' || ${n} || '${b}' || ${max} || '${c}'`;
  return `CASE WHEN ${overFields} THEN ${text(REASON.fields, fields, maxFields)} ELSE ${text(REASON.bytes, bytes, maxBytes)} END`;
}

/** The size one field counts for against {@link EntityLimits.maxFieldBytes} ({@link sqlFieldBytes} in TypeScript). */
export function fieldBytes(name: string, value: FieldValue): number {
  return utf8Bytes(name) + (typeof value === 'string' ? utf8Bytes(value) : SCALAR_BYTES);
}

/** Bytes of a string in UTF-8 (the contract refuses lone surrogates). */
function utf8Bytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** The count and size of fields' values, as the limits count them (null values, "no change", not at all). */
export function fieldUsage(values: Readonly<Record<string, FieldValue | null>>): {
  fields: number;
  bytes: number;
} {
  return usage(Object.entries(values));
}

/** {@link fieldUsage} of name-value pairs. */
function usage(entries: Iterable<readonly [string, FieldValue | null | undefined]>): {
  fields: number;
  bytes: number;
} {
  let count = 0;
  let bytes = 0;
  for (const [name, v] of entries) {
    if (v === null || v === undefined) continue;
    count += 1;
    bytes += fieldBytes(name, v);
  }
  return { fields: count, bytes };
}

const usageOf = (
  fields: Readonly<Record<string, { value: FieldValue }>>,
): { fields: number; bytes: number } =>
  usage(Object.entries(fields).map(([name, f]) => [name, f.value] as const));

/**
 * Why going from fields `before` to `after` passes an entity's limits, or null when it does not:
 * it does when the fields grow in number past the limit, or in size past the limit. Rows above
 * a lowered limit keep taking writes that do not grow them.
 */
export function limitReason(
  before: Readonly<Record<string, { value: FieldValue }>>,
  after: Readonly<Record<string, { value: FieldValue }>>,
  limits: Readonly<EntityLimits>,
): string | null {
  const was = usageOf(before);
  const now = usageOf(after);
  const [fa, fb, fc] = REASON.fields;
  const [ba, bb, bc] = REASON.bytes;
  if (now.fields > limits.maxFields && now.fields > was.fields)
    return `${fa}${now.fields}${fb}${limits.maxFields}${fc}`;
  if (now.bytes > limits.maxFieldBytes && now.bytes > was.bytes)
    return `${ba}${now.bytes}${bb}${limits.maxFieldBytes}${bc}`;
  return null;
}
