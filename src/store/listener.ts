import pg from 'pg';
import type { Logger } from 'pino';

/** Options of a {@link Listener}. */
export interface ListenerOptions {
  /** The database to LISTEN on; without it the listener never connects. */
  databaseUrl: string | undefined;
  channel: string;
  /** Names the connection in `pg_stat_activity`. */
  applicationName: string;
  logger: Logger;
  /** The warning logged when the connection is lost, saying what the process does meanwhile. */
  lostMessage: string;
  /** Each notification's payload ('' when it had none). */
  onNotify(payload: string): void;
  /** LISTEN is in place (at start, and after each reconnection): catch up with what was missed. */
  onListening(): void;
  /** The connection was lost; a reconnection is scheduled. */
  onLost?(): void;
  /** Delay before a reconnection. @defaultValue 2000 */
  retryMs?: number;
}

/**
 * One connection LISTENing on one channel, reconnected after a delay whenever it is lost: what
 * the change feed's watch streams and the API-key cache hear PostgreSQL's notifications on.
 */
export class Listener {
  private client: pg.Client | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: ListenerOptions) {}

  /** Connects; resolves once it listens or, failing that, has scheduled a retry. */
  async start(): Promise<void> {
    if (!this.opts.databaseUrl || this.closed) return;
    const client = new pg.Client({
      connectionString: this.opts.databaseUrl,
      application_name: this.opts.applicationName,
    });
    const retry = (err: unknown): void => {
      if (this.client !== client || this.closed) return;
      this.client = undefined;
      this.opts.onLost?.();
      this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, this.opts.lostMessage);
      client.end().catch(() => {});
      this.retryTimer = setTimeout(() => void this.start(), this.opts.retryMs ?? 2000);
      this.retryTimer.unref();
    };
    client.on('error', retry);
    client.on('end', () => retry(new Error('connection ended')));
    client.on('notification', (n) => {
      if (n.channel === this.opts.channel) this.opts.onNotify(n.payload ?? '');
    });
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${this.opts.channel}`);
      if (this.client === client && !this.closed) this.opts.onListening();
    } catch (err) {
      retry(err);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}
