import { hash } from 'node:crypto';
import type { PreparedEvent } from './registry.ts';

/**
 * What an event says, as a short hash: the same (source, eventId) with another hash is a
 * `conflict`, with the same hash a `duplicate` (docs/design.md#idempotency). It covers the
 * machine, entity, type, version, merchant and data (fields sorted by name, null fields left
 * out: they mean "no change"), not the source and eventId (the key it is stored under) nor
 * `occurredAt` (a producer's retry may stamp it anew). 128 bits of SHA-256, hex.
 */
export function contentHash(e: PreparedEvent): string {
  let data = 'null';
  if (e.data !== null) {
    const names = Object.keys(e.data).sort();
    data = `{${names.map((n) => `${JSON.stringify(n)}:${JSON.stringify(e.data![n])}`).join(',')}}`;
  }
  const canonical = `[${JSON.stringify(e.machine)},${JSON.stringify(e.entityId)},${JSON.stringify(e.type)},${
    e.version === null ? 'null' : String(e.version)
  },${e.merchantId === null ? 'null' : JSON.stringify(e.merchantId)},${data}]`;
  // One-shot hash(): a Hash object per event cost more than the digest itself.
  return hash('sha256', canonical, 'hex').slice(0, 32);
}
