import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An HTTP server around the app (an Express app or any request listener), with `start()`/`close()`. */
export class ApiServer {
  private server: Server | undefined;

  constructor(private readonly app: RequestListener) {}

  /** Listens and resolves with the bound port (pass 0 for any free port). */
  async start(port: number, host: string): Promise<number> {
    const server = createServer(this.app);
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 150_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return (server.address() as AddressInfo).port;
  }

  /** Stops accepting connections, lets in-flight requests finish, then closes idle ones. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const done = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const force = setTimeout(() => server.closeAllConnections(), 10_000).unref();
    await done;
    clearTimeout(force);
  }
}
