import { describe, expect, it } from 'vitest';
import type { ScenarioResult } from '../../bench/context.ts';
import { medianRun } from '../../bench/run.ts';

const run = (rate: number, p99: number, medianBy?: 'rate' | 'p99'): ScenarioResult => ({
  id: 's',
  name: 's',
  count: 0,
  seconds: 1,
  rate,
  unit: 'reservations/s',
  latency: { p50: 1, p99, max: p99, samples: 1 },
  ...(medianBy ? { medianBy } : {}),
  notes: [],
});

describe('the run that stands for several rounds', () => {
  it('is the median by rate for a throughput scenario', () => {
    const m = medianRun([run(300, 5), run(100, 50), run(200, 90)], 3);
    expect(m.rate).toBe(200);
    expect(m.notes.at(-1)).toBe('median of 3 rounds; all rounds: 0.3k, 0.1k, 0.2k reservations/s');
  });

  it('is the median by p99 for a latency scenario, whatever the rates', () => {
    // By rate the median would be the run with p99 90 ms.
    const m = medianRun([run(300, 5, 'p99'), run(100, 50, 'p99'), run(200, 90, 'p99')], 3);
    expect(m.latency!.p99).toBe(50);
    expect(m.notes.at(-1)).toBe('median of 3 rounds by p99; all rounds: p99 5.0, 50.0, 90.0 ms');
  });

  it('is a failed run when there is one', () => {
    const failed = { ...run(0, 0), error: 'boom' };
    expect(medianRun([run(300, 5), failed, run(200, 90)], 3)).toBe(failed);
  });
});
