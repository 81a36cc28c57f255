/**
 * Sources promosync records events under itself: `admin` for events an admin key pushes.
 * No producer key may claim one, or its eventIds would share the idempotency space of
 * promosync's own (see docs/design.md#ownership). Compared without regard to case, so that
 * `Admin` cannot pass for `admin` in logs, metrics and `keys list`.
 */
export const RESERVED_SOURCES: readonly string[] = Object.freeze(['admin']);

const reserved = new Set(RESERVED_SOURCES);

/** Whether `source` is one of {@link RESERVED_SOURCES}, in any letter case. */
export function isReservedSource(source: string): boolean {
  return reserved.has(source.toLowerCase());
}

/** The message for a producer that claims a reserved source, naming the reserved ones. */
export function reservedSourceMessage(source: string): string {
  return (
    `source "${source}" is reserved: promosync records events under ${RESERVED_SOURCES.map((s) => `"${s}"`).join(', ')} ` +
    'itself (in any letter case); choose another name for the producer'
  );
}
