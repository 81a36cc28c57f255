// Running promosync on a bare machine: an embedded Postgres and a private Redis when none is configured.
export * from './backends.ts';
export * from './dir-lock.ts';
export * from './embedded-postgres.ts';
export * from './ports.ts';
export * from './private-redis.ts';
export * from './running-file.ts';
export * from './wait.ts';
export * from './redis-settings.ts';
