// Each org's upstream, resolved once at start-up from config: its pod origin and its effective timeouts.
import type { Config, OrgConfig } from '../config/schema.js';

/** The one timeout shape of a call to SnapLogic, in ms: every field set. */
export interface UpstreamTimeouts {
  /** To establish a TCP/TLS connection. */
  readonly connect: number;
  /** From sending the request to receiving the response headers. */
  readonly headers: number;
  /** Of silence allowed while receiving the response body. */
  readonly body: number;
}

export interface UpstreamOrg {
  /** The pod origin from config, e.g. https://elastic.snaplogic.com. Never from the caller. */
  readonly origin: string;
  readonly timeouts: UpstreamTimeouts;
}

/** An org's own timeouts where it sets them, `upstream`'s otherwise: the only place the two are merged. */
export function effectiveTimeouts(upstream: Config['upstream'], own: OrgConfig['timeouts']): UpstreamTimeouts {
  return {
    connect: own?.connect ?? upstream.connectTimeout,
    headers: own?.headers ?? upstream.headersTimeout,
    body: own?.body ?? upstream.bodyTimeout,
  };
}

/** The longest a call to SnapLogic can take with these timeouts (a concurrency lease outlives it). */
export function longestCallMs(t: UpstreamTimeouts): number {
  return t.connect + t.headers + t.body;
}

/** Every configured org's upstream; an org not in the map is not served. */
export function upstreamOrgs(config: Pick<Config, 'orgs' | 'upstream'>): ReadonlyMap<string, UpstreamOrg> {
  const orgs = new Map<string, UpstreamOrg>();
  for (const [name, org] of Object.entries(config.orgs)) {
    orgs.set(name, { origin: new URL(org.pod).origin, timeouts: effectiveTimeouts(config.upstream, org.timeouts) });
  }
  return orgs;
}
