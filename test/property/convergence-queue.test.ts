import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { assertQueueConvergence, JOB_RETRIES, jobData } from '../helpers/convergence.ts';

const RUNS = 5;
const HISTORIES_PER_RUN = 110;

describe('convergence through the real queue and database', () => {
  // The API process's worker plus two worker-only services: three workers compete for jobs.
  const h = useHarness({ workers: 2, env: { WORKER_CONCURRENCY: '16', BATCH_FLUSH_MS: '3' } });

  for (const machineName of ['promotion', 'campaign']) {
    it(`every ${machineName} row equals the in-order application of its delivered events, whatever the arrival order`, async () => {
      const checked = await assertQueueConvergence(h, machineName, {
        prefix: `${machineName}-r`,
        histories: HISTORIES_PER_RUN,
        runs: RUNS,
        async deliver(chunks) {
          // Producers add jobs straight to BullMQ: single events and batches of various sizes.
          await h.queue.addBulk(
            chunks.map((chunk) => ({ name: 'events', data: jobData(chunk), opts: JOB_RETRIES })),
          );
          await h.drain();
          const failed = await h.queue.getFailedCount();
          expect(failed).toBe(0);
        },
      });
      expect(checked).toBeGreaterThanOrEqual(500);
    }, 300_000);
  }
});
