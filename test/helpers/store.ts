import { afterAll, beforeAll } from 'vitest';
import pg from 'pg';
import pino from 'pino';
import type { MachineRegistry } from '../../src/domain/registry.ts';
import { Applier } from '../../src/store/apply.ts';
import { freshDatabase, testPool } from './db.ts';

/** A fresh database with a pool and an applier of a registry on it. */
export interface TestStore {
  url: string;
  pool: pg.Pool;
  applier: Applier;
}

/**
 * The store of the enclosing describe block: a fresh, migrated database with a pool of
 * `poolSize` connections and an {@link Applier} of `registry`, ready before the block's tests
 * and dropped after them. The returned object is filled in by that beforeAll hook.
 */
export function useStore(registry: MachineRegistry, poolSize = 2): TestStore {
  const store = {} as TestStore;
  let drop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const db = await freshDatabase();
    drop = db.drop;
    const pool = testPool(db.url, poolSize);
    Object.assign(store, {
      url: db.url,
      pool,
      applier: new Applier(pool, registry, pino({ level: 'silent' })),
    });
  });
  afterAll(async () => {
    await store.pool?.end();
    await drop?.();
  });
  return store;
}
