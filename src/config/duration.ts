// Durations in config: a number of milliseconds, or a string such as "250ms", "30s", "5m", "1h".

const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const pattern = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** Parses a duration to whole milliseconds, or returns undefined when the text is not one. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  const m = pattern.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * unitMs[m[2] as keyof typeof unitMs]);
}
