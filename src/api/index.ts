// The REST API: the Express app and its server.
export { createApp, type AppDeps } from './app.ts';
export { ApiServer } from './server.ts';
export { ChangeHub, type ChangeHubOptions } from './change-hub.ts';
export type { KeyVerifier } from './auth.ts';
export { createOpsApp } from './ops-app.ts';
