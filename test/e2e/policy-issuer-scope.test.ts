// Policy scoped to the issuer, through the real request path: two JWKS issuers, one caller name, two different callers.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/load.js';
import { baseConfig, startTestGateway, startTestStandIn } from '../helpers/gateway.js';
import { resumeNewRun } from '../helpers/http.js';
import { TokenIssuer } from '../helpers/token-issuer.js';
import { forSuite } from '../helpers/world.js';

const world = forSuite(
  async () => ({ standIn: await startTestStandIn(), a: await TokenIssuer.start(), b: await TokenIssuer.start() }),
  async ({ standIn, a, b }) => {
    await standIn.close();
    await a.close();
    await b.close();
  },
);

/** Both issuers configured; `policy` in place of the base config's. */
const twoIssuers = (policy: unknown[]) =>
  baseConfig(world.standIn, world.a, { auth: { issuers: [world.a.configEntry(), world.b.configEntry()] }, policy });

describe('policy scoped to the issuer', () => {
  it('refuses to start with two issuers and a rule that names no issuer', async () => {
    const doc = twoIssuers([{ match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] }]);
    const err = await startTestGateway(doc).then(
      // If it started (the old behaviour), close it so the run does not hang, then fail.
      async (gw) => {
        await gw.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^policy\.0\.match\.iss: /)]);
  });

  it("answers 403 to issuer B's token whose sub equals the caller a rule names for issuer A", async () => {
    const gw = await startTestGateway(
      twoIssuers([
        { match: { iss: world.a.issuer, sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
      ]),
    );
    try {
      const before = world.standIn.received.length;
      const fromB = await resumeNewRun(gw.url, world.standIn, await world.b.mint({ sub: 'svc-billing' }));
      expect(fromB.status, fromB.text).toBe(403);
      expect(fromB.json.code).toBe('forbidden');
      expect(world.standIn.received.length).toBe(before);

      const fromA = await resumeNewRun(gw.url, world.standIn, await world.a.mint({ sub: 'svc-billing' }));
      expect(fromA.status, fromA.text).toBe(200);
      expect(world.standIn.received.length).toBe(before + 1);
    } finally {
      await gw.close();
    }
  });
});
