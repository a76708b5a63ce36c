// Header hygiene for forwarding: an allow-list of what leaves for SnapLogic, and what comes back to the caller. Pure
// functions.

/**
 * The only caller headers that reach SnapLogic. Everything else stays at the gateway: credentials,
 * cookies, hop-by-hop fields, X-Forwarded-*, and headers some proxies or servers act on
 * (X-HTTP-Method-Override, X-Original-URL, impersonation headers, True-Client-IP, Origin, ...).
 * snapgate adds its own X-Request-Id and the org's Authorization. `traceparent` and `tracestate` pass as they came
 * while tracing is off; with tracing on, the traced forwarder (ops/request-tracing.ts) replaces them with the
 * context of snapgate's own client span, so SnapLogic sees snapgate as the caller's child.
 */
export const FORWARDED_REQUEST_HEADERS: readonly string[] = [
  'content-type',
  'accept',
  'user-agent',
  'traceparent',
  'tracestate',
];
const forwarded = new Set(FORWARDED_REQUEST_HEADERS);

// Response headers SnapLogic may send that reach the caller. Everything else (Set-Cookie from the
// service account's session, server banners, hop-by-hop fields) stays at the gateway.
const passedBack = new Set([
  'content-type',
  'content-encoding',
  'content-language',
  'cache-control',
  'retry-after',
  'x-sl-statuscode',
]);

/**
 * The headers to send to SnapLogic: the caller's headers on the allow-list (FORWARDED_REQUEST_HEADERS),
 * plus snapgate's request id and the org's credential. Authorization is set last, so nothing the
 * caller sent can replace it.
 */
export function upstreamRequestHeaders(
  incoming: Iterable<[string, string]>,
  add: { authorization: string; requestId: string },
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of incoming) {
    const lower = name.toLowerCase();
    if (forwarded.has(lower)) out[lower] = value;
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
