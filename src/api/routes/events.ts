import express, { Router, type NextFunction, type Request, type Response } from 'express';
import { splitBody } from '../../domain/index.ts';
import { PromosyncError } from '../../domain/index.ts';
import type { MachineRegistry } from '../../domain/index.ts';
import { WaitTimeoutError, type EventQueue } from '../../queue/index.ts';
import type { Metrics } from '../../observability/index.ts';
import { authenticate, mayUseMachine, principalOf, type KeyVerifier } from '../auth.ts';
import { parseQuery } from '../validate.ts';
import { postQuery } from '../schemas.ts';

function contentType(req: Request, _res: Response, next: NextFunction): void {
  if (!req.is('application/json') && !req.is('application/*+json')) {
    throw new PromosyncError('unsupported_media_type', 'send the events as application/json', {
      problems: [
        {
          path: 'content-type',
          message: `expected application/json, got ${req.headers['content-type'] ?? 'nothing'}`,
        },
      ],
    });
  }
  next();
}

/** `POST /v1/events`: validate, check the producer's scope, queue durably, optionally wait. */
export function eventsRouter(deps: {
  registry: MachineRegistry;
  queue: EventQueue;
  verify: KeyVerifier;
  metrics?: Metrics;
  /** Largest request body. @defaultValue '17mb' (1000 events of 16 KiB data) */
  bodyLimit?: string;
}): Router {
  const router = Router();
  // The body is read only once the key is known: anonymous clients cost no parsing.
  const json = express.json({ limit: deps.bodyLimit ?? '17mb', type: () => true, strict: false });
  router.post(
    '/v1/events',
    authenticate(deps.verify, ['producer', 'admin']),
    contentType,
    json,
    async (req, res) => {
      const query = parseQuery(postQuery, req.query);
      const p = principalOf(req);
      const source = p.role === 'producer' ? p.source! : 'admin';
      const { raw, indexed } = splitBody(req.body);
      const { inputs: events } = deps.registry.validate(raw, source, indexed);
      const denied = [...new Set(events.map((e) => e.machine))].filter((m) => !mayUseMachine(p, m));
      if (denied.length > 0) {
        throw new PromosyncError('forbidden', `this key may not push events of machine ${denied.join(', ')}`);
      }
      const wait = query.wait === 'true';
      const jobs = await deps.queue.enqueue(events, source, wait, p.mayWriteFor);
      if (deps.metrics) {
        const perMachine = new Map<string, number>();
        for (const e of events) perMachine.set(e.machine, (perMachine.get(e.machine) ?? 0) + 1);
        for (const [machine, n] of perMachine) deps.metrics.countReceived(machine, source, n);
      }
      // `jobId` is the first job's: the only one unless the queue is partitioned.
      const accepted = { accepted: events.length, jobId: jobs[0]!.jobId, jobs };
      if (!wait) {
        res.status(202).json(accepted);
        return;
      }
      try {
        const results = await deps.queue.waitForAll(jobs, events, query.timeoutMs ?? 30_000);
        res.status(200).json({ ...accepted, results });
      } catch (err) {
        if (err instanceof WaitTimeoutError) {
          // Accepted and queued: it will be applied, we just stopped waiting.
          res.status(202).json({ ...accepted, pending: true });
          return;
        }
        throw err;
      }
    },
  );
  return router;
}
