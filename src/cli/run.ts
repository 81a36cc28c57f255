import type { Service } from '../service.ts';

/** Keeps a service running until SIGTERM or SIGINT, then closes it gracefully. */
export function runUntilSignal(service: Service): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      service.logger.info({ signal }, 'shutting down');
      const hard = setTimeout(() => {
        service.logger.error('shutdown took too long, exiting');
        process.exit(1);
      }, 30_000).unref();
      service
        .close()
        .then(() => {
          clearTimeout(hard);
          resolve();
        })
        .catch((err) => {
          service.logger.error({ err }, 'shutdown failed');
          process.exit(1);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
