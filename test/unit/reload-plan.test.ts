// What a reload applies and what it keeps: the config hash, the changed paths, and the effective config.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { changedPaths, configHash, planReload } from '../../src/config/reload-plan.js';
import { minimalConfig } from '../helpers/config.js';

const env = { U: 'u' };
const config = (extra: Record<string, unknown> = {}) => parseConfig(minimalConfig(extra), 'test', env);

describe('configHash', () => {
  it('is the same for the same config whatever the key order, and differs when a field does', () => {
    const a = parseConfig({ ...minimalConfig(), server: { port: 8080, host: '0.0.0.0' } }, 'a', env);
    const b = parseConfig({ server: { host: '0.0.0.0', port: 8080 }, ...minimalConfig() }, 'b', env);
    expect(configHash(a)).toBe(configHash(b));
    expect(configHash(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(configHash(config({ log: { level: 'debug' } }))).not.toBe(configHash(a));
  });
});

describe('changedPaths', () => {
  it('names each changed leaf; an added or removed section is named whole; arrays compare whole', () => {
    expect(changedPaths({ a: { b: 1, c: 2 }, d: [1, 2] }, { a: { b: 1, c: 3 }, d: [1, 2] })).toEqual(['a.c']);
    expect(changedPaths({ a: 1 }, { a: 1, e: { f: 1 } })).toEqual(['e']);
    expect(changedPaths({ d: [1, 2] }, { d: [2, 1] })).toEqual(['d']);
    expect(changedPaths({ a: 1 }, { a: 1 })).toEqual([]);
  });
});

describe('planReload', () => {
  it('applies what a call reads and keeps what needs a restart, naming it', () => {
    const current = config({ server: { port: 8080 }, audit: { reads: 'all' } });
    const next = config({
      server: { port: 9090, maxBodyBytes: 1024, workers: 2 },
      audit: { reads: 'denied', maxQueue: 5 },
      admin: { port: 9464 },
      upstream: { connectTimeout: '1s' },
      log: { level: 'debug' },
      policy: [],
    });
    const plan = planReload(current, next);
    expect([...plan.needRestart].sort()).toEqual(
      ['admin', 'audit.maxQueue', 'server.port', 'server.workers', 'upstream.connectTimeout'].sort(),
    );
    expect([...plan.applied].sort()).toEqual(['audit.reads', 'log.level', 'policy', 'server.maxBodyBytes'].sort());
    expect(plan.effective.server).toMatchObject({ port: 8080, workers: 1, maxBodyBytes: 1024 });
    expect(plan.effective.audit).toMatchObject({ reads: 'denied', maxQueue: current.audit.maxQueue });
    expect(plan.effective.admin).toBeUndefined();
    expect(plan.effective.upstream).toEqual(current.upstream);
    expect(plan.effective.log.level).toBe('debug');
    expect(plan.effective.policy).toEqual([]);
    // Nothing left to restart for: the effective config against the running one differs only where it applies.
    expect(planReload(current, plan.effective).needRestart).toEqual([]);
  });

  it('keeps a removed restart-only section as it runs (redis stays connected)', () => {
    const current = config({ redis: { url: 'redis://127.0.0.1:6379' } });
    const plan = planReload(current, config());
    expect(plan.needRestart).toEqual(['redis']);
    expect(plan.effective.redis).toEqual(current.redis);
  });

  it('keeps where the JWKS is served; signing added by a reload is served on the callers’ port', () => {
    const keys = [{ key: 'file:/k.pem', state: 'active' }];
    const withListener = config({ signing: { issuer: 'snapgate', keys, jwks: { port: 8443 } } });
    const moved = config({ signing: { issuer: 'snapgate-2', keys, jwks: { port: 9443, path: '/keys.json' } } });
    const plan = planReload(withListener, moved);
    expect(plan.needRestart).toEqual(['signing.jwks.path', 'signing.jwks.port']);
    expect(plan.applied).toEqual(['signing.issuer']);
    expect(plan.effective.signing?.jwks).toEqual(withListener.signing?.jwks);
    const added = planReload(config(), moved);
    expect(added.effective.signing?.jwks.port).toBeUndefined();
    expect(added.effective.signing?.jwks.path).toBe('/keys.json');
  });
});
