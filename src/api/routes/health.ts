import { Router } from 'express';
import type { Metrics } from '../../observability/index.ts';

/** A dependency the readiness probe checks; resolves when healthy. */
export type Probe = () => Promise<void>;

const within = <T>(p: Promise<T>, ms: number): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref(),
    ),
  ]);

/** `/healthz` (the process runs), `/readyz` (its dependencies answer) and `/metrics`. */
export function healthRouter(deps: {
  probes: Record<string, Probe>;
  metrics?: Metrics;
  beforeScrape?: () => Promise<void>;
}): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const checks: Record<string, { ok: boolean; error?: string }> = {};
    await Promise.all(
      Object.entries(deps.probes).map(async ([name, probe]) => {
        try {
          await within(probe(), 2000);
          checks[name] = { ok: true };
        } catch (err) {
          checks[name] = { ok: false, error: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
    const ok = Object.values(checks).every((c) => c.ok);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable', checks });
  });
  if (deps.metrics) {
    const metrics = deps.metrics;
    router.get('/metrics', async (_req, res) => {
      await deps.beforeScrape?.().catch(() => {});
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }
  return router;
}
