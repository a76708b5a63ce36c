// The checks of a call still being decided when the next step's Redis work is sent: the rate limits, the run lock and
// the write-ahead attempt go out together, so an allowed call waits on Redis once instead of three times, and the
// forward waits for every check before anything reaches SnapLogic.

/**
 * The pending checks of one call. A step that may go ahead before the checks are decided (the run lock, the
 * write-ahead attempt) does so and leaves the waiting to the forward, which calls `passed()` before it sends.
 * A check that fails makes `passed()` throw its error; with several, the first added wins (the rate limits before
 * the run lock, as when they are checked one after the other).
 */
export class Admission {
  private readonly checks: Promise<unknown>[] = [];

  /** Adds a check; its rejection is the call's refusal. Never left unhandled, whether or not `passed()` runs. */
  add(check: Promise<unknown>): void {
    check.catch(() => undefined);
    this.checks.push(check);
  }

  /**
   * Resolves once every check added so far has passed. Throws the first failure in the order they were added, as
   * soon as it and the checks before it are known: a 429 does not wait for the run lock's answer.
   */
  async passed(): Promise<void> {
    for (const check of this.checks) await check;
  }
}
