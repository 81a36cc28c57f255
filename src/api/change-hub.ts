import type { Logger } from 'pino';
import type { Metrics } from '../observability/index.ts';
import {
  CHANGES_CHANNEL,
  comparePositions,
  decodeChangeCursor,
  encodeChangeCursor,
  Listener,
  readChanges,
  readHorizonLag,
  type ChangePage,
  type ChangePosition,
  type EntityView,
  type PrismaClient,
  type ReadScope,
} from '../store/index.ts';
import { PromosyncError } from '../domain/index.ts';

/** Where a watcher's events go: an SSE response, or anything with the same few members. */
export interface WatchSink {
  write(chunk: string): boolean;
  readonly writableLength: number;
  end(): void;
  destroy(): void;
  once(event: 'drain', listener: () => void): unknown;
}

export interface ChangeHubOptions {
  prisma: PrismaClient;
  /** The database to LISTEN on; without it the hub only polls. */
  databaseUrl?: string;
  logger: Logger;
  metrics?: Metrics;
  /** How often every followed machine is read even without a notification. @defaultValue 1000 */
  pollMs?: number;
  /** How often an idle watcher gets a heartbeat or a bookmark. @defaultValue 15000 */
  heartbeatMs?: number;
  /**
   * Bytes a watcher may leave unread (beyond what the kernel holds): past it, the hub stops
   * writing to it until it has read them, then lets it catch up on its own. @defaultValue 1 MiB
   */
  maxBufferedBytes?: number;
  /** How long a watcher past `maxBufferedBytes` may take to read them before it is cut off. @defaultValue 30000 */
  stallTimeoutMs?: number;
  /** Changes read per query. @defaultValue 500 */
  pageSize?: number;
}

interface Watcher {
  machine: string;
  merchantId: string | null;
  sink: WatchSink;
  /** Every change up to here was sent (or is not for this watcher). */
  pos: ChangePosition;
  /** The last position sent as an event id. */
  sentPos: ChangePosition;
  /** Fed by the hub's reads; false while it catches up on its own or waits to drain. */
  live: boolean;
  /** Set while the client has more than maxBufferedBytes to read: cut off when it fires. */
  stall: NodeJS.Timeout | undefined;
  closed: boolean;
  onClose: () => void;
}

interface MachineFeed {
  /** Where the hub's reads continue; null until a watcher of this machine went live. */
  pos: ChangePosition | null;
  watchers: Set<Watcher>;
  running: boolean;
  again: boolean;
}

/** One SSE frame. */
function frame(event: string, id: string | null, data: unknown): string {
  return `event: ${event}\n${id === null ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`;
}

/**
 * Serves every watch stream of a process from one LISTEN connection and one feed query per
 * wake-up and machine (docs/design.md#changes). A new watcher first catches up on its own,
 * with its own scope, until it reaches the hub's position; from then on the hub's reads are
 * fanned out to it in memory. A watcher that leaves more than `maxBufferedBytes` unread is
 * not written to until it reads them (then it catches up on its own), and is sent `resync`
 * and disconnected if it does not within `stallTimeoutMs`: a client that stops reading costs
 * a bounded amount.
 */
export class ChangeHub {
  private readonly feeds = new Map<string, MachineFeed>();
  private readonly listener: Listener;
  private pollTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly pollMs: number;
  private readonly heartbeatMs: number;
  private readonly pageSize: number;
  private readonly stallTimeoutMs: number;
  /** See {@link ChangeHubOptions.maxBufferedBytes}. */
  readonly maxBufferedBytes: number;
  /** The most bytes any watcher had unread after a write, for tests and diagnostics. */
  maxBufferedSeen = 0;

  constructor(private readonly opts: ChangeHubOptions) {
    this.pollMs = opts.pollMs ?? 1000;
    this.heartbeatMs = opts.heartbeatMs ?? 15_000;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 1024 * 1024;
    this.pageSize = opts.pageSize ?? 500;
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 30_000;
    this.listener = new Listener({
      databaseUrl: opts.databaseUrl,
      channel: CHANGES_CHANNEL,
      applicationName: 'promosync-watch',
      logger: opts.logger,
      lostMessage: 'change listener lost; watchers are polled until it is back',
      onNotify: (payload) => {
        for (const machine of payload.split(',')) if (machine) this.wake(machine);
      },
      // Changes committed while nobody listened.
      onListening: () => this.poll(),
    });
  }

