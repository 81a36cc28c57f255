import type { Backends } from '../runtime/index.ts';

export interface BannerInput {
  apiUrl: string | undefined;
  backends: Backends;
  /** A key created just now, shown this once. */
  firstKey: string | undefined;
  dataDir: string;
}

/**
 * What `promosync start` prints for a person at a terminal: where everything runs, and
 * commands that work as pasted into another terminal of the same machine.
 */
export function startBanner({ apiUrl, backends, firstKey, dataDir }: BannerInput): string {
  const lines: string[] = [];
  const api = apiUrl ?? 'http://127.0.0.1:3000';
  lines.push(`promosync start: API on ${api} (health ${api}/healthz)`, '');
  lines.push(`  API        ${api}   (docs ${api}/docs, metrics ${api}/metrics)`);
  const pg = backends.embeddedPostgres;
  lines.push(
    pg
      ? `  Postgres   embedded PGlite in ${pg.dir}, serving ${pg.url} while this runs`
      : `  Postgres   ${redact(backends.databaseUrl)}`,
  );
  const redis = backends.privateRedis;
  lines.push(
    redis
      ? `  Redis      private redis-server in ${redis.dir} (append-only file on), at ${redis.url}`
      : `  Redis      ${redact(backends.redisUrl)}`,
  );
  lines.push('');

  const keysCmd = pg
    ? `DATABASE_URL=${pg.url} npx promosync keys create`
    : 'DATABASE_URL=<your database URL> npx promosync keys create';
  if (firstKey) {
    lines.push(
      'A first admin key was created for this new database. It is shown only now; keep it:',
      `  ${firstKey}`,
      '',
    );
  }
  lines.push('Try it from another terminal:');
  if (firstKey) lines.push(`  export PROMOSYNC_KEY=${firstKey}`);
  else lines.push(`  export PROMOSYNC_KEY=$(${keysCmd} --role admin | tail -n 1)`);
  const event = JSON.stringify({
    machine: 'promotion',
    entityId: 'promo-1',
    type: 'create',
    eventId: 'demo-1',
    merchantId: 'm-42',
    data: { title: '10% off' },
  });
  lines.push(
    `  curl -s -X POST '${api}/v1/events?wait=true' -H "Authorization: Bearer $PROMOSYNC_KEY" -H 'Content-Type: application/json' -d '${event}'`,
    `  curl -s ${api}/v1/promotions/promo-1 -H "Authorization: Bearer $PROMOSYNC_KEY"`,
    `  printf '%s\\n' '${JSON.stringify({ machine: 'promotion', entityId: 'promo-2', type: 'create' })}' '${JSON.stringify({ machine: 'promotion', entityId: 'promo-2', type: 'activate' })}' | npx promosync send -`,
    `  ${keysCmd} --role producer --source my-service`,
    '',
    `Stop with Ctrl-C; the data stays in ${dataDir} for the next start.`,
    '',
  );
  return lines.join('\n');
}

/** A URL without its password, for printing. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
