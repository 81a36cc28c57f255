import type { AnyStateMachine, StateNode } from 'xstate';
import type { Diagnostic } from './analysis-types.ts';

/** One edge of the flattened state graph; `from` is null for the creation event. */
export interface Transition {
  from: string | null;
  event: string;
  to: string;
}

export interface MachineGraph {
  initial: string;
  /** Leaf states, named by their dotted path (`ACTIVATED` or `ACTIVE.running`), in definition order. */
  states: string[];
  finalStates: string[];
  transitions: Transition[];
  /** Event types in order of first appearance: the deterministic tie-break. */
  eventOrder: string[];
}

type AnyNode = StateNode<any, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const nameOf = (node: AnyNode): string => node.path.join('.');

/** The leaf a transition into `node` ends in (compound states enter their initial child). */
function leafOf(node: AnyNode): AnyNode {
  let n = node;
  while (n.type === 'compound') {
    const target = n.initial.target[0];
    if (!target) break;
    n = target;
  }
  return n;
}

/**
 * Flattens an XState machine into leaf states and labelled edges, reporting every construct
 * the ranking cannot handle (parallel and history states, wildcards, `after`, `always`,
 * multi-target and targetless transitions, guarded alternatives that disagree) with the state named.
 */
export function machineGraph(
  machine: AnyStateMachine,
  creationEvent: string | undefined,
  diagnostics: Diagnostic[],
): MachineGraph {
  const leaves: AnyNode[] = [];
  const walk = (node: AnyNode): void => {
    const where = nameOf(node) || '(root)';
    if (node.type === 'parallel') {
      diagnostics.push({
        level: 'error',
        code: 'unsupported_parallel',
        state: where,
        message: `state ${where} is a parallel state: an entity must be in exactly one state`,
      });
    }
    if (node.type === 'history') {
      diagnostics.push({
        level: 'error',
        code: 'unsupported_history',
        state: where,
        message: `state ${where} is a history state, which the ranking cannot follow`,
      });
      return;
    }
    if (node.after.length > 0) {
      diagnostics.push({
        level: 'error',
        code: 'unsupported_after',
        state: where,
        message: `state ${where} has delayed (after) transitions: time is not an event the producer sends`,
      });
    }
    if (node.always && node.always.length > 0) {
      diagnostics.push({
        level: 'error',
        code: 'unsupported_always',
        state: where,
        message: `state ${where} has eventless (always) transitions, which no event ranks`,
      });
    }
    const children = Object.values(node.states) as AnyNode[];
    if (children.length === 0 && node.parent) leaves.push(node);
    for (const child of children) walk(child);
  };
  walk(machine.root);

  const eventOrder: string[] = [];
  const noteEvent = (e: string): void => {
    if (!eventOrder.includes(e)) eventOrder.push(e);
  };
  const transitions: Transition[] = [];
  const initial = nameOf(leafOf(machine.root));
  if (creationEvent !== undefined) {
    noteEvent(creationEvent);
    transitions.push({ from: null, event: creationEvent, to: initial });
  }

  const leafNames = new Set(leaves.map(nameOf));
  for (const leaf of leaves) {
    const handled = new Set<string>();
    // Inner states shadow their ancestors' handlers for the same event, as in XState.
    for (let node: AnyNode | undefined = leaf; node; node = node.parent) {
      const where = nameOf(node) || '(root)';
      for (const [event, defs] of node.transitions) {
        if (handled.has(event)) continue;
        handled.add(event);
        // Delayed transitions are reported once, as `after`, where they are declared.
        if (event.startsWith('xstate.after')) continue;
        if (event === '*' || event.endsWith('.*')) {
          diagnostics.push({
            level: 'error',
            code: 'unsupported_wildcard',
            state: where,
            event,
            message: `state ${where} handles the wildcard event "${event}": every event needs its own rank`,
          });
          continue;
        }
        if (event.startsWith('xstate.') || event.startsWith('done.') || event.startsWith('error.')) {
          diagnostics.push({
            level: 'error',
            code: 'unsupported_internal_event',
            state: where,
            event,
            message: `state ${where} handles the internal event "${event}", which producers cannot send`,
          });
          continue;
        }
        const ends = new Set<string>();
        for (const def of defs) {
          if (!def.target || def.target.length === 0) {
            diagnostics.push({
              level: 'error',
              code: 'unsupported_targetless',
              state: where,
              event,
              message: `state ${where} handles "${event}" without a target: every ranked event must change the state`,
            });
          } else if (def.target.length > 1) {
            diagnostics.push({
              level: 'error',
              code: 'unsupported_multi_target',
              state: where,
              event,
              message: `state ${where} sends "${event}" to several states at once`,
            });
          } else ends.add(nameOf(leafOf(def.target[0]!)));
        }
        if (ends.size > 1) {
          diagnostics.push({
            level: 'error',
            code: 'unsupported_guarded_alternatives',
            state: where,
            event,
            message:
              `state ${where} has guarded alternatives for "${event}" with different targets ` +
              `(${[...ends].join(', ')}): the event alone must determine the next state`,
          });
          continue;
        }
        const to = [...ends][0];
        if (to === undefined) continue;
        if (!leafNames.has(to)) {
          diagnostics.push({
            level: 'error',
            code: 'unsupported_target',
            state: where,
            event,
            message: `state ${where} sends "${event}" to ${to}, a history or parallel state that no single status can stand for`,
          });
          continue;
        }
        noteEvent(event);
        transitions.push({ from: nameOf(leaf), event, to });
      }
    }
  }

  // A handler on a parent state is seen once per child leaf: report each finding once.
  const seenDiagnostics = new Set<string>();
  for (let i = diagnostics.length - 1; i >= 0; i--) {
    const d = diagnostics[i]!;
    const id = `${d.code}|${d.state ?? ''}|${d.event ?? ''}`;
    if (seenDiagnostics.has(id)) diagnostics.splice(i, 1);
    seenDiagnostics.add(id);
  }

  return {
    initial,
    states: leaves.map(nameOf),
    finalStates: leaves.filter((l) => l.type === 'final').map(nameOf),
    transitions,
    eventOrder,
  };
}
