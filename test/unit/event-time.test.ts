// The audit events' time: isoTime is toISOString, cheaper, and must be the same text for every date it formats itself
// (years 2000 to 9999); others go through toISOString.
import { describe, expect, it } from 'vitest';
import { isoTime } from '../../src/audit/event.js';

describe('isoTime', () => {
  it('writes what toISOString writes: month and year ends, leap days, century years, and 100,000 other dates', () => {
    const fixed = [
      '2000-01-01T00:00:00.000Z',
      '2000-02-29T12:34:56.789Z',
      '2024-02-29T23:59:59.999Z',
      '2026-12-31T23:59:59.009Z',
      '2100-02-28T00:00:00.090Z',
      '2100-03-01T00:00:00.000Z',
      '2400-02-29T01:02:03.004Z',
      '9999-12-31T23:59:59.999Z',
    ];
    for (const text of fixed) expect(isoTime(new Date(text))).toBe(text);
    // A fixed sequence (a linear congruential generator), so a failure names a date that fails again.
    let x = 12345;
    const from = Date.UTC(2000, 0, 1);
    const span = Date.UTC(9999, 11, 31) - from;
    for (let i = 0; i < 100_000; i++) {
      x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
      const d = new Date(from + Math.floor((x / 2 ** 31) * span) + (i % 1000));
      expect(isoTime(d)).toBe(d.toISOString());
    }
  });

  it('leaves dates outside its range to toISOString: earlier, later, and invalid (which throws as toISOString does)', () => {
    for (const d of [new Date('1999-12-31T23:59:59.999Z'), new Date('1970-01-01T00:00:00.000Z'), new Date(8.64e15)]) {
      expect(isoTime(d)).toBe(d.toISOString());
    }
    expect(() => isoTime(new Date(NaN))).toThrow(RangeError);
  });
});
