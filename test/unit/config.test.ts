// Config validation: a minimal config and its defaults, every bad field reported by its path, env overrides.
import { describe, expect, it } from 'vitest';
import { minimalConfig, problemsOf } from '../helpers/config.js';
import { parseConfig } from '../../src/config/load.js';
import { parseDuration } from '../../src/config/duration.js';

describe('config', () => {
  it('accepts a minimal config and fills safe defaults', () => {
    const cfg = parseConfig(minimalConfig(), 'test');
    expect(cfg.server).toMatchObject({
      port: 8080,
      shutdownTimeout: 15_000,
      bodyTimeout: 5_000,
      keepAliveTimeout: 75_000,
    });
    expect(cfg.upstream).toMatchObject({ connectTimeout: 5_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
    expect(cfg.auth.issuers[0]).toMatchObject({
      clockTolerance: 30_000,
      jwks: { timeout: 5_000, cooldown: 30_000, cacheMaxAge: 600_000 },
    });
    expect(Object.isFrozen(cfg.orgs['Acme-Prod'])).toBe(true);
  });

  it('reports every bad field with its path at once', () => {
    const doc = minimalConfig() as Record<string, any>;
    doc.orgs['Acme-Prod'].password = 'plain-text-password';
    doc.orgs['Acme-Prod'].pod = 'https://elastic.snaplogic.com/api/1';
    doc.auth.issuers[0].algorithms = ['HS256'];
    doc.policy.push({ match: { sub: 'x' }, orgs: ['Nope'], actions: ['runtime.start'] });
    doc.unknownTopLevel = true;
    const problems = problemsOf(doc);
    expect(problems.some((p) => p.startsWith('orgs.Acme-Prod.password:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('orgs.Acme-Prod.pod:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('auth.issuers.0.algorithms:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('policy.1.orgs.0:'))).toBe(true);
    expect(problems.some((p) => p.includes('unknownTopLevel'))).toBe(true);
    expect(problems.join('\n')).not.toContain('plain-text-password');
  });

  it('requires exactly one key source per issuer, and HMAC only with an explicit secret reference', () => {
    const doc = minimalConfig() as Record<string, any>;
    doc.auth.issuers[0].publicKey = 'file:/keys/idp.pem';
    expect(problemsOf(doc).join()).toContain('exactly one key source');

    const hmac = minimalConfig() as Record<string, any>;
    hmac.auth.issuers[0] = { issuer: 'https://idp', audience: 'a', algorithms: ['HS256'], secret: 'inline-secret' };
    expect(problemsOf(hmac).join()).toContain('auth.issuers.0.secret');

    const ok = minimalConfig() as Record<string, any>;
    ok.auth.issuers[0] = { issuer: 'https://idp', audience: 'a', algorithms: ['HS256'], secret: 'env:IDP_SECRET' };
    expect(problemsOf(ok)).toEqual([]);
  });

  it('refuses plain http pods and JWKS except on loopback or with an explicit opt-in', () => {
    const doc = minimalConfig() as Record<string, any>;
    doc.orgs['Acme-Prod'].pod = 'http://elastic.snaplogic.com';
    expect(problemsOf(doc)).toEqual([expect.stringContaining('orgs.Acme-Prod.pod: must use https')]);
    doc.upstream = { allowInsecureHttp: true };
    expect(problemsOf(doc)).toEqual([]);
    doc.orgs['Acme-Prod'].pod = 'http://127.0.0.1:9000';
    delete doc.upstream;
    expect(problemsOf(doc)).toEqual([]);
  });

  it('refuses a policy rule that matches everyone and an org name that could steer a path', () => {
    const doc = minimalConfig() as Record<string, any>;
    doc.policy = [{ match: {}, orgs: '*', actions: ['runtime.start'] }];
    doc.orgs['../x'] = doc.orgs['Acme-Prod'];
    const problems = problemsOf(doc);
    expect(problems.some((p) => p.startsWith('policy.0.match:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('orgs.../x:'))).toBe(true);
  });

  it('applies environment overrides', () => {
    const cfg = parseConfig(minimalConfig(), 'test', { SNAPGATE_PORT: '9999', SNAPGATE_LOG_LEVEL: 'warn' });
    expect(cfg.server.port).toBe(9999);
    expect(cfg.log.level).toBe('warn');
    expect(problemsOf(minimalConfig(), { SNAPGATE_PORT: 'x' }).some((p) => p.startsWith('SNAPGATE_PORT'))).toBe(true);
  });

  it("takes the admin listener's host from SNAPGATE_ADMIN_HOST, only for an admin listener the config declares", () => {
    const doc = { ...minimalConfig(), admin: { port: 9464 } };
    expect(parseConfig(doc, 'test').admin).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseConfig(doc, 'test', { SNAPGATE_ADMIN_HOST: '0.0.0.0' }).admin).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(problemsOf(minimalConfig(), { SNAPGATE_ADMIN_HOST: '0.0.0.0' })).toEqual([
      expect.stringMatching(/^SNAPGATE_ADMIN_HOST: .*admin\.port/),
    ]);
    expect(problemsOf(doc, { SNAPGATE_ADMIN_HOST: '' })).toEqual([
      expect.stringMatching(/^admin\.host: .*SNAPGATE_ADMIN_HOST/),
    ]);
  });

  it('takes the number of worker processes from SNAPGATE_WORKERS, within the same bounds as server.workers', () => {
    expect(parseConfig(minimalConfig(), 'test', { SNAPGATE_WORKERS: '3' }).server.workers).toBe(3);
    expect(problemsOf(minimalConfig(), { SNAPGATE_WORKERS: 'two' }).some((p) => p.startsWith('SNAPGATE_WORKERS'))).toBe(
      true,
    );
    expect(problemsOf(minimalConfig(), { SNAPGATE_WORKERS: '0' })).toEqual([expect.stringContaining('server.workers')]);
  });

  it('refuses Redis URLs that carry a password', () => {
    const doc = { ...minimalConfig(), redis: { url: 'redis://:secret@10.0.0.1:6379' } };
    expect(problemsOf(doc)).toEqual([expect.stringContaining('redis.url')]);
  });
});

describe('durations', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1.5s', 1_500],
    [1200, 1200],
  ] as const)('%s → %i ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });
  it.each(['', '10', '5 minutes', '-1s', 'abc'])('rejects %j', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});

describe('shipped example config', () => {
  it('config/snapgate.example.yaml is valid as documented', async () => {
    const { loadConfig } = await import('../../src/config/load.js');
    const cfg = await loadConfig(new URL('../../config/snapgate.example.yaml', import.meta.url).pathname);
    expect(Object.keys(cfg.orgs)).toEqual(['Acme-Prod']);
    // A caller that resumes, a read-only caller and an operator with every action.
    expect(cfg.policy.map((r) => r.actions)).toEqual([
      ['runtime.start'],
      ['runtime.status', 'runtime.list'],
      ['runtime.start', 'runtime.stop', 'runtime.status', 'runtime.list', 'runtime.stats'],
    ]);
    const org = cfg.orgs['Acme-Prod']!;
    expect(org.rateLimit?.writes).toMatchObject({ limit: 60, window: 60_000, burst: 10 });
    expect(org.rateLimit?.reads).toMatchObject({ limit: 600, window: 60_000, perCaller: { limit: 120 } });
    expect(org).toMatchObject({ onRedisError: 'local', requireIdempotencyKey: false });
    expect(cfg.idempotency).toEqual({ retention: 24 * 60 * 60 * 1_000, maxBodyBytes: 65_536 });
    expect(cfg.audit.reads).toBe('all');
  });
});

describe('rate-limit config', () => {
  const withLimit = (rateLimit: unknown) => {
    const doc = minimalConfig() as Record<string, any>;
    doc.orgs['Acme-Prod'].rateLimit = rateLimit;
    return doc;
  };

  it('accepts a full rate limit and fills defaults', () => {
    const cfg = parseConfig(
      withLimit({
        limit: 60,
        window: '60s',
        burst: 10,
        perCaller: { limit: 10, window: '1m' },
        concurrency: 5,
        onRedisError: 'closed',
      }),
      'test',
    );
    const writes = {
      limit: 60,
      window: 60_000,
      burst: 10,
      shadow: false,
      perCaller: { limit: 10, window: 60_000, burst: 0, shadow: false },
      concurrency: { limit: 5, shadow: false },
    };
    // The top-level numbers are the writes'; reads without their own are not limited.
    expect(cfg.orgs['Acme-Prod']!.rateLimit).toMatchObject({ writes, onRedisError: 'closed' });
    expect(cfg.orgs['Acme-Prod']!.rateLimit!.reads).toBeUndefined();
    expect(cfg.rateLimiting).toEqual({ expectedInstances: 1, breakerOpenFor: 1_000, localMaxKeys: 10_000 });
  });

  it('takes the limits per action group: writes and reads apart, or writes at the top level', () => {
    const cfg = parseConfig(
      withLimit({ writes: { limit: 5, window: '1m' }, reads: { limit: 100, window: '1m', concurrency: 3 } }),
      'test',
    );
    const limit = cfg.orgs['Acme-Prod']!.rateLimit!;
    expect(limit.writes).toMatchObject({ limit: 5, window: 60_000, burst: 0 });
    expect(limit.reads).toMatchObject({ limit: 100, window: 60_000, concurrency: { limit: 3 } });
    expect(limit.onRedisError).toBeUndefined();
    const mixed = problemsOf(withLimit({ limit: 5, window: '1m', writes: { limit: 5, window: '1m' } }));
    expect(
      mixed.some((p) => p.startsWith('orgs.Acme-Prod.rateLimit.limit')),
      mixed.join('\n'),
    ).toBe(true);
    // Only reads limited: writes are not.
    const readsOnly = parseConfig(withLimit({ reads: { limit: 5, window: '1m' } }), 'test').orgs['Acme-Prod']!;
    expect(readsOnly.rateLimit?.writes).toBeUndefined();
    expect(readsOnly.rateLimit?.reads).toMatchObject({ limit: 5, window: 60_000 });
    const none = problemsOf(withLimit({}));
    expect(
      none.some((p) => p.startsWith('orgs.Acme-Prod.rateLimit.limit')),
      none.join('\n'),
    ).toBe(true);
    const half = problemsOf(withLimit({ limit: 5, reads: { limit: 5, window: '1m' } }));
    expect(
      half.some((p) => p.startsWith('orgs.Acme-Prod.rateLimit.window')),
      half.join('\n'),
    ).toBe(true);
    const badReads = problemsOf(withLimit({ limit: 5, window: '1m', reads: { limit: 0, window: '1m' } }));
    expect(
      badReads.some((p) => p.startsWith('orgs.Acme-Prod.rateLimit.reads.limit')),
      badReads.join('\n'),
    ).toBe(true);
  });

  it('names each bad rate-limit field', () => {
    const problems = problemsOf(
      withLimit({ limit: 0, window: '500ms', burst: -1, onRedisError: 'maybe', concurrency: { limit: 'x' } }),
    );
    for (const path of ['limit', 'window', 'burst', 'onRedisError', 'concurrency']) {
      expect(
        problems.some((p) => p.startsWith(`orgs.Acme-Prod.rateLimit.${path}`)),
        problems.join('\n'),
      ).toBe(true);
    }
  });

  it('accepts exactly one Redis deployment: url, sentinel or cluster', () => {
    const both = {
      ...minimalConfig(),
      redis: { url: 'redis://127.0.0.1:6379', cluster: { nodes: [{ host: '127.0.0.1', port: 7000 }] } },
    };
    expect(problemsOf(both)).toEqual([expect.stringContaining('exactly one of url')]);
    const sentinel = {
      ...minimalConfig(),
      redis: { sentinel: { name: 'm', sentinels: [{ host: 's1', port: 26379 }] } },
    };
    expect(problemsOf(sentinel)).toEqual([]);
  });
});

describe('config file', () => {
  it('refuses a YAML alias bomb with a config error instead of expanding it', async () => {
    const { loadConfig } = await import('../../src/config/load.js');
    const fs = await import('node:fs');
    const path = await import('node:path');
    const os = await import('node:os');
    const join = (...parts: string[]) => path.join(...parts);
    const writeFileSync = (p: string, t: string) => fs.writeFileSync(p, t);
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'snapgate-cfg-'));
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++) {
      lines.push(
        `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(97 + i)}`)
          .join(', ')}]`,
      );
    }
    writeFileSync(join(dir, 'bomb.yaml'), `${lines.join('\n')}\n`);
    await expect(loadConfig(join(dir, 'bomb.yaml'))).rejects.toThrow(/\(yaml\)/);
  });
});

describe('SNAPGATE_PORT', () => {
  it('is digits only: an empty value, a word or an exponent is one problem naming the variable, never port 0', () => {
    for (const value of ['', 'abc', '1e3', ' 80', '-1', '8080.5']) {
      const problems = problemsOf(minimalConfig(), { SNAPGATE_PORT: value });
      expect(problems, value).toEqual([expect.stringMatching(/^SNAPGATE_PORT: must be a port number/)]);
    }
    expect(parseConfig(minimalConfig(), 'test', { SNAPGATE_PORT: '9090' }).server.port).toBe(9090);
  });
});

describe('an org with a bad name', () => {
  it('is named, and the problems inside it are reported in the same pass', () => {
    const doc = minimalConfig();
    doc.orgs = { 'bad name!': { pod: 'https://elastic.snaplogic.com', credentials: 'kerberos' } } as never;
    const problems = problemsOf(doc, { U: 'u' });
    expect(
      problems.some((p) => p.startsWith('orgs.bad name!: is not a usable key: must be a SnapLogic org name')),
      problems.join('\n'),
    ).toBe(true);
    expect(
      problems.some((p) => p.startsWith('orgs.bad name!.credentials:')),
      problems.join('\n'),
    ).toBe(true);
  });
});
