import { SseParser, type SseEvent } from '../../src/cli/sse.ts';

/** An open watch stream read with fetch: every event it received so far. */
export interface SseStream {
  status: number;
  events: SseEvent[];
  /** Raw text received, comments included. */
  text(): string;
  /** Resolves with the first event (from the start) that matches, or rejects after `timeoutMs`. */
  until(pred: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  close(): void;
}

/** Opens `url` as an event stream with the given headers. */
export async function openSse(url: string, headers: Record<string, string>): Promise<SseStream> {
  const abort = new AbortController();
  const res = await fetch(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: abort.signal,
  });
  const events: SseEvent[] = [];
  let raw = '';
  const waiters = new Set<() => void>();
  const parser = new SseParser((e) => {
    events.push(e);
    for (const w of waiters) w();
  });
  if (res.status === 200 && res.body) {
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body!) {
          const s = decoder.decode(chunk as Uint8Array, { stream: true });
          raw += s;
          parser.push(s);
          for (const w of waiters) w();
        }
      } catch {
        // aborted
      }
    })();
  }
  return {
    status: res.status,
    events,
    text: () => raw,
    until(pred, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        let scanned = 0;
        const check = (): void => {
          let found: SseEvent | undefined;
          for (; scanned < events.length && !found; scanned++)
            if (pred(events[scanned]!)) found = events[scanned];
          if (found) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `no matching event after ${timeoutMs} ms; got ${JSON.stringify(events).slice(0, 2000)}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => abort.abort(),
  };
}
