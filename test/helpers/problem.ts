import { expect } from 'vitest';
import type { Harness } from './harness.ts';

/** One entry of a problem document's `errors`: what is wrong where. */
export interface FieldProblem {
  index?: number;
  path: string;
  message: string;
}

/** The problem document (application/problem+json) the API answers a refused request with. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  instance: string;
  errors?: FieldProblem[];
}

/**
 * Sends a request that must be refused with `status` and `code` in a problem document and
 * must change nothing the harness counts (jobs, entity rows, log entries, event keys).
 */
export async function expectRefused(
  h: Harness,
  send: () => Promise<Response>,
  status: number,
  code: string,
): Promise<{ res: Response; problem: Problem }> {
  const before = await h.state();
  const res = await send();
  const problem = (await res.json()) as Problem;
  expect({
    status: res.status,
    contentType: res.headers.get('content-type')?.split(';')[0],
    code: problem.code,
  }).toEqual({ status, contentType: 'application/problem+json', code });
  expect(await h.state()).toEqual(before);
  return { res, problem };
}
