import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// No YAML parser is a dependency, so these checks read docker-compose.yml by indentation:
// each service is the block of lines under its two-space-indented name.

const compose = readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
const dockerignore = readFileSync(new URL('../../.dockerignore', import.meta.url), 'utf8');
const configSource = readFileSync(new URL('../../src/config.ts', import.meta.url), 'utf8');

/** The lines of a top-level key's block (`services:`, `x-app:`, …), without comments. */
function topLevel(key: string): string {
  const lines = compose.split('\n');
  const start = lines.findIndex((l) => l === `${key}:` || l.startsWith(`${key}: &`));
  if (start === -1) return '';
  const end = lines.findIndex((l, i) => i > start && /^\S/.test(l));
  return lines
    .slice(start + 1, end === -1 ? undefined : end)
    .filter((l) => !/^\s*#/.test(l))
    .join('\n');
}

/** Each service's block of lines, by name. */
function services(): Map<string, string> {
  const out = new Map<string, string>();
  let name: string | undefined;
  for (const line of topLevel('services').split('\n')) {
    const m = /^ {2}([a-z][a-z0-9_-]*):\s*$/.exec(line);
    if (m) {
      name = m[1]!;
      out.set(name, '');
    } else if (name !== undefined) out.set(name, `${out.get(name)}${line}\n`);
  }
  return out;
}

const all = services();
const service = (name: string): string => {
  const block = all.get(name);
  if (block === undefined) throw new Error(`no service ${name} in docker-compose.yml`);
  // Services that merge the shared app definition get its keys too.
  return block.includes('<<: *app') ? `${block}\n${topLevel('x-app')}` : block;
};

describe('docker-compose.yml', () => {
  it('has no tabs and indents by two spaces', () => {
    expect(compose).not.toMatch(/\t/);
    for (const line of compose.split('\n')) expect(line.match(/^ */)![0].length % 2, line).toBe(0);
  });

  it('runs postgres, redis, a one-shot migrate, the api and scalable workers', () => {
    expect([...all.keys()].sort()).toEqual(['api', 'migrate', 'postgres', 'redis', 'worker']);
  });

  it('keeps PostgreSQL 16 data in a volume and reports it healthy with pg_isready', () => {
    const pg = service('postgres');
    expect(pg).toMatch(/image: postgres:16\b/);
    expect(pg).toMatch(/- pgdata:\/var\/lib\/postgresql\/data/);
    expect(pg).toMatch(/healthcheck:\n\s+test: \[.*pg_isready/);
    expect(topLevel('volumes')).toMatch(/^ {2}pgdata:/m);
  });

  it('runs Redis 7 with the append-only file fsynced every second, in a volume', () => {
    const redis = service('redis');
    expect(redis).toMatch(/image: redis:7\b/);
    const command = redis.slice(redis.indexOf('command:')).replace(/\s*\n\s*- /g, ' ');
    expect(command).toMatch(/--appendonly "?yes"?/);
    expect(command).toMatch(/--appendfsync "?everysec"?/);
    expect(command).toMatch(/--maxmemory-policy "?noeviction"?/);
    expect(redis).toMatch(/- redisdata:\/data/);
    expect(redis).toMatch(/test: \["CMD", "redis-cli", "ping"\]/);
    expect(topLevel('volumes')).toMatch(/^ {2}redisdata:/m);
  });

  it('migrates once, after the database is healthy, without restarting', () => {
    const migrate = service('migrate');
    expect(migrate).toMatch(/command: \["node", "bin\/promosync\.js", "migrate"\]/);
    expect(all.get('migrate')).toMatch(/restart: "no"/);
    expect(all.get('migrate')).toMatch(/postgres:\n\s+condition: service_healthy/);
  });

  it('starts the api and workers after healthy backends and a completed migration', () => {
    const shared = topLevel('x-app');
    expect(shared).toMatch(/postgres:\n\s+condition: service_healthy/);
    expect(shared).toMatch(/redis:\n\s+condition: service_healthy/);
    expect(shared).toMatch(/migrate:\n\s+condition: service_completed_successfully/);
    for (const name of ['api', 'worker']) {
      expect(all.get(name)).toContain('<<: *app');
      expect(all.get(name)).not.toMatch(/depends_on:/);
    }
  });

  it('serves the api on port 3000 with a /healthz healthcheck', () => {
    const api = service('api');
    expect(api).toMatch(/command: \["node", "bin\/promosync\.js", "api"\]/);
    expect(api).toMatch(/- "\$\{PROMOSYNC_PORT:-3000\}:3000"/);
    expect(api).toMatch(/PORT: "3000"/);
    expect(api).toMatch(/healthcheck:[\s\S]*127\.0\.0\.1:3000\/healthz/);
  });

  it('lets workers scale: no container name, no ports', () => {
    const worker = all.get('worker')!;
    expect(service('worker')).toMatch(/command: \["node", "bin\/promosync\.js", "worker"\]/);
    expect(compose).not.toMatch(/container_name:/);
    expect(worker).not.toMatch(/ports:/);
    for (const v of ['WORKER_CONCURRENCY', 'BATCH_MAX_EVENTS', 'BATCH_FLUSH_MS']) {
      expect(worker).toMatch(new RegExp(`${v}: \\$\\{${v}:-\\d+\\}`));
    }
  });

  it('sets only variables promosync reads, and the ones it needs', () => {
    const read = new Set([...configSource.matchAll(/^ {2}([A-Z][A-Z0-9_]*): /gm)].map((m) => m[1]!));
    expect(read).toContain('DATABASE_URL');
    const app = ['x-app', 'services']
      .map(topLevel)
      .join('\n')
      .split('\n')
      .filter((l) => !/^\s+POSTGRES_(USER|PASSWORD|DB): /.test(l));
    const set = [...app.join('\n').matchAll(/^\s+([A-Z][A-Z0-9_]*): /gm)].map((m) => m[1]!);
    for (const v of set) expect(read, `${v} is a promosync setting`).toContain(v);
    for (const v of ['DATABASE_URL', 'REDIS_URL', 'LOG_LEVEL', 'PORT']) expect(set).toContain(v);
    expect(topLevel('x-app')).toMatch(
      /DATABASE_URL: postgresql:\/\/promosync:\$\{POSTGRES_PASSWORD:-promosync\}@postgres:5432\/promosync/,
    );
    expect(topLevel('x-app')).toMatch(/REDIS_URL: redis:\/\/redis:6379/);
  });
});

describe('Dockerfile', () => {
  it('builds in stages on node:20-bookworm-slim and runs as node', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(dockerfile.match(/^FROM \$\{NODE_IMAGE\} AS \w+$/gm)?.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/npm ci\b/);
    expect(dockerfile).toMatch(/npm run generate|prisma generate/);
    expect(dockerfile).toMatch(/--omit=dev/);
    expect(dockerfile).toMatch(/COPY --from=build \/app\/src\/generated \.\/src\/generated/);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '));
    expect(runtime).toMatch(/^USER node$/m);
    expect(runtime.trimEnd().split('\n').at(-1)).toBe('CMD ["node", "bin/promosync.js", "start"]');
  });

  it('copies what the CLI loads at runtime', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      bin: Record<string, string>;
      dependencies: Record<string, string>;
    };
    expect(pkg.bin.promosync).toBe('bin/promosync.js');
    expect(pkg.dependencies.tsx).toBeDefined();
    for (const dir of ['bin', 'machines', 'prisma', 'src']) {
      expect(dockerfile).toMatch(new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'));
    }
  });

  it('keeps local dependencies, data and the generated client out of the build context', () => {
    const ignored = dockerignore.split('\n').map((l) => l.trim());
    for (const p of ['node_modules', '.data', '.git', 'src/generated']) expect(ignored).toContain(p);
    for (const p of ['src', 'bin', 'machines', 'prisma', 'package.json', 'package-lock.json']) {
      expect(ignored).not.toContain(p);
    }
  });
});
