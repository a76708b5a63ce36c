// Prometheus metrics (prom-client) on a registry of our own, so several gateways in one process do not collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { snapgateVersion } from '../version.js';

export interface Metrics {
  readonly registry: Registry;
  /** Every audited request, by decision, reason code and org (a configured org, else `_other`). */
  readonly requests: Counter<'decision' | 'reason' | 'org'>;
  readonly requestDuration: Histogram<'decision' | 'org'>;
  readonly upstreamDuration: Histogram<'status' | 'org'>;
  /** Config reloads (SIGHUP, config file change) by result: success or failure. */
  readonly configReloads: Counter<'result'>;
  /** 1 for the running config's hash (configHash in config/reload-plan.ts); the previous hash's series is removed. */
  readonly configInfo: Gauge<'hash'>;
  /** When the active config was loaded (start-up or the last successful reload), Unix seconds. */
  readonly configLoadedAt: Gauge;
  /** Credential reloads (SIGHUP, a secret file change, a config reload) by result. */
  readonly credentialReloads: Counter<'result'>;
  /** The identity provider JWKS fetches, by issuer (as configured) and result (ok | error). */
  readonly jwksFetches: Counter<'issuer' | 'result'>;
  /** 1 while an audit sink takes events, 0 while it fails (read at scrape time). */
  readonly auditSinkUp: Gauge<'sink'>;
  /** Audit events in the local spool, waiting to be replayed into their sink (read at scrape time). */
  readonly auditSpoolEvents: Gauge<'sink'>;
  /** Bytes in the local spool files (read at scrape time). */
  readonly auditSpoolBytes: Gauge<'sink'>;
  /** Per org and policy: allowed, limited (refused), or would_limit (a shadow policy that would have refused). */
  readonly rateLimitDecisions: Counter<'org' | 'policy' | 'outcome'>;
  /** 1 while rate limiting runs without Redis. */
  readonly rateLimitDegraded: Gauge;
  /** Transitions between Redis and the fallback, by the mode entered (redis | degraded). */
  readonly rateLimitModeChanges: Counter<'mode'>;
  /** Decisions made without Redis, by onRedisError mode (local | open | closed). */
  readonly rateLimitDegradedDecisions: Counter<'mode'>;
  /** Audit events a sink could not hold while it was down (its queue was full). */
  readonly auditDropped: Counter<'sink'>;
  /** Audit events waiting in memory per sink (read at scrape time). */
  readonly auditQueueDepth: Gauge<'sink'>;
  /** Signed checkpoints stored, per sink and reason (open, interval, retention, shutdown). */
  readonly auditCheckpoints: Counter<'sink' | 'reason'>;
  /** Audit records removed by retention (maxLen, maxFiles), each removal behind a signed marker. */
  readonly auditRetentionRemoved: Counter<'sink'>;
  /** JWTs signed for SnapLogic, per org (a token reused from the cache is not counted). */
  readonly jwtMinted: Counter<'org'>;
  /** Calls retried with the next password after SnapLogic answered 401 to the current one. */
  readonly credentialFallbacks: Counter<'org' | 'identity'>;
  /** Seconds since each signing key was made (its file's mtime, else first loaded), by kid and state. */
  readonly signingKeyAge: Gauge<'kid' | 'state'>;
}

/**
 * Creates the metrics. Labels carry configured org names, policy names and codes only: never a caller, token or
 * credential.
 */
