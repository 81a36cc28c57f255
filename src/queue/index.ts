// The BullMQ side: the producer queue, the worker and its batcher.
export * from './batcher.ts';
export * from './failed.ts';
export * from './job.ts';
export * from './partitions.ts';
export * from './queue.ts';
export * from './redis.ts';
export * from './worker.ts';
