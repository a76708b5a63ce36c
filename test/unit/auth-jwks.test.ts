// RemoteJwks against a real local JWKS server with an injected clock: fetch pacing while keys are missing, one log line
// per outage, maxStale.
import { jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { KeysUnavailableError, RemoteJwks, type RemoteJwksOptions } from '../../src/auth/key-source.js';
import { createLogger } from '../../src/log.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

let issuer: TokenIssuer | undefined;

afterEach(async () => {
  await issuer?.close();
  issuer = undefined;
});

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    level: 'debug',
    write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  const count = (level: string, msg: string) => lines.filter((l) => l.level === level && l.msg === msg).length;
  return { log, lines, count };
}

function remote(
  url: string,
  clock: { now: number },
  log: ReturnType<typeof capture>['log'],
  options: Partial<RemoteJwksOptions> = {},
): RemoteJwks {
  return new RemoteJwks(
    url,
    {
      timeoutMs: 1_000,
      cooldownMs: 30_000,
      cacheMaxAgeMs: 600_000,
      maxStaleMs: 3_600_000,
      now: () => clock.now,
      ...options,
    },
    log,
  );
}

/** 'ok', 'keys unavailable', or the unexpected error. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof KeysUnavailableError ? 'keys unavailable' : String(err);
  }
}

describe('remote JWKS while the identity provider is down and no keys are loaded', () => {
  it('fetches at most once per cooldown however often ready() and getKey ask, and warns once per outage', async () => {
    issuer = await TokenIssuer.start();
    issuer.mode = 'error';
    const clock = { now: 1_000_000 };
    const { log, count, lines } = capture();
    const jwks = remote(issuer.jwksUri, clock, log);
    const token = await issuer.mint({ sub: 'svc-billing' });

    const answers: boolean[] = [];
    for (let i = 0; i < 20; i++) {
      answers.push(await jwks.ready());
      expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('keys unavailable');
      clock.now += 1_000;
    }
    expect(answers).toEqual(Array(20).fill(false));
    expect(
      issuer.jwksFetches,
      `${issuer.jwksFetches} JWKS fetches for 20 ready() and 20 getKey within one cooldown`,
    ).toBe(1);
    expect(count('warn', 'jwks fetch failed'), JSON.stringify(lines)).toBe(1);

    // The next cooldown allows one more attempt: a debug line, not another warning.
    clock.now += 10_000;
    expect(await jwks.ready()).toBe(false);
    expect(await jwks.ready()).toBe(false);
    expect(issuer.jwksFetches).toBe(2);
    expect(count('warn', 'jwks fetch failed')).toBe(1);
    expect(count('debug', 'jwks fetch failed')).toBe(1);

    // Recovery is logged once, and the keys serve again.
    issuer.mode = 'up';
    clock.now += 30_000;
    expect(await jwks.ready()).toBe(true);
    expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('ok');
    expect(issuer.jwksFetches).toBe(3);
    expect(count('info', 'jwks fetch recovered')).toBe(1);

    // A new outage is a new warning.
    issuer.mode = 'error';
    clock.now += 600_001;
    expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('ok');
    expect(count('warn', 'jwks fetch failed')).toBe(2);
  });

  it('concurrent ready() calls share one fetch', async () => {
    issuer = await TokenIssuer.start();
    const clock = { now: 1_000_000 };
    const jwks = remote(issuer.jwksUri, clock, capture().log);
    expect(await Promise.all(Array.from({ length: 10 }, () => jwks.ready()))).toEqual(Array(10).fill(true));
    expect(issuer.jwksFetches).toBe(1);
  });
});

describe('remote JWKS stale-if-error bounded by maxStale', () => {
  it(
    'serves the last good keys while refreshes fail, ' +
      'until maxStale after the last successful fetch; then refuses until a fetch succeeds',
    async () => {
      issuer = await TokenIssuer.start();
      const clock = { now: 1_000_000 };
      const { log, count } = capture();
      const jwks = remote(issuer.jwksUri, clock, log, {
        cacheMaxAgeMs: 600_000,
        cooldownMs: 30_000,
        maxStaleMs: 3_600_000,
      });
      const token = await issuer.mint({ sub: 'svc-billing' });
      expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('ok');
      const fetchedAt = clock.now;

      issuer.mode = 'error';
      clock.now = fetchedAt + 600_001;
      expect(await outcome(jwtVerify(token, jwks.getKey)), 'stale-if-error').toBe('ok');
      clock.now = fetchedAt + 3_599_000;
      expect(await outcome(jwtVerify(token, jwks.getKey)), 'still within maxStale').toBe('ok');
      expect(await jwks.ready()).toBe(true);

      clock.now = fetchedAt + 3_600_001;
      expect(await outcome(jwtVerify(token, jwks.getKey)), 'keys older than maxStale were still trusted').toBe(
        'keys unavailable',
      );
      expect(await jwks.ready()).toBe(false);
      expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('keys unavailable');
      expect(count('warn', 'jwks keys dropped: older than maxStale')).toBe(1);

      issuer.mode = 'up';
      clock.now += 30_000;
      expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('ok');
      expect(await jwks.ready()).toBe(true);
    },
  );

  it('an idle gateway whose identity provider is up refreshes instead of dropping its keys', async () => {
    issuer = await TokenIssuer.start();
    const clock = { now: 1_000_000 };
    const { log, count } = capture();
    const jwks = remote(issuer.jwksUri, clock, log, { cacheMaxAgeMs: 600_000, maxStaleMs: 300_000 });
    const token = await issuer.mint({ sub: 'svc-billing' });
    expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('ok');
    clock.now += 2 * 3_600_000;
    expect(await jwks.ready()).toBe(true);
    expect(await outcome(jwtVerify(token, jwks.getKey))).toBe('ok');
    expect(issuer.jwksFetches).toBe(2);
    expect(count('warn', 'jwks keys dropped: older than maxStale')).toBe(0);
  });
});
