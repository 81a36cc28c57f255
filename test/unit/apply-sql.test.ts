import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { APPLY_PARAMS, APPLY_SQL, APPLY_SQL_FILE, renderApplySql } from '../../src/store/apply-sql.ts';

const file = readFileSync(APPLY_SQL_FILE, 'utf8');

describe('the apply statement file', () => {
  it("the parameter table in apply.sql's header lists the parameters the column lists generate", () => {
    const table = [...file.matchAll(/^--\s+\$(\d+)\s+(\w+)\s+(\S+)/gm)].map((m) => ({
      n: Number(m[1]),
      name: m[2],
      pgType: m[3],
    }));
    expect(table).toEqual(APPLY_PARAMS);
  });

  it('every parameter is used and no placeholder is left', () => {
    expect(APPLY_SQL).not.toMatch(/\{\{|\}\}/);
    const used = new Set([...APPLY_SQL.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
    expect([...used].sort((a, b) => a - b)).toEqual(APPLY_PARAMS.map((p) => p.n));
  });

  it('the header comment stays in the file, the statement starts at WITH', () => {
    expect(APPLY_SQL.startsWith('WITH\n')).toBe(true);
  });

  it('an unknown placeholder or a wrong argument fails at load', () => {
    expect(() => renderApplySql('SELECT {{nope}}')).toThrow(/bad placeholder/);
    expect(() => renderApplySql('SELECT {{field_key(a, b)}}')).toThrow(/bad placeholder/);
    expect(() => renderApplySql('SELECT {{rank_of_key(nope, k)}}')).toThrow(/rank or version/);
  });
});
