import { Cluster, type Redis } from 'ioredis';
import { PromosyncError } from '../domain/index.ts';

/**
 * The Redis settings accepted events depend on (see docs/design.md#durability). undefined
 * when Redis would not say (CONFIG and INFO both refused).
 */
export interface RedisSettings {
  /** `maxmemory-policy`: anything but `noeviction` lets Redis delete queued jobs. */
  evictionPolicy: string | undefined;
  /** Whether the append-only file is on; without it a restart loses what was not snapshotted. */
  appendOnly: boolean | undefined;
}

/** The only eviction policy under which Redis never deletes a queued job to make room. */
export const SAFE_EVICTION_POLICY = 'noeviction';

const infoField = (info: string, name: string): string | undefined =>
  new RegExp(`^${name}:(\\S*)`, 'm').exec(info)?.[1];

/**
 * Reads the settings with `CONFIG GET`, or from `INFO` where CONFIG is disabled or renamed
 * (managed Redis services often do that).
 * @throws when Redis cannot be reached at all.
 */
export async function readRedisSettings(redis: Redis | Cluster): Promise<RedisSettings> {
  if (redis instanceof Cluster)
    return combine(await Promise.all(redis.nodes('master').map(readNodeSettings)));
  return readNodeSettings(redis);
}

/**
 * A cluster's settings as the weakest of its masters': every queue partition lives on one of
 * them, so one master that may evict, or keeps no append-only file, puts accepted events at risk.
 */
function combine(nodes: RedisSettings[]): RedisSettings {
  const unsafe = nodes.find(
    (n) => n.evictionPolicy !== undefined && n.evictionPolicy !== SAFE_EVICTION_POLICY,
  );
  const evictionPolicy =
    unsafe?.evictionPolicy ??
    (nodes.some((n) => n.evictionPolicy === undefined) ? undefined : SAFE_EVICTION_POLICY);
  const appendOnly = nodes.some((n) => n.appendOnly === false)
    ? false
    : nodes.some((n) => n.appendOnly === undefined)
      ? undefined
      : true;
  return { evictionPolicy, appendOnly };
}

async function readNodeSettings(redis: Redis): Promise<RedisSettings> {
  let evictionPolicy: string | undefined;
  let appendOnly: boolean | undefined;
  try {
    const pairs = (await redis.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
    evictionPolicy = pairs[1];
    const aof = (await redis.call('CONFIG', 'GET', 'appendonly')) as string[];
    if (aof[1] !== undefined) appendOnly = aof[1] === 'yes';
  } catch (err) {
    if (!/unknown command|NOPERM|not allowed|disabled/i.test(err instanceof Error ? err.message : ''))
      throw err;
  }
  if (evictionPolicy === undefined || appendOnly === undefined) {
    const info = await redis.info().catch((err: unknown) => {
      if (/unknown command|NOPERM/i.test(err instanceof Error ? err.message : '')) return '';
      throw err;
    });
    evictionPolicy ??= infoField(info, 'maxmemory_policy');
    const aof = infoField(info, 'aof_enabled');
    if (appendOnly === undefined && aof !== undefined) appendOnly = aof === '1';
  }
  return { evictionPolicy, appendOnly };
}

/** The refusal for an eviction policy that can delete accepted events. */
export function evictionPolicyError(policy: string): PromosyncError {
  return new PromosyncError(
    'redis_eviction_policy',
    `Redis runs with maxmemory-policy ${policy}, under which it may delete queued events, so none are accepted: ` +
      `set maxmemory-policy ${SAFE_EVICTION_POLICY} (CONFIG SET maxmemory-policy ${SAFE_EVICTION_POLICY}, and in redis.conf)`,
  );
}

/**
 * Whether the Redis that holds accepted events may evict them, checked at most once per
 * `maxAgeMs` (a producer's request must not cost a round trip), and afresh for readiness.
 * A Redis that cannot be reached or will not tell passes: the enqueue and the PING probe
 * report an unreachable one, and an unknown policy is warned about at start.
 */
export class EvictionGuard {
  private checked = 0;
  private policy: string | undefined;
  private pending: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly maxAgeMs = 1000,
  ) {}

  /** @throws PromosyncError `redis_eviction_policy` when the last known policy is unsafe. */
  async check(fresh = false): Promise<void> {
    if (fresh || Date.now() - this.checked >= this.maxAgeMs) {
      this.pending ??= this.refresh().finally(() => (this.pending = undefined));
      await this.pending;
    }
    if (this.policy !== undefined && this.policy !== SAFE_EVICTION_POLICY)
      throw evictionPolicyError(this.policy);
  }

  private async refresh(): Promise<void> {
    try {
      this.policy = (await readRedisSettings(this.redis)).evictionPolicy;
    } catch {
      // Unreachable: leave the last known policy; other checks report the outage.
    }
    this.checked = Date.now();
  }
}
