/** How a machine orders its events: by rank derived from the definition, or by producer version. */
export type Ordering = 'rank' | 'version';

/** One finding of the machine analysis; `error` makes the machine unusable. */
export interface Diagnostic {
  level: 'error' | 'warning' | 'info';
  /** Stable identifier, e.g. `cycle`, `ambiguous_target`, `unsupported_parallel`. */
  code: string;
  message: string;
  state?: string;
  event?: string;
  /** The event types that form a cycle, for `code: 'cycle'`. */
  cycle?: string[];
}

export interface EventRank {
  type: string;
  /** 1-based; unique within the machine. */
  rank: number;
  /** The one state this event leads to. */
  target: string;
  /** The states in which the machine accepts this event. */
  from: string[];
}

export interface MachineAnalysis {
  name: string;
  /** REST collection under `/v1/`, e.g. `promotions`. */
  collection: string;
  ordering: Ordering;
  initial: string;
  /** The event that enters the initial state, if the machine declares one. */
  creationEvent: string | undefined;
  states: string[];
  finalStates: string[];
  /** Sorted by rank. */
  events: EventRank[];
  /** For each state, the states reachable from it in one or more transitions. */
  reachable: Record<string, string[]>;
  diagnostics: Diagnostic[];
  ok: boolean;
}
