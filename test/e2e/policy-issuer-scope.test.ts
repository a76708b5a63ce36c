// Policy scoped to the issuer, through the real request path: two JWKS issuers, one caller name, two different callers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/load.js';
import { baseConfig, startTestGateway, startTestStandIn } from '../helpers/gateway.js';
import { resume } from '../helpers/http.js';
import type { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

let standIn: SnapLogicStandIn;
let issuerA: TokenIssuer;
let issuerB: TokenIssuer;

beforeAll(async () => {
  standIn = await startTestStandIn();
  issuerA = await TokenIssuer.start();
  issuerB = await TokenIssuer.start();
});

afterAll(async () => {
  await standIn.close();
  await issuerA.close();
  await issuerB.close();
});

const issuerEntry = (i: TokenIssuer) => ({
  issuer: i.issuer,
  audience: 'snapgate',
  jwksUri: i.jwksUri,
  algorithms: ['ES256'],
});

describe('policy scoped to the issuer', () => {
  it('refuses to start with two issuers and a rule that names no issuer', async () => {
    const doc = baseConfig(standIn, issuerA, {
      auth: { issuers: [issuerEntry(issuerA), issuerEntry(issuerB)] },
      policy: [{ match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] }],
    });
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
      baseConfig(standIn, issuerA, {
        auth: { issuers: [issuerEntry(issuerA), issuerEntry(issuerB)] },
        policy: [
          { match: { iss: issuerA.issuer, sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
        ],
      }),
    );
    try {
      const before = standIn.received.length;
      const fromB = await resume(
        gw.url,
        'Acme-Prod',
        standIn.addRun('Acme-Prod'),
        await issuerB.mint({ sub: 'svc-billing' }),
      );
      expect(fromB.status, fromB.text).toBe(403);
      expect(fromB.json.code).toBe('forbidden');
      expect(standIn.received.length).toBe(before);

      const fromA = await resume(
        gw.url,
        'Acme-Prod',
        standIn.addRun('Acme-Prod'),
        await issuerA.mint({ sub: 'svc-billing' }),
      );
      expect(fromA.status, fromA.text).toBe(200);
      expect(standIn.received.length).toBe(before + 1);
    } finally {
      await gw.close();
    }
  });
});
