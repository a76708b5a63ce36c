// The companion runtime calls through the whole request path, in process against the SnapLogic stand-in: list,
// status, stop and api-stats, each authorized per action, validated (path and query) and audited like the resume.
import { describe, expect, it } from 'vitest';
import { expectProblem, onlyDecision, useInProcess } from '../helpers/in-process.js';

const world = useInProcess();
const RUNTIME = '/api/1/rest/public/runtime';

const operator = {
  match: { sub: 'svc-ops' },
  orgs: ['Acme-Prod'],
  actions: ['runtime.start', 'runtime.stop', 'runtime.status', 'runtime.list', 'runtime.stats'],
};
const reader = { match: { sub: 'svc-dash' }, orgs: ['Acme-Prod'], actions: ['runtime.status', 'runtime.list'] };

describe('companion calls', () => {
  it('lists, reads, stops; a reader may read but not stop', async () => {
    const gw = await world.app({ policy: [operator, reader] });
    const ruuid = world.standIn.addRun('Acme-Prod', 'Suspended');
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const dash = await world.signer.mint({ sub: 'svc-dash' });

    const list = await gw.send('GET', `${RUNTIME}/Acme-Prod?state=Suspended&limit=5`, { token: dash });
    expect(list.status, list.text).toBe(200);
    expect(list.json.response_map.entries.map((e: { id: string }) => e.id)).toContain(ruuid);
    const status = await gw.send('GET', `${RUNTIME}/Acme-Prod/${ruuid}?level=summary`, { token: dash });
    expect(status.status, status.text).toBe(200);
    expect(status.json.response_map.state).toBe('Suspended');
    const stopDenied = await gw.send('POST', `${RUNTIME}/stop/Acme-Prod/${ruuid}`, { token: dash });
    expectProblem(stopDenied, 403, 'forbidden');
    const stats = await gw.send('GET', `${RUNTIME}/api-stats/Acme-Prod`, { token: dash });
    expectProblem(stats, 403, 'forbidden');
    const stop = await gw.send('POST', `${RUNTIME}/stop/Acme-Prod/${ruuid}`, { token: ops });
    expect(stop.status, stop.text).toBe(200);
    const daily = await gw.send('GET', `${RUNTIME}/api-stats/Acme-Prod/daily?date=2026-12-01`, { token: ops });
    expect(daily.status, daily.text).toBe(200);
  });

  it('refuses an unknown or bad query parameter, naming it, forwarding nothing', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const before = world.standIn.received.length;
    const bad = await gw.send('GET', `${RUNTIME}/Acme-Prod?limit=5000`, { token: ops });
    expectProblem(bad, 400, 'invalid_query');
    expect(bad.json.parameter).toBe('limit');
    const unknown = await gw.send('GET', `${RUNTIME}/Acme-Prod?org_wide=true`, { token: ops });
    expectProblem(unknown, 400, 'invalid_query');
    expect(unknown.json.parameter).toBe('org_wide');
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, unknown)).toMatchObject({ action: 'runtime.list', org: 'Acme-Prod' });
  });

  it('replays an Idempotency-Key answer without a second call', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun('Acme-Prod', 'Suspended');
    const key = { 'idempotency-key': '"k-1"' };
    const first = await gw.send('POST', `${RUNTIME}/start/Acme-Prod/${ruuid}`, { token: ops, headers: key });
    expect(first.status, first.text).toBe(200);
    const again = await gw.send('POST', `${RUNTIME}/start/Acme-Prod/${ruuid}`, { token: ops, headers: key });
    expect(again.status, again.text).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    const other = world.standIn.addRun('Acme-Prod', 'Suspended');
    const mismatch = await gw.send('POST', `${RUNTIME}/start/Acme-Prod/${other}`, { token: ops, headers: key });
    expectProblem(mismatch, 422, 'idempotency_key_mismatch');
  });
});