  /** Connects the listener and starts the poll and heartbeat timers. */
  async start(): Promise<void> {
    await this.listener.start();
    this.pollTimer = setInterval(() => this.poll(), this.pollMs);
    this.pollTimer.unref();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  /** Ends every stream and the listener. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearInterval(this.heartbeatTimer);
    for (const feed of this.feeds.values()) for (const w of [...feed.watchers]) this.drop(w, false);
    await this.listener.close();
  }

  /** Open watch streams. */
  get watcherCount(): number {
    let n = 0;
    for (const f of this.feeds.values()) n += f.watchers.size;
    return n;
  }

  /**
   * Reads the first page for a new watcher, before anything is sent, so a cursor too old
   * fails as an ordinary 410 answer. The caller then opens the stream and calls {@link attach}.
   * @throws PromosyncError cursor_expired
   */
  firstPage(machine: string, scope: ReadScope, since: ChangePosition): Promise<ChangePage> {
    return readChanges(this.opts.prisma, machine, scope, since, this.pageSize);
  }

  /**
   * Streams changes of `machine` after `since` to `sink`: first `page` (from
   * {@link firstPage}), then its own reads until it reaches the hub, then the hub's.
   * `onClose` runs once when the hub drops the watcher.
   */
  attach(
    machine: string,
    scope: ReadScope,
    since: ChangePosition,
    page: ChangePage,
    sink: WatchSink,
    onClose: () => void,
  ): () => void {
    const w: Watcher = {
      machine,
      merchantId: scope.merchantId,
      sink,
      pos: since,
      sentPos: since,
      live: false,
      stall: undefined,
      closed: false,
      onClose,
    };
    const feed = this.feed(machine);
    feed.watchers.add(w);
    this.opts.metrics?.watchers.set(this.watcherCount);
    this.startCatchUp(w, page);
    return () => this.drop(w, false);
  }

  private feed(machine: string): MachineFeed {
    let f = this.feeds.get(machine);
    if (!f) {
      f = { pos: null, watchers: new Set(), running: false, again: false };
      this.feeds.set(machine, f);
    }
    return f;
  }

  private startCatchUp(w: Watcher, page: ChangePage | null): void {
    void this.catchUp(w, page).catch((err: unknown) => {
      this.opts.logger.warn({ err, machine: w.machine }, 'watch stream failed while catching up');
      const expired = err instanceof PromosyncError && err.code === 'cursor_expired';
      this.resync(w, expired ? 'cursor_expired' : 'error');
    });
  }

  private async catchUp(w: Watcher, first: ChangePage | null): Promise<void> {
    const scope = { merchantId: w.merchantId };
    let page = first ?? (await readChanges(this.opts.prisma, w.machine, scope, w.pos, this.pageSize));
    for (;;) {
      if (w.closed) return;
      for (let i = 0; i < page.items.length; i++) {
        const item = page.items[i]!;
        const more = this.write(w, frame('change', item.changeSeq, item));
        w.pos = w.sentPos = positionOf(item);
        // The rest of the page is kept, so a client that reads slowly costs no extra reads.
        if (!more) return this.pause(w, { ...page, items: page.items.slice(i + 1) });
      }
      if (comparePositions(page.next, w.pos) > 0) w.pos = page.next;
      const feed = this.feed(w.machine);
      if (!page.full) {
        // Synchronous from the check to `live`: no hub read can deliver in between.
        if (feed.pos === null) feed.pos = w.pos;
        if (comparePositions(w.pos, feed.pos) >= 0) {
          w.live = true;
          return;
        }
      }
      page = await readChanges(this.opts.prisma, w.machine, scope, w.pos, this.pageSize);
    }
  }

  /** Queues one frame; false when the client has more than maxBufferedBytes left to read. */
  private write(w: Watcher, chunk: string): boolean {
    if (w.closed) return false;
    w.sink.write(chunk);
    const buffered = w.sink.writableLength;
    if (buffered > this.maxBufferedSeen) this.maxBufferedSeen = buffered;
    return buffered <= this.maxBufferedBytes;
  }

  /**
   * Stops writing to a watcher that has too much to read. Once it has read it ('drain'), it
   * catches up on its own from where it stopped, as a new watcher does; if it does not read
   * within stallTimeoutMs, it is told to resync and cut off. Either way its buffer stays bounded.
   */
  private pause(w: Watcher, rest: ChangePage | null = null): void {
    w.live = false;
    if (w.closed || w.stall) return;
    w.stall = setTimeout(() => this.resync(w, 'too_slow'), this.stallTimeoutMs);
    w.stall.unref();
    w.sink.once('drain', () => {
      clearTimeout(w.stall);
      w.stall = undefined;
      if (!w.closed) this.startCatchUp(w, rest);
    });
  }

  /** Tells a watcher to list again (when it can still be told) and disconnects it. */
  private resync(w: Watcher, reason: 'too_slow' | 'cursor_expired' | 'error'): void {
    if (w.closed) return;
    const detail =
      reason === 'too_slow'
        ? 'the stream fell too far behind: reconnect with Last-Event-ID, or list again if that answers 410'
        : reason === 'cursor_expired'
          ? 'the cursor is older than the changes kept: list the collection again and follow from its changesSince'
          : 'the stream failed: reconnect with Last-Event-ID';
    w.sink.write(frame('resync', null, { reason, detail }));
    this.drop(w, true);
    // A client that stopped reading would never see it behind what it left unread: no grace.
    if (reason === 'too_slow') w.sink.destroy();
  }

  private drop(w: Watcher, destroySoon: boolean): void {
    if (w.closed) return;
    w.closed = true;
    const feed = this.feeds.get(w.machine);
    feed?.watchers.delete(w);
    if (feed && feed.watchers.size === 0) {
      // Nobody follows: reads stop, and the next watcher starts the position afresh.
      feed.pos = null;
    }
    this.opts.metrics?.watchers.set(this.watcherCount);
    w.sink.end();
    // A client that does not read never lets end() finish: the socket goes after a grace period.
    if (destroySoon) setTimeout(() => w.sink.destroy(), 1000).unref();
    w.onClose();
  }

  private poll(): void {
    for (const machine of this.feeds.keys()) this.wake(machine);
    if (this.opts.metrics) {
      readHorizonLag(this.opts.prisma)
        .then((s) => this.opts.metrics?.changeHorizonLag.set(s))
        .catch(() => {});
    }
  }

  /** Reads a machine's new changes once, or once more after the read in flight. */
  private wake(machine: string): void {
    const feed = this.feeds.get(machine);
    if (!feed || feed.pos === null) return;
    if (feed.running) {
      feed.again = true;
      return;
    }
    feed.running = true;
    void (async () => {
      try {
        do {
          feed.again = false;
          await this.pump(machine, feed);
        } while (feed.again && !this.closed);
      } catch (err) {
        this.opts.logger.warn(
          { err, machine },
          'reading changes for watchers failed; retrying at the next poll',
        );
        if (err instanceof PromosyncError && err.code === 'cursor_expired') {
          for (const w of [...feed.watchers]) if (w.live) this.resync(w, 'cursor_expired');
          feed.pos = null;
        }
      } finally {
        feed.running = false;
      }
    })();
  }

  private async pump(machine: string, feed: MachineFeed): Promise<void> {
    for (;;) {
      const from = feed.pos;
      if (from === null || this.closed) return;
      const page = await readChanges(this.opts.prisma, machine, { merchantId: null }, from, this.pageSize);
      if (feed.pos !== from) return; // everybody left meanwhile
      for (const item of page.items) {
        const pos = positionOf(item);
        let text: string | undefined;
        for (const w of feed.watchers) {
          if (!w.live || (w.merchantId !== null && w.merchantId !== item.merchantId)) continue;
          if (comparePositions(pos, w.pos) <= 0) continue;
          text ??= frame('change', item.changeSeq, item);
          const more = this.write(w, text);
          w.pos = w.sentPos = pos;
          if (!more) this.pause(w);
        }
      }
      feed.pos = page.next;
      for (const w of feed.watchers) if (w.live && comparePositions(page.next, w.pos) > 0) w.pos = page.next;
      if (!page.full) return;
    }
  }

  /** Every watcher that sent nothing since the last tick gets a bookmark, or a comment when it did not move. */
  private heartbeat(): void {
    for (const feed of this.feeds.values()) {
      for (const w of [...feed.watchers]) {
        if (!w.live) continue;
        if (comparePositions(w.pos, w.sentPos) > 0) {
          const id = encodeChangeCursor(w.pos);
          const more = this.write(w, frame('bookmark', id, { changesSince: id }));
          w.sentPos = w.pos;
          if (!more) this.pause(w);
        } else if (!this.write(w, ': heartbeat\n\n')) this.pause(w);
      }
    }
  }
}

/** An item's position, from its changeSeq. */
function positionOf(item: EntityView): ChangePosition {
  return decodeChangeCursor(item.changeSeq);
}
