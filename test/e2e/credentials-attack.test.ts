// The next-password retry on a real gateway over loopback: a caller that hangs up while the retry is at SnapLogic.
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, testSecrets, type TestGateway } from '../helpers/gateway.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
const open: TestGateway[] = [];
const NEXT_PASSWORD = 'acme-next-e2e-attack-Pa55word!';
recordSecret(NEXT_PASSWORD);
afterEach(async () => {
  world.standIn.onRequest = undefined;
  world.standIn.setFault(undefined);
  world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
  for (const gw of open.splice(0)) await gw.close();
});

describe('a caller that hangs up during the retry with the next password', () => {
  it('gets one outcome, client_closed_request, naming the next password; nothing is sent a third time', async () => {
    const doc = baseConfig(world.standIn, world.issuer) as Record<string, any>;
    doc.orgs['Acme-Prod'].nextPassword = 'env:ACME_SL_NEXT_PASSWORD';
    const gw = await startTestGateway(doc, { ...testSecrets, ACME_SL_NEXT_PASSWORD: NEXT_PASSWORD });
    open.push(gw);
    world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, NEXT_PASSWORD);
    const ruuid = world.standIn.addRun('Acme-Prod');
    const seen = () => world.standIn.startCalls().filter((r) => r.path.includes(ruuid));
    // The retry (the second request for this run) is held at SnapLogic long enough for the caller to leave.
    world.standIn.onRequest = (req) => {
      if (req.path.includes(ruuid) && seen().length === 2) {
        world.standIn.setFault({ kind: 'latency', ms: 1_500, count: 1 });
      }
    };
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const req = request({
      host: '127.0.0.1',
      port: gw.gateway.port,
      method: 'POST',
      path: `/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}`,
      headers: { authorization: `Bearer ${jwt}` },
    });
    req.on('error', () => undefined);
    req.end();
    await until(
      () => seen().length === 2,
      5_000,
      () => 'the retry at SnapLogic',
    );
    req.destroy();
    await until(
      () => gw.audit.some((e) => e.type === 'outcome' && e.ruuid === ruuid),
      5_000,
      () => 'the outcome',
    );
    await new Promise((r) => setTimeout(r, 1_800));
    const events = gw.audit.filter((e) => e.ruuid === ruuid);
    expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
    expect(events[1]).toMatchObject({ decision: 'aborted', reason: 'client_closed_request', status: 499 });
    expect(events[1]!.upstreamIdentity).toEqual({ type: 'basic', name: 'default', nextPassword: true });
    expect(seen()).toHaveLength(2);
  });
});
