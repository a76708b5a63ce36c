// The stand-in's dev routes (operatorRoutes, used by npm run dev:snaplogic): /healthz, and /dev/runs to seed and list
// runs; bad requests get a 4xx naming what to send, and without the option the paths stay SnapLogic's 404.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';

const ORGS = {
  'Acme-Prod': { username: 'u@example.com', password: 'p' },
  'Other-Org': { username: 'o', password: 'q' },
};

describe('stand-in dev routes', () => {
  let withRoutes: SnapLogicStandIn;
  let without: SnapLogicStandIn;

  beforeAll(async () => {
    withRoutes = await SnapLogicStandIn.start({ orgs: structuredClone(ORGS), transitionMs: 0, operatorRoutes: true });
    without = await SnapLogicStandIn.start({ orgs: structuredClone(ORGS), transitionMs: 0 });
  });
  afterAll(async () => {
    await withRoutes.close();
    await without.close();
  });

  const post = (s: SnapLogicStandIn, body: string) => fetch(`${s.url}/dev/runs`, { method: 'POST', body });

  it('answers /healthz with the orgs it serves', async () => {
    const res = await fetch(`${withRoutes.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', orgs: ['Acme-Prod', 'Other-Org'] });
  });

  it('seeds suspended runs of the org asked, which resume through the runtime API', async () => {
    const res = await post(withRoutes, JSON.stringify({ org: 'Other-Org', count: 2, label: 'nightly' }));
    expect(res.status).toBe(201);
    const { runs } = (await res.json()) as { runs: { org: string; ruuid: string; state: string; label: string }[] };
    expect(runs.map((r) => [r.org, r.state, r.label])).toEqual([
      ['Other-Org', 'Suspended', 'nightly'],
      ['Other-Org', 'Suspended', 'nightly'],
    ]);
    const start = await fetch(`${withRoutes.url}/api/1/rest/public/runtime/start/Other-Org/${runs[0]!.ruuid}`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('o:q').toString('base64')}` },
    });
    expect(start.status).toBe(200);
    const listed = (await (await fetch(`${withRoutes.url}/dev/runs`)).json()) as {
      runs: { ruuid: string; state: string; resumes: number }[];
    };
    expect(listed.runs.find((r) => r.ruuid === runs[0]!.ruuid)).toMatchObject({ state: 'Resuming', resumes: 1 });
  });

  it.each([
    ['an unknown org', JSON.stringify({ org: 'Nope', count: 1 }), 400, /org must be one of Acme-Prod, Other-Org/],
    ['a count of 0', JSON.stringify({ org: 'Acme-Prod', count: 0 }), 400, /count must be a whole number/],
    ['a count of 101', JSON.stringify({ org: 'Acme-Prod', count: 101 }), 400, /count must be a whole number/],
    ['a fractional count', JSON.stringify({ org: 'Acme-Prod', count: 1.5 }), 400, /count must be a whole number/],
    ['no org with two orgs served', '{}', 400, /org must be one of/],
    ['a body that is not JSON', 'org=Acme-Prod', 400, /the body must be JSON/],
    ['a body of 70 KB', JSON.stringify({ org: 'Acme-Prod', label: 'x'.repeat(70_000) }), 413, /at most 65536 bytes/],
  ])('refuses %s', async (_what, body, status, message) => {
    const before = withRoutes.runsOf('Acme-Prod').length;
    const res = await post(withRoutes, body);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: string }).error).toMatch(message);
    expect(withRoutes.runsOf('Acme-Prod')).toHaveLength(before);
  });

  it('refuses other methods on /dev/runs', async () => {
    expect((await fetch(`${withRoutes.url}/dev/runs`, { method: 'DELETE' })).status).toBe(405);
  });

  it('leaves the paths to SnapLogic (404, nothing seeded) without operatorRoutes', async () => {
    expect((await fetch(`${without.url}/healthz`)).status).toBe(404);
    expect((await post(without, JSON.stringify({ org: 'Acme-Prod' }))).status).toBe(404);
    expect(without.runsOf('Acme-Prod')).toEqual([]);
  });
});
