// redis.url (and SNAPGATE_REDIS_URL) is parsed as a URL: host, port and database only, never credentials, a query
// or a fragment.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { minimalConfig } from '../helpers/config.js';

const SECRET = 'Redis-S3cret-pw';

const withRedis = (redis: unknown) => minimalConfig({ redis });

function problemsOf(doc: unknown, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(doc, 'test', env);
  } catch (err) {
    if (err instanceof ConfigError) {
      expect(err.message).not.toContain(SECRET);
      return [...err.problems];
    }
    throw err;
  }
  return [];
}

describe('redis.url', () => {
  it.each([
    ['a password in the query', `redis://127.0.0.1:6379?password=${SECRET}`],
    ['a password in the query after a database', `redis://127.0.0.1:6379/0?password=${SECRET}`],
    ['userinfo', `redis://:${SECRET}@127.0.0.1:6379`],
    ['a user and password', `rediss://default:${SECRET}@redis.internal:6380`],
    ['a fragment', `redis://127.0.0.1:6379#${SECRET}`],
    ['an unparseable URL', `redis://:${SECRET}@127.0.0.1:port`],
  ])('refuses %s without echoing the value, pointing at redis.password', (_, url) => {
    const problems = problemsOf(withRedis({ url }));
    expect(problems, problems.join('\n')).toEqual([expect.stringMatching(/^redis\.url: /)]);
    expect(problems[0]).toContain('redis.password');
    expect(problems[0]).not.toContain(SECRET);
  });

  it.each([
    'redis://127.0.0.1:6379',
    'redis://127.0.0.1:6379/3',
    'rediss://redis.internal:6380',
    'redis://redis',
    'redis://[::1]:6379/',
  ])('accepts %s', (url) => {
    expect(problemsOf(withRedis({ url }))).toEqual([]);
  });

  it.each(['http://127.0.0.1:6379', 'redis://127.0.0.1:6379/db', 'redis:///0'])('refuses %s', (url) => {
    expect(problemsOf(withRedis({ url }))).toEqual([expect.stringMatching(/^redis\.url: /)]);
  });

  it('applies the same rule to SNAPGATE_REDIS_URL, naming the variable and not its value', () => {
    const problems = problemsOf(withRedis({ url: 'redis://127.0.0.1:6379' }), {
      SNAPGATE_REDIS_URL: `redis://127.0.0.1:6379?password=${SECRET}`,
    });
    expect(problems, problems.join('\n')).toEqual([expect.stringMatching(/^redis\.url: .*SNAPGATE_REDIS_URL/)]);
    expect(problems[0]).not.toContain(SECRET);
    expect(parseConfig(withRedis(undefined), 'test', { SNAPGATE_REDIS_URL: 'redis://redis:6379' }).redis?.url).toBe(
      'redis://redis:6379',
    );
  });
});

describe('how logs name a Redis deployment', () => {
  it('names host:port for standalone, sentinel and cluster, and nothing else from the config', async () => {
    const { describeRedis } = await import('../../src/redis/client.js');
    expect(describeRedis({ url: 'rediss://redis.internal:6380/2' })).toBe('redis.internal:6380');
    expect(describeRedis({ url: 'redis://redis' })).toBe('redis:6379');
    expect(describeRedis({ url: 'redis://[::1]:7000' })).toBe('[::1]:7000');
    expect(describeRedis({ url: undefined })).toBe('127.0.0.1:6379');
    expect(
      describeRedis({
        sentinel: {
          name: 'mymaster',
          sentinels: [
            { host: 's1', port: 26379 },
            { host: 's2', port: 26379 },
          ],
        },
      }),
    ).toBe('sentinel mymaster via s1:26379,s2:26379');
    expect(
      describeRedis({
        cluster: {
          nodes: [
            { host: 'r1', port: 7000 },
            { host: 'r2', port: 7001 },
          ],
        },
      }),
    ).toBe('cluster r1:7000,r2:7001');
    // Were validation ever bypassed, the URL itself still never reaches a log line.
    expect(describeRedis({ url: `redis://127.0.0.1:6379?password=${SECRET}` })).not.toContain(SECRET);
  });
});
