import { Router } from 'express';
import { PromosyncError } from '../../domain/index.ts';
import type { MachineInfo, MachineRegistry } from '../../domain/index.ts';
import { authenticate, type KeyVerifier } from '../auth.ts';

/** The machine as the API shows it: definition summary, ranks and diagnostics. */
export function machineView(info: MachineInfo): Record<string, unknown> {
  const a = info.analysis;
  return {
    name: a.name,
    collection: a.collection,
    ordering: a.ordering,
    initial: a.initial,
    creationEvent: a.creationEvent ?? null,
    states: a.states,
    finalStates: a.finalStates,
    events: a.events,
    diagnostics: a.diagnostics,
    ok: a.ok,
  };
}

/** `GET /v1/machines` and `GET /v1/machines/:name`. */
export function machinesRouter(deps: { registry: MachineRegistry; verify: KeyVerifier }): Router {
  const router = Router();
  const auth = authenticate(deps.verify, ['merchant', 'producer', 'admin']);
  router.get('/v1/machines', auth, (_req, res) => {
    res.json({ items: deps.registry.list().map(machineView) });
  });
  router.get('/v1/machines/:name', auth, (req, res) => {
    const info = deps.registry.get(String(req.params.name));
    if (!info) throw new PromosyncError('not_found', `no machine ${String(req.params.name)}`);
    res.json(machineView(info));
  });
  return router;
}
