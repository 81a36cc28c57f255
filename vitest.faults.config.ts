import { defineConfig } from 'vitest/config';

/**
 * The fault tests (`npm run test:faults`): each starts promosync processes, loads them and
 * breaks something. One file at a time — they measure recovery, so they must not compete
 * with each other for the machine.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 420_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
