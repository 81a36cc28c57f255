export * from './metrics.ts';
export * from './capacity-metrics.ts';
