import type { ErrorCode } from '../domain/index.ts';

// The shape of the OpenAPI 3.1 document the API serves: built by openapi.ts, rendered as the
// documentation page by docs-page.ts. Types only, so both can import it without a cycle.

/** A JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1). */
export type JsonSchema = { [key: string]: unknown };

export interface Parameter {
  name: string;
  in: 'query' | 'path' | 'header';
  required: boolean;
  description?: string;
  schema: JsonSchema;
  example?: unknown;
}

export interface MediaType {
  schema: JsonSchema;
  example?: unknown;
  examples?: Record<string, { summary: string; value: unknown }>;
}

export interface ResponseObject {
  description: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
  content?: Record<string, MediaType>;
  /** On problem responses: the status and the error codes that answer with it. */
  'x-problem'?: { status: number; codes: Array<{ code: ErrorCode; meaning: string }> };
}

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  /** Empty: no authentication. Absent: the document's default (a Bearer key). */
  security?: Array<Record<string, string[]>>;
  /** Roles whose keys may call the operation. */
  'x-roles'?: string[];
  parameters?: Parameter[];
  requestBody?: { required: boolean; description?: string; content: Record<string, MediaType> };
  responses: Record<string, ResponseObject | { $ref: string }>;
}

export type Method = 'get' | 'post' | 'put';

export interface OpenApiDocument {
  openapi: string;
  info: {
    title: string;
    version: string;
    description: string;
    license: { name: string; identifier: string };
  };
  tags: Array<{ name: string; description: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    responses: Record<string, ResponseObject>;
    securitySchemes: Record<string, { type: 'http'; scheme: string; description: string }>;
  };
}
