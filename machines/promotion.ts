import { setup } from 'xstate';

/**
 * A merchant's promotion. `create` is the producer's creation event: it enters the
 * initial state, so a history always starts with it (it may still be lost in transit).
 *
 * `complete` and `delete` never meet in a valid history, so the machine alone does not
 * order them; `meta.ranks` puts `delete` above `complete` so a deleted promotion stays
 * deleted (the tombstone) whatever arrives late.
 */
export const promotionMachine = setup({
  types: {
    events: {} as { type: 'create' } | { type: 'activate' } | { type: 'complete' } | { type: 'delete' },
  },
}).createMachine({
  id: 'promotion',
  initial: 'CREATED',
  meta: { creationEvent: 'create', collection: 'promotions', ranks: { complete: 1, delete: 2 } },
  states: {
    CREATED: { on: { activate: 'ACTIVATED', delete: 'DELETED' } },
    ACTIVATED: { on: { complete: 'COMPLETED', delete: 'DELETED' } },
    COMPLETED: { type: 'final' },
    DELETED: { type: 'final' },
  },
});
