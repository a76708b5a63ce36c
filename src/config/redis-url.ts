// Parses a redis:// or rediss:// URL into host, port, database and TLS; credentials, a query or a fragment are
// refused. No zod, no ioredis.

/** Where a Redis URL points. `where` is `host:port`, the only form of it that logs and errors show. */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  tls: boolean;
  where: string;
}

/** Why a Redis URL was refused. None of these carries any part of the URL, so they can be printed as they are. */
export type RedisUrlProblem = 'unparseable' | 'scheme' | 'credentials' | 'query' | 'host' | 'database';

export const redisUrlProblems: Readonly<Record<RedisUrlProblem, string>> = {
  unparseable: 'is not a URL of the form redis://host:port[/db] or rediss://host:port[/db]',
  scheme: 'must start with redis:// or rediss://',
  credentials: 'must not carry a user or password (user:password@)',
  query: 'must not carry a query string or fragment (such as ?password=)',
  host: 'must name a host',
  database: 'may end only in a database number, such as /0',
};

/**
 * Parses `text` with the WHATWG URL parser. Refuses userinfo and any query or fragment outright
 * (ioredis would read `?password=` as the password), so whatever is accepted can be shown.
 */
export function parseRedisUrl(
  text: string,
): { ok: true; target: RedisTarget } | { ok: false; problem: RedisUrlProblem } {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return { ok: false, problem: 'unparseable' };
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return { ok: false, problem: 'scheme' };
  if (u.username !== '' || u.password !== '') return { ok: false, problem: 'credentials' };
  // `search`/`hash` are empty for a bare "?" or "#"; the raw text catches those too.
  if (u.search !== '' || u.hash !== '' || /[?#]/.test(text)) return { ok: false, problem: 'query' };
  if (u.hostname === '') return { ok: false, problem: 'host' };
  const db = /^\/?$|^\/(\d+)$/.exec(u.pathname);
  if (db === null) return { ok: false, problem: 'database' };
  const tls = u.protocol === 'rediss:';
  const port = u.port === '' ? 6379 : Number(u.port);
  // IPv6 literals come back bracketed; the socket wants the bare address, the text keeps the brackets.
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { ok: true, target: { host, port, db: Number(db[1] ?? 0), tls, where: `${u.hostname}:${port}` } };
}
