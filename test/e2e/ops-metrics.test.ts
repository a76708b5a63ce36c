// The series an operator alerts on, by value: audit sink health and spool while Redis stalls, JWKS fetches by result,
// calls in flight, build info. A real gateway, a real redis-server, the stand-in and a real JWKS issuer.
import { describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, tempDir } from '../helpers/gateway.js';
import { resumeNewRun, send } from '../helpers/http.js';
import { TokenIssuer } from '../helpers/token-issuer.js';
import { poll, until } from '../helpers/wait.js';
import { useWorld } from '../helpers/world.js';
import { snapgateVersion } from '../../src/version.js';

const world = useWorld();

/** The value of the one series `name{labels}` in a scrape, or undefined when it is absent. */
function valueOf(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('audit sink health and the spool', () => {
  it('shows a stalled sink down and its spool growing, then up and empty once it is back; sinks of one type apart', async () => {
    const gw = await startTestGateway(
      baseConfig(world.standIn, world.issuer, {
        redis: { url: world.redis.url, commandTimeout: '100ms', requiredForReadiness: false },
        admin: { host: '127.0.0.1', port: 0 },
        audit: {
          sinks: [
            { type: 'redis', stream: 'audit:{m1}:events' },
            { type: 'redis', stream: 'audit:{m2}:events' },
          ],
          onFailure: 'spool',
          spoolDir: tempDir('snapgate-spool-'),
          ackTimeout: '300ms',
        },
      }),
    );
    const scrape = async () => (await send(`http://127.0.0.1:${gw.gateway.adminPort}`, 'GET', '/metrics')).text;
    try {
      expect((await resumeNewRun(gw.url, world.standIn, world.jwt)).status).toBe(200);
      let text = await scrape();
      expect(valueOf(text, 'snapgate_audit_sink_up{sink="redis"}')).toBe(1);
      expect(valueOf(text, 'snapgate_audit_sink_up{sink="redis.2"}')).toBe(1);
      expect(valueOf(text, 'snapgate_audit_spool_events{sink="redis"}')).toBe(0);

      world.redis.pause();
      try {
        for (let i = 0; i < 3; i++) expect((await resumeNewRun(gw.url, world.standIn, world.jwt)).status).toBe(200);
        text = await scrape();
        for (const sink of ['redis', 'redis.2']) {
          expect(valueOf(text, `snapgate_audit_sink_up{sink="${sink}"}`), text).toBe(0);
          // Each call's write-ahead attempt was spooled before it went ahead (its outcome may still be on the way).
          expect(valueOf(text, `snapgate_audit_spool_events{sink="${sink}"}`)).toBeGreaterThanOrEqual(3);
          expect(valueOf(text, `snapgate_audit_spool_bytes{sink="${sink}"}`)).toBeGreaterThan(1_000);
        }
      } finally {
        world.redis.resume();
      }
      text = await poll(
        scrape,
        (t) =>
          valueOf(t, 'snapgate_audit_sink_up{sink="redis.2"}') === 1 &&
          valueOf(t, 'snapgate_audit_spool_events{sink="redis.2"}') === 0 &&
          valueOf(t, 'snapgate_audit_spool_bytes{sink="redis"}') === 0,
        10_000,
        200,
      );
      expect(valueOf(text, 'snapgate_audit_sink_up{sink="redis"}')).toBe(1);
    } finally {
      await gw.close();
    }
  }, 30_000);
});

describe('identity provider JWKS fetches', () => {
  it('are counted by issuer and result', async () => {
    const down = await TokenIssuer.start();
    const downIssuer = down.issuer;
    const downEntry = { issuer: downIssuer, audience: 'snapgate', jwksUri: down.jwksUri, algorithms: ['ES256'] };
    const token = await down.mint({ sub: 'svc-billing' });
    await down.close();
    const doc = baseConfig(world.standIn, world.issuer) as Record<string, any>;
    doc.auth.issuers.push({ ...downEntry, jwks: { cooldown: '1s' } });
    doc.policy = doc.policy.map((r: Record<string, any>) => ({
      ...r,
      match: { iss: world.issuer.issuer, ...r.match },
    }));
    const gw = await startTestGateway(doc);
    try {
      expect((await resumeNewRun(gw.url, world.standIn, world.jwt)).status).toBe(200);
      expect((await resumeNewRun(gw.url, world.standIn, token)).status).toBe(503);
      const text = await gw.gateway.metrics.registry.metrics();
      expect(valueOf(text, `snapgate_jwks_fetches_total{issuer="${world.issuer.issuer}",result="ok"}`)).toBe(1);
      expect(valueOf(text, `snapgate_jwks_fetches_total{issuer="${downIssuer}",result="error"}`)).toBeGreaterThan(0);
    } finally {
      await gw.close();
    }
  });
});

describe('calls in flight and build info', () => {
  it('counts a call from its first byte until its answer has left', async () => {
    const gw = await startTestGateway(baseConfig(world.standIn, world.issuer));
    try {
      const metric = async () =>
        valueOf(await gw.gateway.metrics.registry.metrics(), 'snapgate_in_flight_calls') ?? Number.NaN;
      expect(await metric()).toBe(0);
      world.standIn.setFault({ kind: 'latency', ms: 600, on: 'start', count: 1 });
      const slow = resumeNewRun(gw.url, world.standIn, world.jwt);
      await until(
        async () => (await metric()) === 1,
        5_000,
        () => 'one call in flight',
      );
      expect((await slow).status).toBe(200);
      await until(
        async () => (await metric()) === 0,
        5_000,
        () => 'none in flight after the answer',
      );
      const text = await gw.gateway.metrics.registry.metrics();
      expect(text).toContain(`snapgate_build_info{version="${snapgateVersion()}",node="${process.versions.node}"} 1`);
    } finally {
      world.standIn.setFault(undefined);
      await gw.close();
    }
  });
});
