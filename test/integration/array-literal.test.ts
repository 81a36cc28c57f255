import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrayLiteral } from '../../src/store/apply.ts';
import { freshDatabase } from '../helpers/db.ts';

// The apply statement's parameters are array literals built in Node: whatever the strings
// hold, Postgres must read back exactly what was sent.
describe('array literals of the apply parameters', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let client: pg.Client;
  beforeAll(async () => {
    db = await freshDatabase(false);
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });
  afterAll(async () => {
    await client.end();
    await db.drop();
  });

  const readBack = async (items: (string | null)[]): Promise<(string | null)[]> => {
    const { rows } = await client.query<{ a: (string | null)[] }>('SELECT $1::text[] AS a', [
      arrayLiteral(items),
    ]);
    return rows[0]!.a;
  };

  it('reads back any strings, NULLs, quotes, backslashes and control characters unchanged', async () => {
    const odd = fc.constantFrom(
      '',
      'NULL',
      'null',
      '"',
      '\\',
      '\\n',
      '\n',
      '\t',
      '{a,b}',
      ' x ',
      'é',
      '\u0001',
      '\\"',
      ',',
    );
    const text = fc
      .oneof(fc.string(), odd, fc.string({ unit: 'grapheme' }))
      .filter((s) => !s.includes('\u0000'));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(text, fc.constant(null)), { maxLength: 20 }), async (items) => {
        expect(await readBack(items)).toEqual(items);
      }),
      { numRuns: 300 },
    );
  });

  it('reads back numbers and the JSON text of event data', async () => {
    const { rows } = await client.query<{ n: string[]; d: unknown[] }>(
      'SELECT $1::bigint[]::text[] AS n, $2::jsonb[] AS d',
      [arrayLiteral([0, 1, 2 ** 53 - 1, null]), arrayLiteral([JSON.stringify({ a: 'x"\\\n\u0001y' }), null])],
    );
    expect(rows[0]!.n).toEqual(['0', '1', String(2 ** 53 - 1), null]);
    expect(rows[0]!.d).toEqual([{ a: 'x"\\\n\u0001y' }, null]);
  });
});
