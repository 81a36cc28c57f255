import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { sweepExpiredHolds } from '../store/index.ts';

/** Promotions one sweep statement handles. */
const PAGE = 100;

/** Options of a {@link Sweeper}. */
export interface SweeperOptions {
  /** Pause between sweeps. @defaultValue 250 */
  intervalMs?: number;
  /** Called with the number of holds each sweep expired. */
  onExpired?: (holds: number) => void;
}

/**
 * Marks holds past their expiry as expired and returns their units, once each. Admission and
 * the capacity summary already ignore such holds, so this only records what is already true;
 * every API process runs one and they skip each other's rows.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private readonly logger: Logger,
    private readonly opts: SweeperOptions = {},
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.current = this.sweep().finally(() => {
        this.current = undefined;
        this.schedule();
      });
    }, this.opts.intervalMs ?? 250);
    this.timer.unref();
  }

  /** One sweep: repeats while a full page of promotions had due holds. */
  async sweep(): Promise<number> {
    let total = 0;
    try {
      for (;;) {
        const { promotions, holds } = await sweepExpiredHolds(this.pool, PAGE);
        total += holds;
        if (holds > 0) this.opts.onExpired?.(holds);
        if (promotions < PAGE || this.stopped) break;
      }
    } catch (err) {
      // The database is away for now: the next sweep tries again, and admissions do not wait for it.
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'hold sweep failed');
    }
    return total;
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.current;
  }
}
