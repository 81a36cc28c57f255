import type { Command } from 'commander';
import { withDatabase } from './targets.ts';
import { createKey, listKeys, revokeKey, type Role } from '../store/index.ts';
import { ADMIN_SOURCE, ID_PATTERN, sourceSchema } from '../domain/index.ts';
import { machines } from '../../machines/index.ts';

/** `keys create|list|revoke`. */
export function registerKeys(program: Command): void {
  const cmd = program.command('keys').description('manage API keys (stored hashed)');
  cmd
    .command('create')
    .description('create a key; prints it once, alone on the last line')
    .requiredOption('--role <role>', 'producer, merchant, admin or checkout')
    .option(
      '--source <name>',
      'producer: the source its events are recorded under (not a reserved one, e.g. admin)',
    )
    .option('--machines <list>', 'producer, checkout: comma-separated machines it may use (default: all)')
    .option(
      '--may-write-for <sources>',
      'producer: comma-separated sources whose entities it may write besides its own (default: none)',
    )
    .option('--merchant <merchantId>', 'merchant: whose entities it can read')
    .option('--label <text>', 'a note shown by keys list')
    .addHelpText(
      'after',
      '\nExamples:\n  promosync keys create --role producer --source cashback --machines promotion\n' +
        '  promosync keys create --role producer --source backoffice --may-write-for cashback,sku\n' +
        '  promosync keys create --role merchant --merchant m-42\n  promosync keys create --role admin\n' +
        '  promosync keys create --role checkout --machines promotion',
    )
    .action(
      async (o: {
        role: string;
        source?: string;
        machines?: string;
        mayWriteFor?: string;
        merchant?: string;
        label?: string;
      }) => {
        const role = o.role as Role;
        if (!['producer', 'merchant', 'admin', 'checkout'].includes(role))
          throw new Error('--role must be producer, merchant, admin or checkout');
        if (role === 'producer' && !(o.source && sourceSchema.safeParse(o.source).success)) {
          throw new Error('a producer key needs --source <name> (1-64 characters of [A-Za-z0-9._:-])');
        }
        if (role === 'producer' && o.source === ADMIN_SOURCE) {
          throw new Error(`source "${ADMIN_SOURCE}" is reserved for the events of admin keys`);
        }
        const grants = o.mayWriteFor
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        if (grants !== undefined && role !== 'producer')
          throw new Error('--may-write-for is for producer keys');
        const badGrant = grants?.find((s) => !sourceSchema.safeParse(s).success);
        if (grants?.length === 0 || badGrant !== undefined) {
          throw new Error(
            `--may-write-for needs sources of 1-64 characters of [A-Za-z0-9._:-], got "${badGrant ?? ''}"`,
          );
        }
        if (role === 'merchant' && !(o.merchant && ID_PATTERN.test(o.merchant))) {
          throw new Error('a merchant key needs --merchant <merchantId>');
        }
        const list = o.machines
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        const unknown = list?.filter((m) => !(m in machines)) ?? [];
        if (unknown.length > 0) throw new Error(`unknown machine(s): ${unknown.join(', ')}`);
        const { key, record } = await withDatabase((db) =>
          createKey(db.prisma, {
            role,
            ...(o.source ? { source: o.source } : {}),
            ...(list ? { machines: list } : {}),
            ...(grants ? { mayWriteFor: grants } : {}),
            ...(o.merchant ? { merchantId: o.merchant } : {}),
            ...(o.label ? { label: o.label } : {}),
          }),
        );
        process.stdout.write(`created ${record.role} key ${record.keyId}; it is shown only now:\n${key}\n`);
      },
    );
  cmd
    .command('list')
    .description('list keys (ids and scopes, never secrets)')
    .action(async () => {
      const keys = await withDatabase((db) => listKeys(db.prisma));
      for (const k of keys) {
        const scope =
          k.role === 'producer'
            ? `source=${k.source} machines=${k.machines?.join(',') ?? '*'}` +
              (k.mayWriteFor.length > 0 ? ` may-write-for=${k.mayWriteFor.join(',')}` : '')
            : k.role === 'checkout'
              ? `machines=${k.machines?.join(',') ?? '*'}`
              : k.role === 'merchant'
                ? `merchant=${k.merchantId}`
                : '';
        process.stdout.write(
          `${k.keyId}  ${k.role.padEnd(8)}  ${k.revokedAt ? 'revoked ' : 'active  '}  ${k.createdAt.toISOString()}  ${scope}${k.label ? `  "${k.label}"` : ''}\n`,
        );
      }
    });
  cmd
    .command('revoke')
    .description('revoke a key by id; every API process is notified and refuses it from then on')
    .argument('<id>', 'the key id shown by keys list')
    .action(async (id: string) => {
      const ok = await withDatabase((db) => revokeKey(db.prisma, id));
      if (!ok) throw new Error(`no key ${id}`);
      process.stdout.write(`revoked ${id}\n`);
    });
}
