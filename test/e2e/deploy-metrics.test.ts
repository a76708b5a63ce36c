// deploy/grafana's dashboard and deploy/prometheus's alert rules use only series snapgate serves: every snapgate_*
// name in their PromQL (histograms by their base name) is on the admin /metrics of the built gateway, run as a
// process after a few allowed and refused calls. The rules file is a valid Prometheus rule file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { baseConfig, ROOT, spawnGateway, startTestStandIn, type GatewayProcess } from '../helpers/gateway.js';
import { recordOutput } from '../helpers/leak-scan.js';
import { RedisServer } from '../helpers/redis-server.js';
import type { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

const RUNTIME = '/api/1/rest/public/runtime';
const DASHBOARD = join(ROOT, 'deploy/grafana/snapgate-dashboard.json');
const ALERTS = join(ROOT, 'deploy/prometheus/snapgate-alerts.yaml');

interface Rule {
  alert?: string;
  record?: string;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

/** Every PromQL expression of the dashboard: panel targets (rows' nested panels too), variables, annotations. */
function dashboardExpressions(): string[] {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Record<string, any>;
  const exprs: string[] = [];
  const walk = (panels: Record<string, any>[] = []) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (typeof t.expr === 'string') exprs.push(t.expr);
      walk(p.panels);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (v.type === 'query' && typeof q === 'string') exprs.push(q);
  }
  for (const a of dash.annotations?.list ?? []) if (typeof a.expr === 'string') exprs.push(a.expr);
  return exprs;
}

function alertRules(): { groups: { name: string; rules: Rule[] }[] } {
  return parse(readFileSync(ALERTS, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
}

/** The snapgate_* names an expression uses; a histogram's _bucket/_sum/_count series named by the histogram. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bsnapgate_[A-Za-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

describe('the Grafana dashboard and the Prometheus alert rules', () => {
  it('the rules file is Prometheus rule groups: each rule an alert with expr, for, severity and summary', () => {
    const { groups } = alertRules();
    expect(Array.isArray(groups) && groups.length > 0).toBe(true);
    expect(new Set(groups.map((g) => g.name)).size, 'group names are unique').toBe(groups.length);
    const names = groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(new Set(names).size, 'alert names are unique').toBe(names.length);
    for (const group of groups) {
      expect(typeof group.name).toBe('string');
      expect(group.rules.length, group.name).toBeGreaterThan(0);
      for (const rule of group.rules) {
        const where = `${group.name}/${rule.alert ?? '?'}`;
        expect(Object.keys(rule).sort(), where).toEqual(['alert', 'annotations', 'expr', 'for', 'labels']);
        expect(rule.alert, where).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        expect(typeof rule.expr === 'string' && rule.expr.trim() !== '', where).toBe(true);
        expect(String(rule.for), where).toMatch(/^\d+[smhd]$/);
        expect(['critical', 'warning', 'info'], where).toContain(rule.labels?.severity);
        expect(typeof rule.annotations?.summary === 'string' && rule.annotations.summary !== '', where).toBe(true);
        // Balanced brackets: the cheapest check that an expression was not cut short.
        const expr = String(rule.expr);
        for (const [open, close] of [
          ['(', ')'],
          ['{', '}'],
          ['[', ']'],
        ] as const) {
          expect(expr.split(open).length, `${where} ${open}${close}`).toBe(expr.split(close).length);
        }
      }
    }
  });

  it('alerts on what the issue asks for', () => {
    const rules = alertRules().groups.flatMap((g) => g.rules);
    const exprOf = (pattern: RegExp) => rules.filter((r) => pattern.test(String(r.expr)));
    expect(exprOf(/^up\{/m), 'instance down via up').toHaveLength(1);
    for (const name of [
      'snapgate_audit_sink_up',
      'snapgate_audit_dropped_total',
      'snapgate_audit_spool_bytes',
      'snapgate_requests_total',
      'snapgate_request_duration_seconds_bucket',
      'snapgate_ratelimit_degraded',
      'snapgate_config_reloads_total',
      'snapgate_jwks_fetches_total',
      'snapgate_signing_key_age_seconds',
    ]) {
      expect(exprOf(new RegExp(`\\b${name}\\b`)).length, name).toBeGreaterThan(0);
    }
  });

  describe('against the built gateway', () => {
    let redis: RedisServer;
    let standIn: SnapLogicStandIn;
    let issuer: TokenIssuer;
    let gw: GatewayProcess;
    let scrape: string;

    beforeAll(async () => {
      redis = await RedisServer.start();
      standIn = await startTestStandIn();
      issuer = await TokenIssuer.start();
      gw = await spawnGateway(
        baseConfig(standIn, issuer, {
          admin: { host: '127.0.0.1', port: 0 },
          redis: { url: redis.url },
          audit: { sinks: [{ type: 'stdout' }, { type: 'redis' }] },
        }),
        { built: true },
      );
      expect(gw.port, gw.stderr.join('\n')).toBeGreaterThan(0);
      const listening = JSON.parse(gw.stderr.find((l) => l.includes('"snapgate listening"'))!) as { adminPort: number };
      // Labelled series appear once a call gives them values: one allowed, one refused by policy, one without a token.
      const ruuid = standIn.addRun('Acme-Prod');
      const allowed = await fetch(`${gw.url}${RUNTIME}/start/Acme-Prod/${ruuid}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await issuer.mint({ sub: 'svc-billing' })}` },
      });
      expect(allowed.status, await allowed.text()).toBe(200);
      const forbidden = await fetch(`${gw.url}${RUNTIME}/start/Other-Org/${ruuid}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await issuer.mint({ sub: 'svc-billing' })}` },
      });
      expect(forbidden.status, await forbidden.text()).toBe(403);
      const anonymous = await fetch(`${gw.url}${RUNTIME}/start/Acme-Prod/${ruuid}`, { method: 'POST' });
      expect(anonymous.status, await anonymous.text()).toBe(401);
      scrape = await (await fetch(`http://127.0.0.1:${listening.adminPort}/metrics`)).text();
      recordOutput(scrape);
    });

    afterAll(async () => {
      gw?.kill('SIGKILL');
      await gw?.exited;
      await standIn?.close();
      await issuer?.close();
      await redis?.stop();
    });

    it('serves every snapgate_* series the dashboard and the alert rules use', () => {
      const used = new Set([
        ...dashboardExpressions().flatMap(metricNames),
        ...alertRules().groups.flatMap((g) => g.rules.flatMap((r) => metricNames(String(r.expr)))),
      ]);
      expect(used.size).toBeGreaterThan(20);
      const served = new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
      const missing = [...used].filter((name) => !served.has(name)).sort();
      expect(missing, 'used by deploy/ but not on /metrics').toEqual([]);
    });

    it('labels the request series with the configured org, which the dashboard filters on', () => {
      expect(scrape).toMatch(/^snapgate_requests_total\{[^}]*decision="allowed"[^}]*org="Acme-Prod"[^}]*\} 1$/m);
      expect(scrape).toMatch(/^snapgate_requests_total\{[^}]*decision="forbidden"[^}]*\} 1$/m);
      expect(scrape).toMatch(/^snapgate_upstream_duration_seconds_count\{[^}]*status="200"[^}]*org="Acme-Prod"/m);
    });
  });
});
