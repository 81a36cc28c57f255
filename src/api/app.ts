import type { RequestListener } from 'node:http';
import express, { type Express } from 'express';
import type { Logger } from 'pino';
import { PromosyncError } from '../domain/index.ts';
import type { MachineRegistry } from '../domain/index.ts';
import type { EventQueue } from '../queue/index.ts';
import type { PrismaClient } from '../store/index.ts';
import type { Metrics } from '../observability/index.ts';
import type { CapacityService } from '../capacity/index.ts';
import type { KeyVerifier } from './auth.ts';
import { checkoutPath } from './checkout-path.ts';
import { problemHandler, problemReporter, type ProblemReporter } from './problem.ts';
import { rateCheck, rateLimit, type RateLimitOptions } from './rate-limit.ts';
import { SECURITY_HEADERS } from './security-headers.ts';
import { eventsRouter } from './routes/events.ts';
import { entitiesRouter } from './routes/entities.ts';
import { watchRouter } from './routes/watch.ts';
import type { ChangeHub } from './change-hub.ts';
import { capacityRouter } from './routes/capacity.ts';
import { machinesRouter } from './routes/machines.ts';
import { healthRouter, type Probe } from './routes/health.ts';
import { apiDocsRouter } from './openapi.ts';
import { dashboardRouter } from './dashboard.ts';

export interface AppDeps {
  registry: MachineRegistry;
  queue: EventQueue;
  prisma: PrismaClient;
  verify: KeyVerifier;
  logger: Logger;
  metrics?: Metrics;
  probes: Record<string, Probe>;
  /** Largest request body. @defaultValue '17mb' (1000 events of 16 KiB data) */
  bodyLimit?: string;
  /** Per-key rate limit of the `/v1` endpoints; none when absent. */
  rateLimit?: RateLimitOptions;
  /**
   * Checked before events are queued (after the key and the body): rejects when accepting
   * them now could lose them, e.g. a Redis that evicts keys.
   */
  acceptance?: () => Promise<void>;
  /** Serves `GET /v1/{collection}/watch`; the endpoint is absent without it. */
  changes?: ChangeHub;
  /** Promotion capacity (limits and reservations); its endpoints exist only when given. */
  capacity?: CapacityService;
}

/** `queue` whose enqueue first runs `acceptance`, which throws to refuse. */
function guarded(queue: EventQueue, acceptance: () => Promise<void>): EventQueue {
  const enqueue: EventQueue['enqueue'] = async (...args) => {
    await acceptance();
    return queue.enqueue(...args);
  };
  // Everything else runs on the queue itself, so state it keeps (and closes) stays there.
  return new Proxy(queue, {
    get(target, prop) {
      if (prop === 'enqueue') return enqueue;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** What the Express app and the checkout path in front of it share. */
interface Parts {
  /** The dependencies as the routes use them. */
  routed: AppDeps;
  report: ProblemReporter;
  rateCheck: ReturnType<typeof rateCheck>;
}

function parts(deps: AppDeps): Parts {
  // A key lookup that fails (the database is away) is "try again later", not a server bug:
  // 503 `unavailable`, which producers retry, instead of 500.
  const routed: AppDeps = {
    ...deps,
    queue: deps.acceptance ? guarded(deps.queue, deps.acceptance) : deps.queue,
    verify: async (key) => {
      try {
        return await deps.verify(key);
      } catch (err) {
        throw new PromosyncError('unavailable', 'cannot check the API key right now; retry later', {
          cause: err,
        });
      }
    },
  };
  return {
    routed,
    report: problemReporter(deps.logger),
    rateCheck: deps.rateLimit ? rateCheck(deps.rateLimit) : null,
  };
}

/**
 * The API's request listener: the checkout path (checkout-path.ts) takes the reservations it
 * can answer, the Express app everything else.
 */
export function createListener(deps: AppDeps): RequestListener {
  const shared = parts(deps);
  const app = buildApp(deps, shared);
  const { capacity } = shared.routed;
  if (!capacity) return app;
  const checkout = checkoutPath({
    capacity,
    verify: shared.routed.verify,
    report: shared.report,
    rateCheck: shared.rateCheck,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  });
  return (req, res) => {
    if (!checkout(req, res)) app(req, res);
  };
}

/** The Express application: routers only parse, call one function and map the result. */
export function createApp(deps: AppDeps): Express {
  return buildApp(deps, parts(deps));
}

function buildApp(deps: AppDeps, parts: Parts): Express {
  const { routed } = parts;
  const app = express();
  app.disable('x-powered-by');
  // Every answer is Cache-Control: no-store, so an ETag would never be used; Express would
  // otherwise hash every response body to make one.
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use((_req, res, next) => {
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    next();
  });
  if (deps.metrics) {
    const counter = deps.metrics.httpRequests;
    app.use((req, res, next) => {
      res.on('finish', () => {
        const route = (req.route as { path?: string } | undefined)?.path ?? 'unmatched';
        counter.inc({ method: req.method, route, status: String(res.statusCode) });
      });
      next();
    });
  }
  // Before the body is read: a key over its limit costs neither parsing nor a key lookup.
  if (parts.rateCheck) app.use('/v1', rateLimit(parts.rateCheck));
  app.use(
    healthRouter({
      probes: deps.probes,
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
      beforeScrape: async () => {
        if (!deps.metrics) return;
        const counts = await deps.queue.counts();
        for (const [queue, byState] of Object.entries(counts)) {
          for (const [state, n] of Object.entries(byState)) deps.metrics.queueDepth.set({ queue, state }, n);
        }
      },
    }),
  );
  app.use(eventsRouter(routed));
  app.use(machinesRouter(routed));
  // Before the entities router, whose /v1/:collection/:id would take "watch" for an id.
  if (deps.changes) app.use(watchRouter({ ...routed, changes: deps.changes }));
  const { capacity } = routed;
  if (capacity) app.use(capacityRouter({ ...routed, capacity }));
  app.use(
    entitiesRouter({
      ...routed,
      ...(capacity
        ? {
            embed: async (machine: string, id: string) => {
              const summary = machine === 'promotion' ? await capacity.summary(id) : null;
              return summary ? { capacity: summary } : {};
            },
          }
        : {}),
    }),
  );
  app.use(apiDocsRouter(routed));
  app.use(dashboardRouter({ queues: deps.queue.queues, verify: routed.verify }));
  app.use(() => {
    throw new PromosyncError('not_found', 'no such endpoint');
  });
  app.use(problemHandler(parts.report));
  return app;
}
