import type { Logger } from 'pino';
import type { PrismaClient } from './db.ts';
import { Listener } from './listener.ts';
import {
  checkSecret,
  KEYS_CHANNEL,
  loadKey,
  onKeyRevoked,
  parseKey,
  type Principal,
  type StoredKey,
} from './keys.ts';

/** Options of a {@link KeyCache}. */
export interface KeyCacheOptions {
  prisma: PrismaClient;
  /** The database to LISTEN on; without it nothing is cached and every check reads the key. */
  databaseUrl: string | undefined;
  logger: Logger;
  /** How long a verified key is trusted without reading it again; 0 turns the cache off. */
  ttlMs: number;
  /** Keys kept at most; the oldest is dropped first. @defaultValue 10000 */
  maxEntries?: number;
}

interface Entry {
  key: StoredKey;
  until: number;
}

/**
 * The API keys one API process verified recently (docs/api.md#revoking-a-key), so
 * that a request costs one SHA-256 and one constant-time comparison instead of a database read.
 *
 * A key leaves the cache when any change of its row is notified on {@link KEYS_CHANNEL} (a
 * trigger on `api_key`, so `promosync keys revoke`, from any process, and plain SQL alike), when
 * it is revoked through this process, and at the latest `ttlMs` after it was read. The cache is
 * used only while its LISTEN connection is up: while it is down (and until it first connects)
 * every check reads the key, and when it is back the cache starts empty, since notifications
 * sent meanwhile were missed.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<StoredKey | null>>();
  /** Bumped by every invalidation: a read that began before one is not cached. */
  private epoch = 0;
  private listening = false;
  private readonly listener: Listener;
  private readonly unsubscribe: () => void;
  private readonly maxEntries: number;

  constructor(private readonly opts: KeyCacheOptions) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.unsubscribe = onKeyRevoked((id) => this.forget(id));
    this.listener = new Listener({
      databaseUrl: opts.databaseUrl,
      channel: KEYS_CHANNEL,
      applicationName: 'promosync-keys',
      logger: opts.logger,
      lostMessage: 'key listener lost; every request reads its key until it is back',
      onNotify: (payload) => this.forget(payload || undefined),
      onListening: () => {
        // Whatever changed while nobody listened is read again.
        this.forget();
        this.listening = true;
      },
      onLost: () => this.stopCaching(),
    });
  }

  /** Whether checks are being answered from the cache (its listener is connected). */
  get active(): boolean {
    return this.listening;
  }

  /** A started cache for a process's database and settings (see {@link KeyCache.start}). */
  static async open(
    db: { prisma: PrismaClient },
    config: { databaseUrl: string | undefined; keyCacheTtlMs: number },
    logger: Logger,
  ): Promise<KeyCache> {
    const cache = new KeyCache({
      prisma: db.prisma,
      databaseUrl: config.databaseUrl,
      logger,
      ttlMs: config.keyCacheTtlMs,
    });
    await cache.start();
    return cache;
  }

  /** Connects the listener; resolves once it listens or, failing that, has scheduled a retry. */
  async start(): Promise<void> {
    if (this.opts.ttlMs > 0) await this.listener.start();
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.stopCaching();
    await this.listener.close();
  }

  /**
   * The principal a presented key stands for, or null for an unknown, malformed or revoked key;
   * like {@link verifyKey}, the secret's digest is compared in constant time.
   */
  async verify(presented: string): Promise<Principal | null> {
    const parsed = parseKey(presented);
    if (!parsed) return null;
    let key: StoredKey | null;
    if (this.listening) {
      const hit = this.entries.get(parsed.id);
      key = hit && hit.until > Date.now() ? hit.key : await this.load(parsed.id);
    } else {
      key = await loadKey(this.opts.prisma, parsed.id);
    }
    return checkSecret(parsed.secret, key);
  }

  /** Drops one key, or every key, from the cache; reads in flight are not cached. */
  forget(id?: string): void {
    this.epoch += 1;
    if (id === undefined) {
      this.entries.clear();
      this.loading.clear();
    } else {
      this.entries.delete(id);
      this.loading.delete(id);
    }
  }

  /** Reads a key once for all the checks that need it at the same time, and caches it. */
  private load(id: string): Promise<StoredKey | null> {
    const pending = this.loading.get(id);
    if (pending) return pending;
    const epoch = this.epoch;
    const p = loadKey(this.opts.prisma, id)
      .then((key) => {
        // Unknown ids are not cached: anyone can make up new ones.
        if (key && epoch === this.epoch && this.listening) {
          if (key.principal) deepFreeze(key.principal);
          this.entries.delete(id);
          this.entries.set(id, { key, until: Date.now() + this.opts.ttlMs });
          if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
        }
        return key;
      })
      .finally(() => {
        if (this.loading.get(id) === p) this.loading.delete(id);
      });
    this.loading.set(id, p);
    return p;
  }

  private stopCaching(): void {
    this.listening = false;
    this.forget();
  }
}

function deepFreeze(p: Principal): void {
  if (p.machines) Object.freeze(p.machines);
  Object.freeze(p.mayWriteFor);
  Object.freeze(p);
}
