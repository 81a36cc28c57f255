import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createProgram } from '../../src/cli/program.ts';
import { loadConfig } from '../../src/config.ts';

// docker-compose.yml and the Dockerfile are read for what they mean (services, commands, ports,
// volumes, the files the image holds) and checked against the code they run.

const root = new URL('../../', import.meta.url);
const read = (file: string): string => readFileSync(new URL(file, root), 'utf8');

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  restart?: string;
  environment?: Record<string, string>;
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  container_name?: string;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

// `merge: true` resolves the `<<: *app` keys, as Compose does.
const compose = parse(read('docker-compose.yml'), { merge: true }) as Compose;
const services = compose.services;
const service = (name: string): Service => {
  const s = services[name];
  if (s === undefined) throw new Error(`no service ${name} in docker-compose.yml`);
  return s;
};
/** Services built from this repository: they run the promosync CLI. */
const appServices = Object.entries(services).filter(([, s]) => s.build !== undefined);

/** `${NAME:-default}` as Compose reads it with NAME unset. */
const withDefaults = (v: string): string => v.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');

/** A service's environment as its process sees it with nothing set on the host. */
const envOf = (s: Service): Record<string, string> =>
  Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, withDefaults(v)]));

const cliCommands = createProgram().commands.map((c) => c.name());

/** The words of a healthcheck or command, as one string. */
const words = (test: string[] | undefined): string => (test ?? []).join(' ');

interface Instruction {
  op: string;
  args: string;
}
/** The Dockerfile's stages, each a list of instructions (continuations joined, comments dropped). */
function dockerStages(text: string): Map<string, Instruction[]> {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  for (const line of lines) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line)!;
    if (op.toUpperCase() === 'FROM') {
      current = [];
      stages.set(/\bAS\s+(\S+)$/i.exec(args)?.[1] ?? `stage${stages.size}`, current);
    }
    current?.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

const dockerfile = dockerStages(read('Dockerfile'));
const runtime = [...dockerfile.values()].at(-1)!;
/** What the runtime stage copies: each path it creates (relative to WORKDIR /app), from where. */
const copies = runtime
  .filter((i) => i.op === 'COPY')
  .flatMap((i) => {
    const parts = i.args.split(/\s+/);
    const from = parts.map((p) => /^--from=(\S+)$/.exec(p)?.[1]).find((f) => f !== undefined);
    const paths = parts.filter((p) => !p.startsWith('--'));
    const dest = paths.pop()!;
    const intoDir = dest.endsWith('/') || dest === '.';
    return paths.map((src) => {
      const target = intoDir ? path.posix.join(dest, path.posix.basename(src)) : path.posix.normalize(dest);
      return { from, src: src.replace(/^\.\/|\/$/g, ''), dest: target };
    });
  });
