import { setup } from 'xstate';

/**
 * A merchant's marketing campaign: a promotion that can be paused and resumed.
 *
 * `pause` and `resume` form a cycle (LIVE -pause-> PAUSED -resume-> LIVE), so no rank can
 * say which of two pauses is the newer one. The campaign is therefore ordered by the
 * producer's `version` (`meta.ordering: 'version'`): every event must carry one, and the
 * higher version wins whatever its type. Ranks only break ties between events sent with
 * the same version.
 */
export const campaignMachine = setup({
  types: {
    events: {} as
      | { type: 'create' }
      | { type: 'launch' }
      | { type: 'pause' }
      | { type: 'resume' }
      | { type: 'end' }
      | { type: 'cancel' },
  },
}).createMachine({
  id: 'campaign',
  initial: 'DRAFT',
  meta: { creationEvent: 'create', collection: 'campaigns', ordering: 'version' },
  states: {
    DRAFT: { on: { launch: 'LIVE', cancel: 'CANCELLED' } },
    LIVE: { on: { pause: 'PAUSED', end: 'ENDED', cancel: 'CANCELLED' } },
    PAUSED: { on: { resume: 'LIVE', end: 'ENDED', cancel: 'CANCELLED' } },
    ENDED: { type: 'final' },
    CANCELLED: { type: 'final' },
  },
});
