// Pictures of a machine for people: the SVG diagram (API and `machines diagram`) and the replay
// of an entity's applied events that `promosync inspect` shows in the Stately inspector.
// Built on the domain's analysis; nothing in the core depends on it.
export { escapeHtml } from './escape-html.ts';
export { renderMachineSvg } from './svg.ts';
export * from './replay.ts';