export function createMetrics(
  options: {
    defaultMetrics?: boolean;
    /** snapgate's version, for snapgate_build_info (default: its package.json's). */
    version?: string;
    /** Read at scrape time for snapgate_in_flight_calls. */
    inFlight?: () => number;
    /** Read at scrape time for snapgate_signing_key_age_seconds. */
    signingKeys?: () => readonly { kid: string; state: string; since: number }[];
  } = {},
): Metrics {
  const { signingKeys, inFlight } = options;
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'snapgate_' });
  const ms = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  // With workers the primary merges each worker's series (prom-client's aggregator): counts add up, an info
  // series stays 1, a sink is up only where every worker says so.
  new Gauge({
    name: 'snapgate_build_info',
    help: "snapgate's version and the Node.js it runs on (always 1)",
    labelNames: ['version', 'node'],
    registers: [registry],
    aggregator: 'max',
  }).set({ version: options.version ?? snapgateVersion(), node: process.versions.node }, 1);
  new Gauge({
    name: 'snapgate_in_flight_calls',
    help: 'Calls in flight: from their first byte until their outcome is recorded and their answer has left',
    registers: [registry],
    collect() {
      if (inFlight !== undefined) this.set(inFlight());
    },
  });
  const metrics: Metrics = {
    registry,
    requests: new Counter({
      name: 'snapgate_requests_total',
      help: 'Requests by audit decision, reason code and org (a configured org, else _other)',
      labelNames: ['decision', 'reason', 'org'],
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'snapgate_request_duration_seconds',
      help: 'Time to answer, by decision and org',
      labelNames: ['decision', 'org'],
      buckets: ms,
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: 'snapgate_upstream_duration_seconds',
      help: 'SnapLogic call time, by status and org',
      labelNames: ['status', 'org'],
      buckets: ms,
      registers: [registry],
    }),
    configReloads: new Counter({
      name: 'snapgate_config_reloads_total',
      help: 'Config reloads (SIGHUP, config file change) by result: success or failure',
      labelNames: ['result'],
      registers: [registry],
    }),
    configInfo: new Gauge({
      name: 'snapgate_config_info',
      help: "The active config's hash (always 1); compare it across instances",
      labelNames: ['hash'],
      registers: [registry],
      aggregator: 'max',
    }),
    configLoadedAt: new Gauge({
      name: 'snapgate_config_last_reload_success_timestamp_seconds',
      help: 'When the active config was loaded (start-up or the last successful reload), Unix seconds',
      registers: [registry],
      aggregator: 'min',
    }),
    credentialReloads: new Counter({
      name: 'snapgate_credential_reloads_total',
      help: 'Credential reloads (SIGHUP, secret file change, config reload) by result: success or failure',
      labelNames: ['result'],
      registers: [registry],
    }),
    jwksFetches: new Counter({
      name: 'snapgate_jwks_fetches_total',
      help: "Fetches of an identity provider's JWKS, by issuer and result (ok or error)",
      labelNames: ['issuer', 'result'],
      registers: [registry],
    }),
    auditSinkUp: new Gauge({
      name: 'snapgate_audit_sink_up',
      help: '1 while an audit sink takes events, 0 while it fails',
      labelNames: ['sink'],
      registers: [registry],
      aggregator: 'min',
    }),
    auditSpoolEvents: new Gauge({
      name: 'snapgate_audit_spool_events',
      help: 'Audit events in the local spool, waiting to be replayed into their sink',
      labelNames: ['sink'],
      registers: [registry],
    }),
    auditSpoolBytes: new Gauge({
      name: 'snapgate_audit_spool_bytes',
      help: 'Bytes in the local audit spool files',
      labelNames: ['sink'],
      registers: [registry],
    }),
    rateLimitDecisions: new Counter({
      name: 'snapgate_ratelimit_decisions_total',
      help: 'Rate-limit outcomes per org and policy: allowed, limited, would_limit (shadow)',
      labelNames: ['org', 'policy', 'outcome'],
      registers: [registry],
    }),
    rateLimitDegraded: new Gauge({
      name: 'snapgate_ratelimit_degraded',
      help: '1 while rate limiting runs without Redis',
      registers: [registry],
    }),
    rateLimitModeChanges: new Counter({
      name: 'snapgate_ratelimit_mode_changes_total',
      help: 'Switches between Redis and the fallback, by mode entered',
      labelNames: ['mode'],
      registers: [registry],
    }),
    rateLimitDegradedDecisions: new Counter({
      name: 'snapgate_ratelimit_degraded_decisions_total',
      help: 'Rate-limit decisions made without Redis, by onRedisError mode',
      labelNames: ['mode'],
      registers: [registry],
    }),
    auditDropped: new Counter({
      name: 'snapgate_audit_dropped_total',
      help: "Audit events dropped because a sink's queue was full",
      labelNames: ['sink'],
      registers: [registry],
    }),
    auditCheckpoints: new Counter({
      name: 'snapgate_audit_checkpoints_total',
      help: 'Signed audit checkpoints stored (or spooled), by sink and reason',
      labelNames: ['sink', 'reason'],
      registers: [registry],
    }),
    auditRetentionRemoved: new Counter({
      name: 'snapgate_audit_retention_removed_total',
      help: 'Audit records removed by retention, each removal behind a signed retention marker',
      labelNames: ['sink'],
      registers: [registry],
    }),
    auditQueueDepth: new Gauge({
      name: 'snapgate_audit_queue_depth',
      help: 'Audit events waiting in memory for their sink',
      labelNames: ['sink'],
      registers: [registry],
    }),
    jwtMinted: new Counter({
      name: 'snapgate_jwt_minted_total',
      help: 'JWTs signed for SnapLogic, per org (reused tokens are not counted)',
      labelNames: ['org'],
      registers: [registry],
    }),
    credentialFallbacks: new Counter({
      name: 'snapgate_credential_fallbacks_total',
      help: 'Calls retried with the next password after SnapLogic answered 401 to the current one',
      labelNames: ['org', 'identity'],
      registers: [registry],
    }),
    signingKeyAge: new Gauge({
      name: 'snapgate_signing_key_age_seconds',
      help: "Seconds since each signing key was made (its file's mtime, else first loaded), by kid and state",
      labelNames: ['kid', 'state'],
      registers: [registry],
      collect() {
        if (signingKeys === undefined) return;
        this.reset();
        const now = Date.now();
        for (const k of signingKeys()) this.labels(k.kid, k.state).set(Math.max(0, Math.round((now - k.since) / 1000)));
      },
    }),
  };
  // Counters an alert takes increase() of start at 0, so that the first failure of a process is an increase.
  for (const result of ['success', 'failure']) {
    metrics.configReloads.labels(result).inc(0);
    metrics.credentialReloads.labels(result).inc(0);
  }
  return metrics;
}

/**
 * prom-client's child series for label values, remembered by those values: on the request path a
 * string lookup instead of prom-client hashing a label object on every call. Label values are
 * bounded (configured orgs, policies, codes, statuses), so the map is too.
 */
export function seriesOf<T>(labels: (...values: string[]) => T): (...values: string[]) => T {
  const children = new Map<string, T>();
  return (...values) => {
    const key = values.join('\u0000');
    let child = children.get(key);
    if (child === undefined) {
      child = labels(...values);
      children.set(key, child);
    }
    return child;
  };
}
