// The REST API: the Express app, the checkout path in front of it, and their server.
export { createApp, createListener, type AppDeps } from './app.ts';
export { ApiServer } from './server.ts';
export { ChangeHub, type ChangeHubOptions } from './change-hub.ts';
export type { KeyVerifier } from './auth.ts';
export { createOpsApp } from './ops-app.ts';
