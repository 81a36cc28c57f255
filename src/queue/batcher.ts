import { DEFAULTS } from '../config.ts';

/** Options of a {@link Batcher}. */
export interface BatcherOptions<I, O> {
  /** Flush once the pending units hold at least this many items. @defaultValue `DEFAULTS.batchMaxEvents` (2000) */
  maxItems?: number;
  /** …or this many milliseconds after the first pending unit arrived. @defaultValue `DEFAULTS.batchFlushMs` (5) */
  flushMs?: number;
  /** Flushes running at once; more pending work waits and grows the next batch. @defaultValue `DEFAULTS.batchMaxInFlight` (1) */
  maxInFlight?: number;
  /** Runs one batch; must return one output per input, in order. */
  run: (items: I[]) => Promise<O[]>;
  /** Whether a failed batch of several units should be retried unit by unit to isolate the bad one. */
  isolate?: (err: unknown) => boolean;
}

interface Unit<I, O> {
  items: I[];
  resolve: (out: O[]) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit: units of work (a job's events) added from many concurrent callers are
 * folded into one `run` per flush. A unit is never split across flushes, and each caller
 * gets exactly its own outputs back.
 */
export class Batcher<I, O> {
  private readonly maxItems: number;
  private readonly flushMs: number;
  private readonly maxInFlight: number;
  private pending: Unit<I, O>[] = [];
  private pendingItems = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly running = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly opts: BatcherOptions<I, O>) {
    this.maxItems = opts.maxItems ?? DEFAULTS.batchMaxEvents;
    this.flushMs = opts.flushMs ?? DEFAULTS.batchFlushMs;
    this.maxInFlight = opts.maxInFlight ?? DEFAULTS.batchMaxInFlight;
  }

  /** Queues `items` for the next flush and resolves with their outputs. */
  add(items: I[]): Promise<O[]> {
    if (this.closed) return Promise.reject(new Error('batcher is closed'));
    if (items.length === 0) return Promise.resolve([]);
    return new Promise<O[]>((resolve, reject) => {
      this.pending.push({ items, resolve, reject });
      this.pendingItems += items.length;
      if (this.pendingItems >= this.maxItems) this.kick();
      else this.timer ??= setTimeout(() => this.kick(), this.flushMs);
    });
  }

  /** Items waiting for a flush. */
  get size(): number {
    return this.pendingItems;
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.pending.length > 0 && this.inFlight < this.maxInFlight) {
      const units: Unit<I, O>[] = [];
      let count = 0;
      while (
        this.pending.length > 0 &&
        (units.length === 0 || count + this.pending[0]!.items.length <= this.maxItems)
      ) {
        const u = this.pending.shift()!;
        units.push(u);
        count += u.items.length;
      }
      this.pendingItems -= count;
      this.inFlight += 1;
      const p = this.flush(units).finally(() => {
        this.inFlight -= 1;
        this.running.delete(p);
        // Work that piled up while we were busy goes out at once, as one batch.
        if (this.pending.length > 0) this.kick();
      });
      this.running.add(p);
    }
    // Still pending (all flush slots busy): the next finishing flush picks it up.
  }

  private async flush(units: Unit<I, O>[]): Promise<void> {
    try {
      const out = await this.opts.run(units.flatMap((u) => u.items));
      let at = 0;
      for (const u of units) {
        u.resolve(out.slice(at, at + u.items.length));
        at += u.items.length;
      }
    } catch (err) {
      if (units.length > 1 && this.opts.isolate?.(err)) {
        // One at a time: a poisoned batch must not take more connections than a healthy one.
        for (const u of units) await this.flush([u]);
      } else {
        for (const u of units) u.reject(err);
      }
    }
  }

  /** Flushes what is pending and waits for every running flush. */
  async close(): Promise<void> {
    this.closed = true;
    this.kick();
    while (this.running.size > 0 || this.pending.length > 0) {
      await Promise.allSettled([...this.running]);
      this.kick();
    }
  }
}
