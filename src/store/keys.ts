import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isReservedSource, PromosyncError, reservedSourceMessage } from '../domain/index.ts';
import type { PrismaClient } from './db.ts';

export type Role = 'producer' | 'merchant' | 'admin' | 'checkout';

/** Who a request or command acts as. */
export interface Principal {
  keyId: string;
  role: Role;
  /** producer: the `source` its events are recorded under. */
  source: string | null;
  /** producer: the machines it may push to; checkout: the machines it may reserve on; null means all. */
  machines: string[] | null;
  /** producer: the owners besides its own source whose entities it may write (docs/api.md#ownership). */
  mayWriteFor: string[];
  /** merchant: the only merchantId whose entities it can read. */
  merchantId: string | null;
}

export interface NewKey {
  role: Role;
  source?: string;
  machines?: string[];
  mayWriteFor?: string[];
  merchantId?: string;
  label?: string;
}

export interface KeyRecord extends Principal {
  label: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

/** The secret's SHA-256, as stored; what every check compares in constant time. */
export const secretDigest = (secret: string): Buffer => hash('sha256', secret, 'buffer');

/**
 * The NOTIFY channel on which every change of an `api_key` row is announced with the key's id
 * (a trigger of migration `20261202001000_key_notify`): API processes drop that key from their
 * cache of verified keys.
 */
export const KEYS_CHANNEL = 'promosync_keys';

/** Key format: `psk_<id>_<secret>`; the id is public (listing, revoking), the secret is not stored. */
const KEY_PATTERN = /^psk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

/** The id and secret of a well-formed presented key, else null. */
export function parseKey(presented: string): { id: string; secret: string } | null {
  const m = KEY_PATTERN.exec(presented);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

/** What a key check needs of a stored key: its digest, and its principal unless it is revoked. */
export interface StoredKey {
  digest: Buffer;
  /** null for a revoked key. */
  principal: Principal | null;
}

/** The stored key with this id, or null when there is none. */
export async function loadKey(prisma: PrismaClient, id: string): Promise<StoredKey | null> {
  const row = await prisma.apiKey.findUnique({ where: { id } });
  if (!row) return null;
  return { digest: Buffer.from(row.secretHash), principal: row.revokedAt === null ? toRecord(row) : null };
}

const revokedHere = new Set<(id: string) => void>();

/**
 * Calls `fn` with the id of every key revoked through {@link revokeKey} in this process, right
 * after the revocation committed; returns the unsubscribe function. Other processes learn of it
 * through {@link KEYS_CHANNEL}.
 */
export function onKeyRevoked(fn: (id: string) => void): () => void {
  revokedHere.add(fn);
  return () => revokedHere.delete(fn);
}

/**
 * Creates a key and returns it in full: the only time the secret exists outside the caller.
 * @throws PromosyncError `invalid_request` for a producer source promosync reserves for itself.
 */
export async function createKey(
  prisma: PrismaClient,
  spec: NewKey,
): Promise<{ key: string; record: KeyRecord }> {
  if (spec.role === 'producer' && spec.source !== undefined && isReservedSource(spec.source)) {
    throw new PromosyncError('invalid_request', reservedSourceMessage(spec.source), {
      problems: [{ path: 'source', message: 'reserved' }],
    });
  }
  const id = randomBytes(8).toString('hex').slice(0, 12);
  const secret = randomBytes(32).toString('base64url');
  const row = await prisma.apiKey.create({
    data: {
      id,
      secretHash: new Uint8Array(secretDigest(secret)),
      role: spec.role,
      source: spec.role === 'producer' ? (spec.source ?? null) : null,
      machines: spec.role === 'producer' || spec.role === 'checkout' ? (spec.machines ?? []) : [],
      mayWriteFor: spec.role === 'producer' ? (spec.mayWriteFor ?? []) : [],
      merchantId: spec.role === 'merchant' ? (spec.merchantId ?? null) : null,
      label: spec.label ?? null,
    },
  });
  return { key: `psk_${id}_${secret}`, record: toRecord(row) };
}

function toRecord(row: {
  id: string;
  role: string;
  source: string | null;
  machines: string[];
  mayWriteFor: string[] | null;
  merchantId: string | null;
  label: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}): KeyRecord {
  return {
    keyId: row.id,
    role: row.role as Role,
    source: row.source,
    machines: row.machines.length === 0 ? null : row.machines,
    mayWriteFor: row.mayWriteFor ?? [],
    merchantId: row.merchantId,
    label: row.label,
    createdAt: row.createdAt,
    revokedAt: row.revokedAt,
  };
}

/**
 * The principal a presented key stands for, or null for an unknown, malformed or revoked
 * key. The secret's hash is compared in constant time.
 */
export async function verifyKey(prisma: PrismaClient, presented: string): Promise<Principal | null> {
  const parsed = parseKey(presented);
  return parsed && checkSecret(parsed.secret, await loadKey(prisma, parsed.id));
}

const NO_DIGEST = secretDigest('');

/**
 * The principal of a stored key (null when unknown) if `secret` is its secret and it is not
 * revoked, else null. The digests are compared in constant time, an unknown key against a
 * digest of its own, so the answer takes as long whatever it is.
 */
export function checkSecret(secret: string, key: StoredKey | null): Principal | null {
  const ok = timingSafeEqual(secretDigest(secret), key ? key.digest : NO_DIGEST);
  return ok && key !== null ? key.principal : null;
}

export async function listKeys(prisma: PrismaClient): Promise<KeyRecord[]> {
  const rows = await prisma.apiKey.findMany({ orderBy: { createdAt: 'asc' } });
  return rows.map(toRecord);
}

/**
 * Revokes a key by id. Returns false if there is no such key. Effective for the next request
 * in this process; API processes elsewhere drop the key from their caches when the change's
 * notification reaches them (docs/api.md#revoking-a-key).
 */
export async function revokeKey(prisma: PrismaClient, id: string): Promise<boolean> {
  const res = await prisma.apiKey.updateMany({
    where: { id, revokedAt: null },
    data: { revokedAt: new Date() },
  });
  const found = res.count > 0 || (await prisma.apiKey.count({ where: { id } })) > 0;
  if (found) for (const fn of revokedHere) fn(id);
  return found;
}
