import type { z } from 'zod';
import { PromosyncError } from '../domain/index.ts';

/**
 * Validates query parameters with a strict schema: unknown, repeated or malformed
 * parameters are a 400 that names them.
 */
export function parseQuery<T extends z.ZodType>(schema: T, query: unknown): z.infer<T> {
  const parsed = schema.safeParse(query);
  if (!parsed.success) {
    throw new PromosyncError('invalid_request', 'invalid query parameters', {
      problems: parsed.error.issues.map((i) => ({
        path:
          i.path.map(String).join('.') || (i.code === 'unrecognized_keys' ? i.keys.join(', ') : '(query)'),
        message: i.message,
      })),
    });
  }
  return parsed.data;
}
