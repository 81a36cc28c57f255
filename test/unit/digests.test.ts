import { describe, expect, it } from 'vitest';
import { contentHash } from '../../src/domain/content-hash.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { secretDigest } from '../../src/store/keys.ts';
import { machines } from '../../machines/index.ts';

/**
 * Digests that are stored and compared later: a new version must compute the same ones, or
 * every stored idempotency key would turn its duplicates into conflicts, and every stored API
 * key would stop verifying.
 */
describe('stored digests', () => {
  it("an event's content hash is the same as the one stored by earlier versions", () => {
    const registry = MachineRegistry.from(machines);
    const [e] = registry.prepare(
      [
        {
          machine: 'promotion',
          entityId: 'p-1',
          type: 'create',
          eventId: 'e-1',
          version: 3,
          merchantId: 'm-1',
          data: { title: 'Summer', discount: 10, note: null },
        },
      ],
      'src',
      false,
    );
    expect(contentHash(e!)).toBe('1eb30c69787e9e9b08532b20350c5239');
  });

  it("an API key's secret digest is its SHA-256", () => {
    expect(secretDigest('abc').toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
