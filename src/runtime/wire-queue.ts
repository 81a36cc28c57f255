import type { PGlite } from '@electric-sql/pglite';

const PARSE = 0x50; // 'P'
const CLOSE = 0x43; // 'C'
const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'
const PARSE_COMPLETE = Uint8Array.of(0x31, 0, 0, 0, 4);
const CLOSE_COMPLETE = Uint8Array.of(0x33, 0, 0, 0, 4);
const SYNC_MESSAGE = Uint8Array.of(SYNC, 0, 0, 0, 4);

interface Item {
  handlerId: number;
  message?: Uint8Array;
  onData?: (data: Uint8Array) => void;
  task?: () => Promise<void>;
  resolve: (bytes: number) => void;
  reject: (err: unknown) => void;
}

/** Reads a NUL-terminated string at `at`; returns it and the offset after the NUL. */
function cstring(buf: Uint8Array, at: number): [string, number] {
  const end = buf.indexOf(0, at);
  const stop = end === -1 ? buf.length : end;
  return [Buffer.from(buf.subarray(at, stop)).toString('utf8'), stop + 1];
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/**
 * Lets several Postgres wire connections share PGlite's single backend safely. It plays the
 * part of pglite-socket's query queue (same three methods, given to `PGLiteSocketHandler`),
 * with three differences that the apply statement and connection pools need:
 * - a connection keeps the backend from its first message until the end of its message group
 *   (a simple Query, or the Sync closing an extended-protocol sequence), and for the whole of
 *   an explicit transaction, so unnamed statements, portals and error recovery of two
 *   connections never mix;
 * - named prepared statements live in the shared backend, so a connection that prepares a
 *   name another connection already prepared with the same text is answered ParseComplete
 *   without a second Parse (which would fail with "already exists");
 * - when a connection goes away its transaction is rolled back, its half-sent group is
 *   closed with a Sync, and the statements only it prepared are deallocated, so a pool that
 *   reconnects can prepare them again.
 */
export class WireQueue {
  private readonly items: Item[] = [];
  private processing = false;
  /** The connection holding the backend, if any. */
  private owner: number | null = null;
  /** Named statements in the backend: their text and the connections that prepared them. */
  private readonly statements = new Map<string, { text: string; holders: Set<number> }>();

  constructor(private readonly db: PGlite) {}

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.items.push({ handlerId, message, onData, resolve, reject });
      void this.process();
    });
  }

  clearQueueForHandler(handlerId: number): void {
    for (let i = this.items.length - 1; i >= 0; i--) {
      const item = this.items[i]!;
      if (item.handlerId === handlerId && item.message) {
        this.items.splice(i, 1);
        item.reject(new Error('connection closed'));
      }
    }
  }

  /** Called when a connection detaches: undo what it left in the shared backend. */
  clearTransactionIfNeeded(handlerId: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.items.push({
        handlerId,
        task: () => this.cleanup(handlerId),
        resolve: () => resolve(),
        reject,
      });
      void this.process();
    });
  }

  private async cleanup(handlerId: number): Promise<void> {
    if (this.owner === handlerId) {
      if (this.db.isInTransaction()) await this.db.exec('ROLLBACK');
      else
        await this.db.runExclusive(() =>
          this.db.execProtocolRawStream(SYNC_MESSAGE, { onRawData: () => {} }),
        );
    }
    for (const [name, s] of this.statements) {
      if (!s.holders.delete(handlerId) || s.holders.size > 0) continue;
      this.statements.delete(name);
      await this.db.exec(`DEALLOCATE ${quoteIdent(name)}`).catch(() => {});
    }
  }

  /** The next item that may run: the owner's, or anyone's when the backend is free. */
  private next(): Item | undefined {
    const i =
      this.owner === null
        ? this.items.length > 0
          ? 0
          : -1
        : this.items.findIndex((x) => x.handlerId === this.owner);
    return i === -1 ? undefined : this.items.splice(i, 1)[0];
  }

  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      for (let item = this.next(); item; item = this.next()) {
        try {
          if (item.task) {
            await item.task();
            if (this.owner === item.handlerId) this.owner = null;
            item.resolve(0);
          } else {
            item.resolve(await this.run(item.handlerId, item.message!, item.onData!));
          }
        } catch (err) {
          item.reject(err);
        }
      }
    } finally {
      this.processing = false;
    }
  }

  private async run(
    handlerId: number,
    message: Uint8Array,
    onData: (data: Uint8Array) => void,
  ): Promise<number> {
    const type = message[0];
    if (type === TERMINATE) return 0; // the socket closes next; cleanup happens on detach
    this.owner = handlerId;
    let name = '';
    let text = '';
    if (type === PARSE) {
      let at: number;
      [name, at] = cstring(message, 5);
      [text] = cstring(message, at);
      const known = name === '' ? undefined : this.statements.get(name);
      if (known && known.text === text) {
        known.holders.add(handlerId);
        onData(PARSE_COMPLETE);
        return PARSE_COMPLETE.length;
      }
    } else if (type === CLOSE && message[5] === SYNC) {
      [name] = cstring(message, 6);
      const known = this.statements.get(name);
      if (known?.holders.has(handlerId) && known.holders.size > 1) {
        known.holders.delete(handlerId);
        onData(CLOSE_COMPLETE);
        return CLOSE_COMPLETE.length;
      }
      this.statements.delete(name);
    }
    let bytes = 0;
    let first: number | undefined;
    await this.db.runExclusive(() =>
      this.db.execProtocolRawStream(message, {
        onRawData: (data) => {
          first ??= data[0];
          bytes += data.length;
          onData(data);
        },
      }),
    );
    if (type === PARSE && name !== '' && first === PARSE_COMPLETE[0]) {
      this.statements.set(name, { text, holders: new Set([handlerId]) });
    }
    // A startup message (no type byte) or the end of a group frees the backend, unless a
    // transaction is open.
    const endsGroup = type === QUERY || type === SYNC || type === 0;
    if (endsGroup && !this.db.isInTransaction()) this.owner = null;
    return bytes;
  }
}
