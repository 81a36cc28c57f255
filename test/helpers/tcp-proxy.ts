import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

/**
 * A TCP proxy the test controls, in front of a server (e.g. Postgres on 127.0.0.1:5432):
 * `down()` cuts every open connection and refuses new ones (the port stops listening, so
 * clients get ECONNREFUSED), `up()` listens again on the same port.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private listenPort = 0;
  /** Connections accepted so far. */
  accepted = 0;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly host = '127.0.0.1',
  ) {}

  get port(): number {
    return this.listenPort;
  }

  get isUp(): boolean {
    return this.server !== undefined;
  }

  /** Starts listening (on `port`, or any free port the first time). */
  async up(port = this.listenPort): Promise<number> {
    if (this.server) return this.listenPort;
    const server = createServer((client) => this.pipe(client));
    server.listen(port, this.host);
    await once(server, 'listening');
    this.server = server;
    this.listenPort = (server.address() as { port: number }).port;
    return this.listenPort;
  }

  private pipe(client: Socket): void {
    this.accepted += 1;
    const upstream = connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Drops every connection and stops listening. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    // Stop accepting first, so no connection slips in after the sweep below.
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  async close(): Promise<void> {
    await this.down();
  }
}
