import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig } from '../../src/config.ts';

/** The README's configuration table: variable → the default it states (backquotes removed). */
function readmeDefaults(): Map<string, string> {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'));
  const out = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)) out.set(m[1]!, m[2]!.trim());
  return out;
}

describe('configuration defaults', () => {
  // Each setting with a default in DEFAULTS, by the variable that sets it.
  const settings = {
    QUEUE_NAME: 'queueName',
    WORKER_CONCURRENCY: 'workerConcurrency',
    BATCH_MAX_EVENTS: 'batchMaxEvents',
    BATCH_FLUSH_MS: 'batchFlushMs',
    BATCH_LANES: 'batchLanes',
    JOB_ATTEMPTS: 'jobAttempts',
    JOB_BACKOFF_MS: 'jobBackoffMs',
    WORKER_LOCK_DURATION_MS: 'workerLockDurationMs',
    WORKER_STALLED_INTERVAL_MS: 'workerStalledIntervalMs',
    WORKER_MAX_STALLED_COUNT: 'workerMaxStalledCount',
    EVENT_MAX_FIELDS: 'eventMaxFields',
    EVENT_MAX_FIELD_NAME_LENGTH: 'eventMaxFieldNameLength',
    ENTITY_MAX_FIELDS: 'entityMaxFields',
    ENTITY_MAX_FIELD_BYTES: 'entityMaxFieldBytes',
    QUEUE_PARTITIONS: 'queuePartitions',
  } as const;

  it('an empty environment gets the stated defaults', () => {
    const config = loadConfig({});
    for (const key of Object.values(settings)) expect(config[key], key).toBe(DEFAULTS[key]);
  });

  it("the README's table states the same defaults", () => {
    const table = readmeDefaults();
    for (const [variable, key] of Object.entries(settings)) {
      expect(table.get(variable), variable).toBe(`\`${DEFAULTS[key]}\``);
    }
  });
});

describe('attribute limits', () => {
  it('one event must fit an entity: ENTITY_MAX_FIELDS below EVENT_MAX_FIELDS is refused', () => {
    expect(() => loadConfig({ EVENT_MAX_FIELDS: '200', ENTITY_MAX_FIELDS: '150' })).toThrow(
      /ENTITY_MAX_FIELDS: must be at least EVENT_MAX_FIELDS/,
    );
    expect(() => loadConfig({ ENTITY_MAX_FIELD_BYTES: '1000' })).toThrow(/ENTITY_MAX_FIELD_BYTES/);
    expect(loadConfig({ ENTITY_MAX_FIELDS: '100' }).entityMaxFields).toBe(100);
  });
});

describe('partition and cluster settings', () => {
  it('a worker consumes every partition unless WORKER_PARTITIONS names some', () => {
    expect(loadConfig({ QUEUE_PARTITIONS: '4' }).workerPartitions).toEqual([0, 1, 2, 3]);
    expect(loadConfig({ QUEUE_PARTITIONS: '6', WORKER_PARTITIONS: '0,2-3' }).workerPartitions).toEqual([
      0, 2, 3,
    ]);
    expect(() => loadConfig({ QUEUE_PARTITIONS: '4', WORKER_PARTITIONS: '1,4' })).toThrow(
      /WORKER_PARTITIONS: partition 4 does not exist/,
    );
    expect(() => loadConfig({ WORKER_PARTITIONS: 'all' })).toThrow(/WORKER_PARTITIONS/);
  });

  it('a Redis Cluster needs partitioned queue names and well-formed nodes', () => {
    const ok = loadConfig({
      REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis://:pw@10.0.0.2:7001',
      QUEUE_PARTITIONS: '6',
    });
    expect(ok.redisClusterNodes).toEqual(['10.0.0.1:7000', 'redis://:pw@10.0.0.2:7001']);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000' })).toThrow(
      /QUEUE_PARTITIONS: a Redis Cluster needs at least 2 partitions/,
    );
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:99999', QUEUE_PARTITIONS: '2' })).toThrow(
      /REDIS_CLUSTER_NODES/,
    );
  });
});
