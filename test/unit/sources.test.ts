import { describe, expect, it } from 'vitest';
import { isReservedSource, RESERVED_SOURCES, sourceSchema } from '../../src/domain/index.ts';

describe('reserved source names', () => {
  it('reserves admin, the source admin keys push under, in any letter case', () => {
    expect(RESERVED_SOURCES).toContain('admin');
    for (const s of ['admin', 'Admin', 'ADMIN']) expect(isReservedSource(s)).toBe(true);
  });

  it('leaves ordinary producer names free, including ones that merely contain a reserved name', () => {
    for (const s of ['cashback', 'admin2', 'my-admin', 'bench', 'test-src'])
      expect(isReservedSource(s)).toBe(false);
  });

  it('reserves only names a producer key could otherwise be given', () => {
    for (const s of RESERVED_SOURCES) expect(sourceSchema.safeParse(s).success).toBe(true);
  });
});
