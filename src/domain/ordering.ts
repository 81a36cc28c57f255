import type { Ordering } from './analysis-types.ts';

/**
 * The ordering-key codec: the one definition of how (rank, version) is packed into the bigint
 * stored in `entity.key` and in each field's writer key. TypeScript packs keys with
 * {@link orderingKey}; SQL that packs or unpacks them is built from {@link sqlOrderingKey} and
 * {@link sqlRankOfKey}, so both sides follow the same constants (a test runs them against each
 * other in Postgres). See docs/design.md#ordering-key.
 */

/** Bits the version takes below the rank in rank mode. */
export const VERSION_BITS = 53;
/** Rank slots below the version in version mode: ranks are 0…RANK_SLOTS-1. */
export const RANK_SLOTS = 512;

const VERSION_BITS_N = BigInt(VERSION_BITS);
const RANK_SLOTS_N = BigInt(RANK_SLOTS);

/**
 * The ordering key K(e) packed into one signed 64-bit integer, so Postgres compares it with a
 * single bigint comparison:
 * - rank-ordered machines: (rank, version ?? 0) as `rank · 2^53 + version`;
 * - version-ordered machines: (version, rank) as `version · 512 + rank`; the rank only breaks
 *   ties between different events a producer sent with the same version.
 * Both stay below 2^62 because ranks are at most 511 and versions at most 2^53 - 1.
 */
export function orderingKey(ordering: Ordering, rank: number, version: number | undefined): bigint {
  if (ordering === 'version') return BigInt(version ?? 0) * RANK_SLOTS_N + BigInt(rank);
  return (BigInt(rank) << VERSION_BITS_N) + BigInt(version ?? 0);
}

/** The (rank, version) a key packs, the inverse of {@link orderingKey} (a missing version reads as 0). */
export function unpackKey(ordering: Ordering, key: bigint): { rank: number; version: number } {
  if (ordering === 'version')
    return { rank: Number(key % RANK_SLOTS_N), version: Number(key / RANK_SLOTS_N) };
  const mask = (1n << VERSION_BITS_N) - 1n;
  return { rank: Number(key >> VERSION_BITS_N), version: Number(key & mask) };
}

/**
 * SQL that packs a key like {@link orderingKey}: `rank` and `version` are bigint SQL
 * expressions (version never NULL: coalesce it to 0 first).
 */
export function sqlOrderingKey(ordering: Ordering, rank: string, version: string): string {
  return ordering === 'version'
    ? `(${version} * ${RANK_SLOTS} + ${rank})`
    : `((${rank} << ${VERSION_BITS}) + ${version})`;
}

/** SQL for the rank packed in the bigint expression `key`, like {@link unpackKey}. */
export function sqlRankOfKey(ordering: Ordering, key: string): string {
  return ordering === 'version' ? `(${key} % ${RANK_SLOTS})` : `(${key} >> ${VERSION_BITS})`;
}
