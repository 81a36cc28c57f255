// The pure core: machine analysis, the event contract, ordering keys and the merge rule.
export * from './analysis-types.ts';
export * from './content-hash.ts';
export * from './capacity.ts';
export * from './errors.ts';
export * from './event-schema.ts';
export * from './field-limits.ts';
export * from './merge.ts';
export * from './ordering.ts';
export * from './ownership.ts';
export * from './ranking.ts';
export * from './rebuild.ts';
export * from './registry.ts';
export * from './sources.ts';
export * from './stored-fields.ts';
export { machineGraph, type MachineGraph, type Transition } from './machine-graph.ts';
