import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { PromosyncError } from '../domain/index.ts';
import type { Principal, Role } from '../store/index.ts';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

/** Looks a presented key up; null when it is unknown or revoked. */
export type KeyVerifier = (key: string) => Promise<Principal | null>;

/** The principal of an `Authorization` header, if it carries a live key of one of `roles`; throws otherwise. */
export async function principalFor(
  verify: KeyVerifier,
  header: string | undefined,
  roles: readonly Role[],
): Promise<Principal> {
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) {
    throw new PromosyncError('unauthorized', 'send an API key as "Authorization: Bearer <key>"');
  }
  const principal = await verify(m[1]!);
  if (!principal) throw new PromosyncError('unauthorized', 'the API key is unknown or revoked');
  if (!roles.includes(principal.role)) {
    throw new PromosyncError(
      'forbidden',
      `this endpoint needs a key with role ${roles.join(' or ')}, not ${principal.role}`,
    );
  }
  return principal;
}

/** Requires `Authorization: Bearer <key>` of one of `roles`. */
export function authenticate(verify: KeyVerifier, roles: readonly Role[]): RequestHandler {
  return async (req: Request, _res: Response, next: NextFunction) => {
    req.principal = await principalFor(verify, req.headers.authorization, roles);
    next();
  };
}

/** The principal set by {@link authenticate}. */
export function principalOf(req: Request): Principal {
  if (!req.principal) throw new PromosyncError('unauthorized', 'not authenticated');
  return req.principal;
}

/** Whether a principal may see or push a machine's entities (producer and checkout keys are scoped). */
export function mayUseMachine(p: Principal, machine: string): boolean {
  return (
    (p.role !== 'producer' && p.role !== 'checkout') || p.machines === null || p.machines.includes(machine)
  );
}
