import type { Command } from 'commander';
import { loadConfig } from '../config.ts';

/**
 * `promosync bench [options]`: the benchmark under bench/ (the same as `npm run bench`). It
 * creates and drops databases of its own on the server of DATABASE_URL and queues with
 * random names on REDIS_URL; `promosync bench --help` lists its options.
 */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('benchmark promosync beside the reference designs on this machine (see bench/README.md)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[options...]', 'benchmark options; --help lists them')
    .action(async (args: string[]) => {
      const config = loadConfig();
      // Loaded on demand: the benchmark and its generators are not part of a serving process.
      const bench = (await import('../../bench/cli.ts')) as {
        main(argv: string[], urls: { databaseUrl?: string; redisUrl?: string }): Promise<number>;
      };
      const code = await bench.main(args, {
        ...(config.databaseUrl ? { databaseUrl: config.databaseUrl } : {}),
        ...(config.redisUrl ? { redisUrl: config.redisUrl } : {}),
      });
      if (code !== 0) process.exitCode = code;
    });
}
