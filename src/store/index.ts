// Data access: the Postgres pool and Prisma client, the apply statement, queries, keys, migrations.
export * from './apply.ts';
export * from './change-cursor.ts';
export * from './changes.ts';
export * from './capacity.ts';
export * from './db.ts';
export * from './entity-view.ts';
export * from './key-cache.ts';
export * from './listener.ts';
export * from './keys.ts';
export * from './machine-defs.ts';
export * from './migrate.ts';
export * from './pg-errors.ts';
export * from './privileges.ts';
export * from './queries.ts';
export * from './rebuild.ts';
export * from './retention.ts';
export * from './transaction.ts';
