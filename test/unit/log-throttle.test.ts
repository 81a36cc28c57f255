import { describe, expect, it } from 'vitest';
import { LogThrottle } from '../../src/api/log-throttle.ts';

describe('LogThrottle', () => {
  it('lets one line through per interval and reports how many it held back in between', () => {
    let now = 0;
    const t = new LogThrottle(1000, () => now);
    expect(t.take()).toBe(0);
    for (let i = 0; i < 500; i++) {
      now += 1;
      expect(t.take()).toBeUndefined();
    }
    now = 1000;
    expect(t.take()).toBe(500);
    now = 1999;
    expect(t.take()).toBeUndefined();
    now = 5000;
    expect(t.take()).toBe(1);
    now = 9000;
    expect(t.take()).toBe(0);
  });
});
