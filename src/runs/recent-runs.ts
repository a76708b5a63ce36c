// The runs this instance took the lock of moments ago, so a write of one of them waits for its limits before it sends
// the lock (it is likely busy, and a refused call should stay a decision, as on the 429 path).

/** Most runs remembered; past it the memory starts again. */
const MAX_RUNS = 10_000;

/** Per run: until when this instance has reason to think its lock is taken (a lease in flight, a hold, a refusal). */
export class RecentRuns {
  private readonly until = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The key of a run, made once per call (runtime ids are unique to their org). */
  static keyOf(org: string, ruuid: string): string {
    return `${org}/${ruuid}`;
  }

  /** True when this instance knows of no lock of the run (by keyOf) that may still be held. */
  quiet(key: string): boolean {
    const until = this.until.get(key);
    return until === undefined || until <= this.now();
  }

  /** The run's lock may be taken for `ms` from now (0: this instance knows of none). */
  note(key: string, ms: number): void {
    if (ms <= 0) {
      this.until.delete(key);
      return;
    }
    if (!this.until.has(key) && this.until.size >= MAX_RUNS) this.until.clear();
    this.until.set(key, this.now() + ms);
  }
}
