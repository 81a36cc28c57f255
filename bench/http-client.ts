// A keep-alive HTTP/1.1 client for load generation: one socket per connection, one request in
// flight on it, the request written as one string and the answer read just far enough to know
// its status and where it ends. node's http.request costs the load generator about as much CPU
// per request as promosync's checkout path costs the server; on a two-core machine that would
// measure the client. Answers must carry a Content-Length or be chunked (every promosync answer does).
import net from 'node:net';

export interface Answer {
  status: number;
  /** From writing the request to the end of the answer, in ms. */
  ms: number;
}

/** One keep-alive connection; `post` waits for the previous answer before it sends. */
export class Connection {
  private readonly socket: net.Socket;
  private buffer = '';
  private pending: { resolve: (a: Answer) => void; reject: (e: Error) => void; t0: number } | null = null;
  /** Settles once the connection is open (or failed to open). */
  readonly ready: Promise<void>;
  private closedWith: Error | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly headers: Record<string, string>,
  ) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.setEncoding('latin1');
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (err: Error) => {
      this.closedWith = err;
      const p = this.pending;
      this.pending = null;
      p?.reject(err);
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('connection closed')));
  }

  async post(path: string, body: string): Promise<Answer> {
    await this.ready;
    if (this.closedWith) throw this.closedWith;
    if (this.pending) throw new Error('one request at a time per connection');
    let head = `POST ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
    for (const [k, v] of Object.entries(this.headers)) head += `${k}: ${v}\r\n`;
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, t0: performance.now() };
      this.socket.write(`${head}\r\n${body}`);
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    const p = this.pending;
    if (!p) return;
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buffer.slice(0, end);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let total: number;
    if (length) total = end + 4 + Number(length[1]);
    else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const last = this.buffer.indexOf('\r\n0\r\n\r\n', end);
      if (last < 0) return;
      total = last + 7;
    } else total = end + 4;
    if (this.buffer.length < total) return;
    this.buffer = this.buffer.slice(total);
    this.pending = null;
    p.resolve({ status: Number(head.slice(9, 12)), ms: performance.now() - p.t0 });
  }

  get alive(): boolean {
    return this.closedWith === null;
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * Connections to one server, reused: at most `max` of them, opened as needed (or up front with
 * `open`); a request that finds all of them busy waits for one, as in a load generator with a
 * fixed number of connections.
 */
export class ConnectionPool {
  private readonly idle: Connection[] = [];
  private readonly all: Connection[] = [];
  private readonly waiting: Array<(c: Connection) => void> = [];

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly headers: Record<string, string>,
    private readonly max = Infinity,
  ) {}

  /** Opens connections until there are `n`, and waits until they are connected. */
  async open(n: number): Promise<void> {
    const opened: Connection[] = [];
    while (this.all.length < Math.min(n, this.max)) opened.push(this.connect());
    await Promise.all(opened.map((c) => c.ready));
    this.idle.push(...opened);
  }

  async post(path: string, body: string): Promise<Answer> {
    const c =
      this.idle.pop() ??
      (this.all.length < this.max
        ? this.connect()
        : await new Promise<Connection>((resolve) => this.waiting.push(resolve)));
    try {
      return await c.post(path, body);
    } finally {
      // A closed connection leaves the pool, so that it no longer counts against `max`.
      if (!c.alive) this.all.splice(this.all.indexOf(c), 1);
      const next = this.waiting.shift();
      if (next) next(c.alive ? c : this.connect());
      else if (c.alive) this.idle.push(c);
    }
  }

  private connect(): Connection {
    const c = new Connection(this.host, this.port, this.headers);
    this.all.push(c);
    return c;
  }

  close(): void {
    for (const c of this.all) c.close();
  }
}
