// What a Redis-backed step throws when Redis cannot decide and the org's onRedisError mode is `closed`.

/** The step is refused; the caller answers 503 with Retry-After (`retryAfterMs`, rounded up to seconds). */
export class RedisUnavailableError extends Error {
  constructor(
    what: string,
    readonly retryAfterMs: number,
    options?: { cause?: unknown },
  ) {
    super(`${what} unavailable`, options);
    this.name = new.target.name;
  }
}
