import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';
import pg from 'pg';
import type { Logger } from 'pino';
import { lockDirectory, type DirLock } from './dir-lock.ts';
import { WireQueue } from './wire-queue.ts';

export interface EmbeddedPostgresOptions {
  /** Directory of the database files; created and initialised on first start. */
  dir: string;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue 0 (a free port) */
  port?: number;
  logger?: Logger;
}

/**
 * PostgreSQL without installing PostgreSQL: PGlite (Postgres compiled to WebAssembly, in this
 * process) persisted under `dir`, served over the Postgres wire protocol on a local port, so
 * the pg pool, Prisma and the migration runner use it exactly as they use a server.
 * PGlite has one backend: connections take turns (see {@link WireQueue}), which suits trying
 * promosync out and development, not production load.
 */
export class EmbeddedPostgres {
  private db: PGlite | undefined;
  private server: Server | undefined;
  private lock: DirLock | undefined;
  private readonly handlers = new Set<PGLiteSocketHandler>();
  /** The connection URL, once started. */
  url: string | undefined;
  /** Whether the last start created the database files. */
  created = false;

  constructor(private readonly opts: EmbeddedPostgresOptions) {}

  /** Opens (or creates) the database, serves it and resolves with its URL once it answers queries. */
  async start(): Promise<string> {
    const { dir, logger } = this.opts;
    const host = this.opts.host ?? '127.0.0.1';
    this.lock = await lockDirectory(dir, 'the embedded database');
    try {
      this.created = !existsSync(path.join(dir, 'PG_VERSION'));
      await mkdir(dir, { recursive: true });
      if (this.created)
        logger?.info({ dir }, 'creating the embedded database (first start takes a few seconds)');
      this.db = await PGlite.create({ dataDir: dir });
      const queue = new WireQueue(this.db);
      const server = createServer((socket) => {
        const options: PGLiteSocketHandlerOptions = {
          // WireQueue implements the queue interface the handler calls (enqueue, clear…).
          queryQueue: queue as unknown as PGLiteSocketHandlerOptions['queryQueue'],
          closeOnDetach: true,
        };
        const handler = new PGLiteSocketHandler(options);
        this.handlers.add(handler);
        const forget = (): void => void this.handlers.delete(handler);
        handler.addEventListener('close', forget);
        handler.addEventListener('error', forget);
        handler.attach(socket).catch(() => {
          forget();
          socket.destroy();
        });
      });
      this.server = server;
      server.listen(this.opts.port ?? 0, host);
      await Promise.race([
        once(server, 'listening'),
        once(server, 'error').then(([err]) => Promise.reject(err as Error)),
      ]);
      const { port } = server.address() as { port: number };
      const url = `postgresql://postgres@${host}:${port}/postgres`;
      const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
      await probe.connect();
      try {
        await probe.query('SELECT 1');
      } finally {
        await probe.end();
      }
      this.url = url;
      logger?.info({ dir, url }, 'embedded database ready');
      return url;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Closes client connections, stops serving and closes the database files. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const h of [...this.handlers]) await h.detach(true);
      this.handlers.clear();
      await closed;
    }
    const db = this.db;
    this.db = undefined;
    if (db && !db.closed) await db.close();
    this.url = undefined;
    await this.lock?.release();
    this.lock = undefined;
  }
}
