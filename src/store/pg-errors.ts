/** SQLSTATEs after which the same statement may simply run again. */
const RETRYABLE = new Set(['40001', '40P01', '23505']);

/** SQLSTATEs and socket errors meaning the database is away for now, not that the input is bad. */
const TRANSIENT_CLASSES = ['08', '53', '57P', '58'];
const TRANSIENT_NODE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'EAI_AGAIN',
]);

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** A conflict with a concurrent statement: run it again. */
export function isRetryable(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && RETRYABLE.has(code);
}

/** Prisma's codes for a database it cannot reach or get a connection to. */
const PRISMA_TRANSIENT = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);

/** The database is unreachable or overloaded: retry later, the input is fine. */
export function isTransient(err: unknown, depth = 0): boolean {
  if (
    depth < 5 &&
    typeof err === 'object' &&
    err !== null &&
    'cause' in err &&
    isTransient(err.cause, depth + 1)
  ) {
    return true;
  }
  const code = codeOf(err);
  if (code !== undefined && PRISMA_TRANSIENT.has(code)) return true;
  if (code !== undefined && (TRANSIENT_NODE.has(code) || TRANSIENT_CLASSES.some((c) => code.startsWith(c))))
    return true;
  const message = err instanceof Error ? err.message : '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|DatabaseNotReachable|ECONNREFUSED|ECONNRESET/i.test(
    message,
  );
}

/**
 * The data itself cannot be stored (SQLSTATE class 22, data exception, e.g. a value out of
 * range): running it again cannot succeed.
 */
export function isDataError(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && code.startsWith('22');
}
