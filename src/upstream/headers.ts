// Header hygiene for forwarding: what leaves for SnapLogic and what comes back to the caller. Pure functions.

// RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones proxies still see.
const hopByHop = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authenticate', 'proxy-authorization',
]);

// The caller's credentials and anything describing the hop: never forwarded.
const neverForwarded = new Set([
  'authorization', 'cookie', 'host', 'content-length', 'expect', 'forwarded', 'x-real-ip',
  'x-request-id', 'accept-encoding', 'via',
]);

// Response headers SnapLogic may send that reach the caller. Everything else (Set-Cookie from the
// service account's session, server banners, hop-by-hop fields) stays at the gateway.
const passedBack = new Set([
  'content-type', 'content-encoding', 'content-language', 'cache-control', 'retry-after', 'x-sl-statuscode',
]);

/** Names listed in the Connection header are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(connection: string | undefined): Set<string> {
  const listed = new Set<string>();
  for (const token of (connection ?? '').split(',')) {
    const name = token.trim().toLowerCase();
    if (name) listed.add(name);
  }
  return listed;
}

/**
 * The headers to send to SnapLogic: the caller's, minus credentials, cookies, hop-by-hop and
 * X-Forwarded-* fields, plus the org's Basic credential, the request id and trace context.
 * The Authorization header is set last, so nothing the caller sent can replace it.
 */
export function upstreamRequestHeaders(
  incoming: Iterable<[string, string]>,
  add: { authorization: string; requestId: string },
): Record<string, string> {
  const entries = [...incoming].map(([name, value]): [string, string] => [name.toLowerCase(), value]);
  const listed = connectionListed(entries.find(([name]) => name === 'connection')?.[1]);
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (hopByHop.has(name) || neverForwarded.has(name) || listed.has(name) || name.startsWith('x-forwarded-')) continue;
    out[name] = value;
  }
  out['x-request-id'] = add.requestId;
  out.authorization = add.authorization;
  return out;
}

/** The SnapLogic response headers that go back to the caller. */
export function callerResponseHeaders(upstream: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in upstream) {
    const value = upstream[name];
    const lower = name.toLowerCase();
    if (value === undefined || !(passedBack.has(lower) || lower.startsWith('x-sl-'))) continue;
    out[lower] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

const saneRequestId = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's X-Request-Id when it is short and plain; otherwise undefined (a new one is made). */
export function acceptableRequestId(value: string | undefined | null): string | undefined {
  return value && saneRequestId.test(value) ? value : undefined;
}
