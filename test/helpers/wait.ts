// Waiting in tests: a plain sleep, and polling with a deadline (throwing, or handing back the last value to assert on).

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Calls `probe` every `intervalMs` until `ok` holds for its value or `timeoutMs` passes; returns the last value. */
export async function poll<T>(
  probe: () => T | Promise<T>,
  ok: (value: T) => boolean,
  timeoutMs = 5_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await sleep(intervalMs);
  }
}

/** Polls `check` every `intervalMs`; throws naming `what()` when it does not hold within `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what: () => string = () => 'the condition',
  intervalMs = 50,
): Promise<void> {
  if (!(await poll(check, (held) => held, timeoutMs, intervalMs))) {
    throw new Error(`not met in ${timeoutMs} ms: ${what()}`);
  }
}
