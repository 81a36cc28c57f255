import type { Ordering } from './analysis-types.ts';

const VERSION_BITS = 53n;
const RANK_SLOTS = 512n;

/**
 * The ordering key K(e) of SPEC §3 packed into one signed 64-bit integer, so Postgres
 * compares it with a single bigint comparison:
 * - rank-ordered machines: (rank, version ?? 0) as `rank · 2^53 + version`;
 * - version-ordered machines: (version, rank) as `version · 512 + rank`; the rank only breaks
 *   ties between different events a producer sent with the same version.
 * Both stay below 2^62 because ranks are at most 511 and versions at most 2^53 - 1.
 */
export function orderingKey(ordering: Ordering, rank: number, version: number | undefined): bigint {
  if (ordering === 'version') return BigInt(version ?? 0) * RANK_SLOTS + BigInt(rank);
  return (BigInt(rank) << VERSION_BITS) + BigInt(version ?? 0);
}

/** The rank packed in a key, the inverse of {@link orderingKey}. */
export function rankOfKey(ordering: Ordering, key: bigint): number {
  return Number(ordering === 'version' ? key % RANK_SLOTS : key >> VERSION_BITS);
}
