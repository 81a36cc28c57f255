/**
 * Queue partitions: which queue an entity's events go to, and what that queue is called.
 * Producers that add jobs straight to BullMQ use these so that they route exactly as the API
 * does (docs/operations.md, "Partitions and Redis Cluster"; docs/design.md#queue).
 */

/** Hash slots of a Redis Cluster. */
const SLOTS = 16384;

/** FNV-1a (32 bit) of an entity's machine and id: every process, in any language, agrees on it. */
export function entityHash(machine: string, entityId: string): number {
  let h = 0x811c9dc5;
  const key = `${machine}\u0000${entityId}`;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The partition of an entity among `partitions`: {@link entityHash} put through MurmurHash3's
 * finalizer (fmix32), its high bits scaled to the count. The worker's apply lanes take the
 * plain hash mod lanes; FNV's low bits depend on each other and its high bits mix the last
 * characters poorly, so neither alone spreads ids like `promo-1`, `promo-2`… evenly over the
 * partitions and independently of the lanes.
 */
export function partitionOf(machine: string, entityId: string, partitions: number): number {
  if (partitions <= 1) return 0;
  let h = entityHash(machine, entityId);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return Math.floor(((h >>> 0) * partitions) / 2 ** 32);
}

/** CRC16 (XMODEM), the checksum Redis Cluster maps keys to slots with. */
function crc16(s: string): number {
  let crc = 0;
  for (const byte of Buffer.from(s, 'utf8')) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Redis Cluster hash slot of a key (of its `{hash tag}` when it has one). */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % SLOTS;
  }
  return crc16(key) % SLOTS;
}

/**
 * The hash tag of partition `p` of `partitions`: `p<p>`, or `p<p>.<n>` with the smallest n
 * whose slot lies in the middle half of the p-th of `partitions` equal shares of the slots.
 * A cluster made with `redis-cli --cluster create` gives its masters equal, consecutive slot
 * ranges, so partitions land on the masters in turn instead of wherever their names hash.
 */
export function partitionTag(p: number, partitions: number): string {
  const share = SLOTS / partitions;
  const from = (p + 0.25) * share;
  const to = (p + 0.75) * share;
  for (let n = 0; ; n++) {
    const tag = n === 0 ? `p${p}` : `p${p}.${n}`;
    const slot = crc16(tag) % SLOTS;
    if (slot >= from && slot < to) return tag;
  }
}

/**
 * The BullMQ queue of partition `p`: `base` itself when there is one partition (the name
 * deployments always had), else `<base>-{<tag>}`, whose `{hash tag}` keeps all of the queue's
 * keys in one Redis Cluster slot and puts different partitions on different slots.
 */
export function queueNameOf(base: string, p: number, partitions: number): string {
  if (!Number.isInteger(p) || p < 0 || p >= partitions) {
    throw new RangeError(`partition ${p} is not in 0..${partitions - 1}`);
  }
  return partitions === 1 ? base : `${base}-{${partitionTag(p, partitions)}}`;
}

/** The queues of all `partitions`, in partition order. */
export function queueNamesOf(base: string, partitions: number): string[] {
  return Array.from({ length: partitions }, (_, p) => queueNameOf(base, p, partitions));
}

/**
 * Splits items into one group per partition, keeping each group in the items' order and
 * remembering where each item was, so results can be put back in order.
 */
export function groupByPartition<T extends { machine: string; entityId: string }>(
  items: readonly T[],
  partitions: number,
): { partition: number; items: T[]; at: number[] }[] {
  const groups = new Map<number, { partition: number; items: T[]; at: number[] }>();
  items.forEach((item, i) => {
    const p = partitionOf(item.machine, item.entityId, partitions);
    let g = groups.get(p);
    if (!g) groups.set(p, (g = { partition: p, items: [], at: [] }));
    g.items.push(item);
    g.at.push(i);
  });
  return [...groups.values()].sort((a, b) => a.partition - b.partition);
}

/**
 * Parses a partition list such as `0,2-3` (WORKER_PARTITIONS) against `partitions`.
 * @throws Error naming what is wrong.
 */
export function parsePartitionList(list: string, partitions: number): number[] {
  const out = new Set<number>();
  for (const part of list.split(',').map((s) => s.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`"${part}" is not a partition or a range like 2-4`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new Error(`range ${part} runs backwards`);
    if (to >= partitions)
      throw new Error(`partition ${to} does not exist: there are ${partitions} (0..${partitions - 1})`);
    for (let p = from; p <= to; p++) out.add(p);
  }
  return [...out].sort((a, b) => a - b);
}
