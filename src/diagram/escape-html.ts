const ENTITY: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Escapes text for HTML or SVG, in element content and in quoted attribute values alike: the
 * diagram, the diagram page and the API documentation page all write names that come from
 * machine definitions and the OpenAPI document.
 */
export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ENTITY[c]!);
