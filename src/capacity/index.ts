// Promotion capacity: group-committed admissions and the sweeper of expired holds.
export * from './admitter.ts';
export * from './service.ts';
export * from './sweeper.ts';
