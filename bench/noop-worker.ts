// BullMQ's own ceiling: a worker whose processor does nothing, with the options promosync's
// worker uses, so the two differ only in what a job costs. Run as a child of the benchmark.
import { Worker } from 'bullmq';
import { createRedis } from '../src/queue/index.ts';

const queueName = process.env.QUEUE_NAME ?? 'noop';
const concurrency = Number(process.env.WORKER_CONCURRENCY ?? '64');
const connection = createRedis(process.env.REDIS_URL);
const worker = new Worker(queueName, async () => undefined, { connection, concurrency, autorun: true });
worker.on('error', (err) => process.stderr.write(`no-op worker error: ${err.message}\n`));
await worker.waitUntilReady();
process.stdout.write('no-op worker ready\n');
const stop = async (): Promise<void> => {
  await worker.close();
  connection.disconnect();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
