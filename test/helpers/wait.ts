// Waiting in tests: a plain sleep, and polling a condition with a deadline that says what was not met.

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms; throws naming `what()` when it does not hold within `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not met in ${timeoutMs} ms: ${what()}`);
    await sleep(50);
  }
}