const ignored = read('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const under = (file: string, dir: string): boolean => file === dir || file.startsWith(`${dir}/`);

/** Whether the runtime image holds `file` (relative to /app): copied from a stage, or from the build context and not ignored there. */
const imageHas = (file: string): boolean =>
  copies.some(
    (c) =>
      under(file, c.dest) &&
      (c.from !== undefined ||
        !ignored.some((p) => under(path.posix.join(c.src, file.slice(c.dest.length)), p))),
  );

describe('docker-compose.yml', () => {
  it('runs postgres, redis, a one-shot migrate, the api and scalable workers', () => {
    expect(Object.keys(services).sort()).toEqual(['api', 'migrate', 'postgres', 'redis', 'worker']);
    expect(service('postgres').image).toMatch(/^postgres:\d+/);
    expect(service('redis').image).toMatch(/^redis:7\b/);
    expect(appServices.map(([name]) => name).sort()).toEqual(['api', 'migrate', 'worker']);
  });

  it('runs commands the promosync CLI has', () => {
    expect(cliCommands).toContain('migrate');
    for (const [name, s] of appServices) {
      const [node, script, command] = s.command ?? [];
      expect(node, name).toBe('node');
      expect(existsSync(new URL(script!, root)), `${name} runs ${script}`).toBe(true);
      expect(cliCommands, `${name} runs promosync ${command}`).toContain(command);
    }
    expect(service('migrate').command?.[2]).toBe('migrate');
    expect(service('api').command?.[2]).toBe('api');
    expect(service('worker').command?.[2]).toBe('worker');
  });

  it('runs Redis with the append-only file fsynced every second and no eviction', () => {
    const command = words(service('redis').command);
    expect(command).toMatch(/^redis-server\b/);
    expect(command).toContain('--appendonly yes');
    expect(command).toContain('--appendfsync everysec');
    expect(command).toContain('--maxmemory-policy noeviction');
  });

  it('keeps the data of postgres and redis in declared volumes, and declares none unused', () => {
    const declared = Object.keys(compose.volumes ?? {});
    const mounts = (s: Service): Array<[string, string]> =>
      (s.volumes ?? []).map((v) => v.split(':') as [string, string]);
    expect(mounts(service('postgres'))).toContainEqual([expect.any(String), '/var/lib/postgresql/data']);
    expect(mounts(service('redis'))).toContainEqual([expect.any(String), '/data']);
    const used = Object.values(services).flatMap((s) => mounts(s).map(([source]) => source));
    for (const source of used) expect(declared, `volume ${source}`).toContain(source);
    expect(declared.sort()).toEqual([...new Set(used)].sort());
  });

  it('has a health check on every long-running service, and starts each after what it needs', () => {
    expect(words(service('postgres').healthcheck?.test)).toMatch(/pg_isready/);
    expect(service('redis').healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
    for (const name of ['api', 'worker']) {
      expect(service(name).healthcheck, name).toBeDefined();
      expect(service(name).depends_on).toEqual({
        postgres: { condition: 'service_healthy' },
        redis: { condition: 'service_healthy' },
        migrate: { condition: 'service_completed_successfully' },
      });
    }
    expect(service('migrate').restart).toBe('no');
    expect(service('migrate').healthcheck).toBeUndefined();
    expect(service('migrate').depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
  });

  it('publishes the api on the port the app listens on, and checks /healthz there', () => {
    const api = service('api');
    const port = loadConfig(envOf(api)).port;
    expect(port).toBe(loadConfig({}).port);
    expect(api.ports?.map((p) => withDefaults(p).split(':').at(-1))).toEqual([String(port)]);
    expect(words(api.healthcheck?.test)).toContain(`http://127.0.0.1:${port}/healthz`);
  });

  it('lets workers scale: no container name, no published ports, metrics on the exposed port', () => {
    const worker = service('worker');
    for (const s of Object.values(services)) expect(s.container_name).toBeUndefined();
    expect(worker.ports).toBeUndefined();
    const metrics = worker.environment?.METRICS_PORT;
    expect(metrics).toBeDefined();
    expect(worker.expose).toEqual([metrics]);
    expect(words(worker.healthcheck?.test)).toContain(`http://127.0.0.1:${metrics}/healthz`);
  });

  it('gives the app settings promosync reads and accepts, the connections among them', () => {
    const settings = new Set(
      [...read('src/config.ts').matchAll(/^ {2}([A-Z][A-Z0-9_]*): /gm)].map((m) => m[1]!),
    );
    for (const [name, s] of appServices) {
      const env = envOf(s);
      for (const v of Object.keys(env)) expect(settings, `${name}: ${v} is a promosync setting`).toContain(v);
      const config = loadConfig(env);
      expect(config.databaseUrl, name).toBe('postgresql://promosync:promosync@postgres:5432/promosync');
      expect(config.redisUrl, name).toBe('redis://redis:6379');
    }
    // The database and user postgres creates are the ones the app connects to.
    const pg = envOf(service('postgres'));
    expect(`postgresql://${pg.POSTGRES_USER}:${pg.POSTGRES_PASSWORD}@postgres:5432/${pg.POSTGRES_DB}`).toBe(
      loadConfig(envOf(service('api'))).databaseUrl,
    );
  });
});

describe('Dockerfile', () => {
  it('builds in stages and runs as the unprivileged node user', () => {
    expect(dockerfile.size).toBeGreaterThanOrEqual(2);
    expect(runtime.filter((i) => i.op === 'USER').at(-1)?.args).toBe('node');
    expect(runtime.find((i) => i.op === 'WORKDIR')?.args).toBe('/app');
    // Only production dependencies go into the image.
    const deps = copies.find((c) => c.dest === 'node_modules');
    const depsStage = dockerfile.get(deps!.from!)!;
    expect(depsStage.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args))).toBe(true);
  });

  it('starts a file the image holds, with a command the CLI has', () => {
    const cmd = JSON.parse(runtime.filter((i) => i.op === 'CMD').at(-1)!.args) as string[];
    const entrypoint = runtime.find((i) => i.op === 'ENTRYPOINT');
    const argv = [...(entrypoint ? (JSON.parse(entrypoint.args) as string[]) : []), ...cmd];
    expect(argv[0]).toBe('node');
    expect(existsSync(new URL(argv[1]!, root)), argv[1]).toBe(true);
    expect(imageHas(argv[1]!), `${argv[1]} is in the image`).toBe(true);
    expect(cliCommands).toContain(argv[2]);
  });

  it('holds what the CLI loads at runtime: sources, machines, migrations, the generated client', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    for (const file of [
      'package.json',
      pkg.bin.promosync!,
      'src/cli/main.ts',
      'machines/index.ts',
      'prisma/schema.prisma',
      'prisma/migrations',
    ]) {
      expect(existsSync(new URL(file, root)), file).toBe(true);
      expect(imageHas(file), `${file} is in the image`).toBe(true);
    }
    const generated = copies.find((c) => c.dest === 'src/generated');
    expect(generated?.from, 'src/generated comes from a build stage').toBeDefined();
    const build = dockerfile.get(generated!.from!)!;
    expect(build.some((i) => i.op === 'RUN' && /npm run generate|prisma generate/.test(i.args))).toBe(true);
  });

  it('keeps local dependencies, data and the generated client out of the build context', () => {
    for (const p of ['node_modules', '.data', '.git', 'src/generated']) expect(ignored).toContain(p);
  });
});
