import type { FieldEntry } from './merge.ts';
import type { FieldValue } from './field-limits.ts';

/**
 * The codec of `entity.fields`: the one definition of how a field's value and its last
 * writer are stored, `{ name: { v: value, k: key, e: event type, n: version } }` (one-letter
 * names keep the jsonb small). TypeScript reads and writes it with {@link decodeFields} and
 * {@link encodeFields}; SQL that reads or writes it is built from the `sql*` helpers here, so
 * both follow {@link FIELD}. See docs/design.md#fields.
 */
export const FIELD = { value: 'v', key: 'k', event: 'e', version: 'n' } as const;

/**
 * One stored field as JSON gives it back. Keys exceed 2^53, so exact readers get them (and
 * versions) as text ({@link sqlExactFields}); JSON numbers are accepted where exactness does
 * not matter.
 */
export interface StoredField {
  v: FieldValue;
  k: string | number;
  e: string;
  n: string | number | null;
}

/** A stored field as the domain sees it. */
export function decodeField(f: StoredField): FieldEntry {
  return {
    value: f[FIELD.value],
    key: BigInt(f[FIELD.key]),
    event: f[FIELD.event],
    version: f[FIELD.version] === null ? null : Number(f[FIELD.version]),
  };
}

/** Every stored field as the domain sees it. */
export function decodeFields(stored: Readonly<Record<string, StoredField>>): Record<string, FieldEntry> {
  const out: Record<string, FieldEntry> = {};
  for (const [name, f] of Object.entries(stored)) out[name] = decodeField(f);
  return out;
}

/** The plain values of stored fields (the API's attributes); keys need not be exact. */
export function storedValues(
  stored: Readonly<Record<string, Pick<StoredField, 'v'>>>,
): Record<string, FieldValue> {
  return Object.fromEntries(Object.entries(stored).map(([name, f]) => [name, f[FIELD.value]]));
}

/** The fields column as JSON text, keys written exactly (JSON.stringify cannot write a bigint). */
export function encodeFields(fields: Readonly<Record<string, FieldEntry>>): string {
  const parts = Object.entries(fields).map(
    ([name, f]) =>
      `${JSON.stringify(name)}:{"${FIELD.value}":${JSON.stringify(f.value)},"${FIELD.key}":${f.key.toString()},` +
      `"${FIELD.event}":${JSON.stringify(f.event)},"${FIELD.version}":${f.version === null ? 'null' : String(f.version)}}`,
  );
  return `{${parts.join(',')}}`;
}

/** SQL for one stored field (jsonb) from SQL expressions of its parts. */
export function sqlFieldEntry(value: string, key: string, event: string, version: string): string {
  return `jsonb_build_object('${FIELD.value}', ${value}, '${FIELD.key}', ${key}, '${FIELD.event}', ${event}, '${FIELD.version}', ${version})`;
}

/** SQL for the writer key (bigint) of the stored field `entry` (a jsonb expression). */
export function sqlFieldKey(entry: string): string {
  return `(${entry} ->> '${FIELD.key}')::bigint`;
}

/** SQL for the value (a jsonb scalar) of the stored field `entry`. */
export function sqlFieldValue(entry: string): string {
  return `(${entry} -> '${FIELD.value}')`;
}

/** SQL for the writer's event type (text) of the stored field `entry`. */
export function sqlFieldEvent(entry: string): string {
  return `(${entry} ->> '${FIELD.event}')`;
}

/** SQL for the writer's version (bigint, NULL when it had none) of the stored field `entry`. */
export function sqlFieldVersion(entry: string): string {
  return `(${entry} ->> '${FIELD.version}')::bigint`;
}

/** SQL for the stored field `entry` with its writer key replaced by the bigint `key`. */
export function sqlWithFieldKey(entry: string, key: string): string {
  return `jsonb_set(${entry}, '{${FIELD.key}}', to_jsonb(${key}))`;
}

/**
 * SQL for a fields column (`fields`, a jsonb expression) with keys and versions as JSON
 * strings, so a reader in JavaScript gets them exactly; {@link decodeFields} reads the result.
 */
export function sqlExactFields(fields: string): string {
  const { value: v, key: k, event: e, version: n } = FIELD;
  return (
    `(SELECT coalesce(jsonb_object_agg(f.key, jsonb_build_object('${v}', f.value -> '${v}', '${k}', f.value ->> '${k}', ` +
    `'${e}', f.value ->> '${e}', '${n}', f.value ->> '${n}')), '{}'::jsonb) FROM jsonb_each(${fields}) f)`
  );
}
