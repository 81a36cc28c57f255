import express, { type Express } from 'express';
import type { Logger } from 'pino';
import { PromosyncError } from '../domain/index.ts';
import type { Metrics } from '../observability/index.ts';
import { problemHandler, problemReporter } from './problem.ts';
import { healthRouter, type Probe } from './routes/health.ts';

/**
 * The operations endpoints alone (`/healthz`, `/readyz`, `/metrics`), for processes that
 * serve no API: a worker's outcome counters and apply timings live in the worker.
 */
export function createOpsApp(deps: {
  probes: Record<string, Probe>;
  metrics: Metrics;
  logger: Logger;
}): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(healthRouter({ probes: deps.probes, metrics: deps.metrics }));
  app.use(() => {
    throw new PromosyncError('not_found', 'no such endpoint');
  });
  app.use(problemHandler(problemReporter(deps.logger)));
  return app;
}
