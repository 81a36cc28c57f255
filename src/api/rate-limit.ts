import { hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import type { RedisConnection } from '../queue/index.ts';
import type { Logger } from 'pino';
import {
  BurstyRateLimiter,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import { PromosyncError } from '../domain/index.ts';
import { sendProblem } from './problem.ts';

/** Seconds of the window the burst allowance is counted over. */
const BURST_WINDOW_S = 10;

export interface RateLimitOptions {
  /** Where the counters live, so that the limit holds across API processes. */
  redis: RedisConnection;
  /** Requests per second one key may make; 0 turns limiting off. */
  perSecond: number;
  /** Requests a key may make above `perSecond` in any 10 s window. @defaultValue 0 */
  burst?: number;
  /** Prefix of the Redis keys; deployments sharing a Redis keep apart by it. @defaultValue 'promosync:rl' */
  prefix?: string;
  logger?: Logger;
}

/**
 * What a request is counted under: its bearer credential (hashed, so a guessed key id cannot
 * use up someone else's allowance, and a flood with one bad key is stopped before it reaches
 * the database), or the peer address when it presents none.
 */
export function rateLimitKey(req: IncomingMessage): string {
  const header = req.headers.authorization;
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (m) return `k:${hash('sha256', m[1]!, 'base64url').slice(0, 32)}`;
  return `ip:${req.socket.remoteAddress ?? 'unknown'}`;
}

interface Consumer {
  consume(key: string): Promise<unknown>;
}

function limiter(opts: RateLimitOptions): Consumer {
  const prefix = opts.prefix ?? 'promosync:rl';
  // While Redis is away each process counts on its own, so the API keeps answering reads.
  const store = (keyPrefix: string, points: number, duration: number) =>
    new RateLimiterRedis({
      storeClient: opts.redis,
      keyPrefix,
      points,
      duration,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration }),
    });
  const steady = store(`${prefix}:s`, opts.perSecond, 1);
  const burst = opts.burst ?? 0;
  if (burst <= 0) return steady;
  return new BurstyRateLimiter(steady, store(`${prefix}:b`, burst, BURST_WINDOW_S));
}

/** A request over its key's allowance: the 429 to answer and the seconds to put in `Retry-After`. */
export interface RateRefusal {
  problem: PromosyncError;
  retryAfter: number;
}

/**
 * Counts a request against its key's allowance: null when it may go on. Null itself when
 * limiting is off.
 */
export function rateCheck(
  opts: RateLimitOptions,
): ((req: IncomingMessage) => Promise<RateRefusal | null>) | null {
  if (opts.perSecond <= 0) return null;
  const rl = limiter(opts);
  return async (req) => {
    try {
      await rl.consume(rateLimitKey(req));
    } catch (rej) {
      if (rej instanceof RateLimiterRes) {
        const seconds = Math.max(1, Math.ceil(rej.msBeforeNext / 1000));
        return {
          retryAfter: seconds,
          problem: new PromosyncError(
            'rate_limited',
            `more than ${opts.perSecond} requests per second with this key; retry in ${seconds} s`,
          ),
        };
      }
      // The limiter itself failed: serve the request rather than refuse everyone.
      opts.logger?.warn({ err: rej }, 'rate limiter unavailable, request not counted');
    }
    return null;
  };
}

/**
 * Per-key rate limiting: a request over the limit gets 429 `rate_limited` with `Retry-After`
 * (seconds), before its body is read or its key looked up.
 */
export function rateLimit(check: NonNullable<ReturnType<typeof rateCheck>>): RequestHandler {
  return async (req, res, next) => {
    const refused = await check(req);
    if (!refused) return next();
    res.setHeader('Retry-After', String(refused.retryAfter));
    sendProblem(res, refused.problem);
  };
}
