/**
 * Lets one log line through per interval and counts the ones it holds back, so that a
 * flood of the same event (bogus keys) costs a line a second, not a line a request.
 */
export class LogThrottle {
  private last = -Infinity;
  private held = 0;

  /** @param intervalMs at most one line per this many milliseconds. @defaultValue 1000 */
  constructor(
    private readonly intervalMs = 1000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /**
   * Whether to log this occurrence: the number of occurrences held back since the last
   * line that was let through (0 or more), or undefined to stay silent.
   */
  take(): number | undefined {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.held++;
      return undefined;
    }
    this.last = t;
    const held = this.held;
    this.held = 0;
    return held;
  }
}
