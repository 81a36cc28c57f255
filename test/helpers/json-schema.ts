// A small JSON Schema (2020-12) validator for the keywords the OpenAPI document uses, so tests
// can check the document itself rather than the zod schemas it came from. Unknown validation
// keywords make it throw: a schema it cannot fully check is a test failure, not a silent pass.

type Schema = { [key: string]: unknown } | boolean;

const ANNOTATIONS = new Set(['$schema', 'title', 'description', 'default', 'examples', 'example', 'format']);
const KNOWN = new Set([
  '$ref',
  'type',
  'enum',
  'const',
  'properties',
  'required',
  'additionalProperties',
  'propertyNames',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'pattern',
  'minimum',
  'maximum',
  'anyOf',
  'oneOf',
  'allOf',
]);

const typeOf = (v: unknown): string => {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
};

const matchesType = (v: unknown, t: string): boolean => {
  const actual = typeOf(v);
  return actual === t || (t === 'number' && actual === 'integer');
};

/** Whether `value` is valid against `schema`; `$ref`s resolve against `root` (e.g. the OpenAPI document). */
export function validates(root: unknown, schema: Schema, value: unknown): boolean {
  if (schema === true) return true;
  if (schema === false) return false;
  for (const key of Object.keys(schema)) {
    if (!KNOWN.has(key) && !ANNOTATIONS.has(key)) throw new Error(`unsupported JSON Schema keyword ${key}`);
  }
  const s = schema as Record<string, unknown>;
  if (typeof s.$ref === 'string') {
    const target = s.$ref
      .replace(/^#\//, '')
      .split('/')
      .reduce<unknown>((node, part) => (node as Record<string, unknown>)[part], root);
    if (target === undefined) throw new Error(`unresolved $ref ${s.$ref}`);
    if (!validates(root, target as Schema, value)) return false;
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => matchesType(value, t))) return false;
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => e === value)) return false;
  if ('const' in s && s.const !== value) return false;
  if (typeof value === 'string') {
    const length = [...value].length;
    if (typeof s.minLength === 'number' && length < s.minLength) return false;
    if (typeof s.maxLength === 'number' && length > s.maxLength) return false;
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(value)) return false;
  }
  if (typeof value === 'number') {
    if (typeof s.minimum === 'number' && value < s.minimum) return false;
    if (typeof s.maximum === 'number' && value > s.maximum) return false;
  }
  if (Array.isArray(value)) {
    if (typeof s.minItems === 'number' && value.length < s.minItems) return false;
    if (typeof s.maxItems === 'number' && value.length > s.maxItems) return false;
    if (s.items !== undefined && !value.every((v) => validates(root, s.items as Schema, v))) return false;
  }
  if (typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, Schema>;
    if (Array.isArray(s.required) && !s.required.every((k) => typeof k === 'string' && Object.hasOwn(obj, k)))
      return false;
    for (const [k, v] of Object.entries(obj)) {
      if (s.propertyNames !== undefined && !validates(root, s.propertyNames as Schema, k)) return false;
      if (Object.hasOwn(props, k)) {
        if (!validates(root, props[k]!, v)) return false;
      } else if (s.additionalProperties !== undefined) {
        if (!validates(root, s.additionalProperties as Schema, v)) return false;
      }
    }
  }
  if (Array.isArray(s.allOf) && !s.allOf.every((x) => validates(root, x as Schema, value))) return false;
  if (Array.isArray(s.anyOf) && !s.anyOf.some((x) => validates(root, x as Schema, value))) return false;
  if (Array.isArray(s.oneOf) && s.oneOf.filter((x) => validates(root, x as Schema, value)).length !== 1) {
    return false;
  }
  return true;
}
