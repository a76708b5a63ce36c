// The newcomer's first command: `npm run demo` starts everything locally, then through snapgate lists the suspended
// runs, resumes one with an Idempotency-Key (and replays it), reads its status, and resumes a run of an org in
// credentials: jwt with a token snapgate signs (the stand-in verifies it with snapgate's JWKS). No output carries the
// signing key's private material.
import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../src/credentials/signing-keys.js';
import { ROOT } from '../helpers/gateway.js';
import { track } from '../helpers/children.js';
import { recordOutput, recordSecret } from '../helpers/leak-scan.js';

const RUNTIME = String.raw`http://127\.0\.0\.1:\d+/api/1/rest/public/runtime`;
const RUUID = '[0-9a-f]{24}_[0-9a-f-]{36}';
const AUTH = String.raw`-H "Authorization: Bearer \$TOKEN"`;

interface AuditLine {
  type: string;
  org: string;
  action: string;
  decision: string;
  ruuid: string | null;
  status: number | null;
  upstreamStatus: number | null;
  upstreamIdentity?: { type: string; user?: string };
}

describe('demo', () => {
  it('lists, resumes and reads a run, resumes one through a jwt org, with nothing outside to set up; --once exits', async () => {
    const proc = track(
      spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/demo/demo.ts'), '--once'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, SNAPGATE_PORT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    const all = `${stdout}\n${stderr}`;
    recordOutput(all);
    expect(code, all).toBe(0);
    const lines = stdout.split('\n');
    const said = lines.filter((l) => !l.startsWith('[audit] ')).join('\n');

    // 1. The list: its curl (URL quoted for the shell), then one line per suspended run, the newest first.
    expect(said).toMatch(new RegExp(String.raw`curl -si ${AUTH} "${RUNTIME}/Demo-Org\?state=Suspended"\n`));
    expect(said).toContain('→ HTTP 200, 3 suspended runs');
    const listed = [...said.matchAll(new RegExp(String.raw`^ {6}(${RUUID}) {2}Suspended {2}(\S+)$`, 'gm'))];
    expect(listed.map((m) => m[2])).toEqual(['refund-batch', 'ledger-sync', 'nightly-invoices']);
    const ruuid = listed[0]![1]!;

    // 2. The resume of the first listed run, with a quoted Idempotency-Key, and SnapLogic's answer; then the replay.
    const resume = new RegExp(
      String.raw`curl -si -X POST ${AUTH} -H 'Idempotency-Key: "[0-9a-f-]{36}"' ` +
        String.raw`${RUNTIME}/start/Demo-Org/${ruuid}\n` +
        String.raw` {2}→ HTTP 200 \{"response_map":\{\},"http_status_code":200\}\n` +
        String.raw` {2}\(the stand-in received Basic auth as svc-demo@example\.com; the run is now Resuming\)\n`,
    );
    expect(said).toMatch(resume);
    expect(said).toContain(
      '→ HTTP 200 {"response_map":{},"http_status_code":200}, Idempotent-Replayed: true ' +
        '(the stand-in received 1 resume of this run in all)',
    );

    // 3. The status of the same run: one step on, the stand-in has it Started.
    expect(said).toMatch(new RegExp(String.raw`curl -si ${AUTH} "${RUNTIME}/Demo-Org/${ruuid}\?level=summary"\n`));
    expect(said).toContain('→ HTTP 200, state Started (state_log: Suspended → Resuming → Started;');

    // The signing key the demo generated: a 0600 PKCS#8 file, published under its thumbprint as kid.
    const keyLine = new RegExp(String.raw`^ {2}signing key {8}ES256, kid (\S+), in (\S+) \(mode 0600\)$`, 'm').exec(
      said,
    );
    expect(keyLine, said).not.toBeNull();
    const [, kid, keyPath] = keyLine as unknown as [string, string, string];
    expect(basename(dirname(keyPath)).startsWith('snapgate-demo-') && dirname(dirname(keyPath)) === tmpdir()).toBe(
      true,
    );
    let pem: string;
    try {
      expect(statSync(keyPath).mode & 0o777).toBe(0o600);
      pem = readFileSync(keyPath, 'utf8');
    } finally {
      rmSync(dirname(keyPath), { recursive: true, force: true }); // the demo's secrets, the SnapLogic password too
    }
    const privateKey = createPrivateKey(pem);
    const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' });
    expect(kid).toBe(jwkThumbprint({ kty: 'EC', crv: 'P-256', x: publicJwk.x, y: publicJwk.y }));
    expect(said).toMatch(
      new RegExp(String.raw`snapgate's JWKS {4}http://127\.0\.0\.1:\d+/\.well-known/jwks\.json {3}\(registered at`),
    );

    // 4. The resume through Demo-JWT: the stand-in saw a Bearer token with that kid, for the org's SnapLogic user.
    const jwtStep = new RegExp(
      String.raw`curl -si -X POST ${AUTH} ${RUNTIME}/start/Demo-JWT/(${RUUID})\n` +
        String.raw` {2}→ HTTP 200 \{"response_map":\{\},"http_status_code":200\}\n` +
        String.raw` {2}\(the stand-in received Bearer auth, a JWT snapgate signed: kid ${kid}, ` +
        String.raw`sub svc-demo-jwt@example\.com, verified with snapgate's JWKS; the run is now Resuming\)\n`,
    ).exec(said);
    expect(jwtStep, said).not.toBeNull();
    const jwtRuuid = jwtStep![1]!;

    // No private key material anywhere: no PEM (header or any body line), no private JWK member.
    const secrets = [privateKey.export({ format: 'jwk' }).d!, ...pem.split('\n').filter((l) => l.length === 64)];
    for (const secret of secrets) {
      recordSecret(secret);
      expect(all.includes(secret), 'private key material in the output').toBe(false);
    }
    expect(all).not.toMatch(/PRIVATE KEY|-----BEGIN|"d"\s*:/);
    expect(all).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/); // nor a token (--once prints none)

    // The audit trail: each call allowed under its own action; the replay is a decision, not a second forward.
    const events = lines.filter((l) => l.startsWith('[audit] ')).map((l) => JSON.parse(l.slice(8)) as AuditLine);
    const audit = events.map((e) => ({
      type: e.type,
      action: e.action,
      decision: e.decision,
      ruuid: e.ruuid,
      status: e.status,
      upstreamStatus: e.upstreamStatus,
    }));
    const event = (type: string, action: string, run: string | null, status: number | null, upstream: number | null) =>
      ({ type, action, decision: 'allowed', ruuid: run, status, upstreamStatus: upstream }) as const;
    expect(audit).toEqual([
      event('attempt', 'runtime.list', null, null, null),
      event('outcome', 'runtime.list', null, 200, 200),
      event('attempt', 'runtime.start', ruuid, null, null),
      event('outcome', 'runtime.start', ruuid, 200, 200),
      event('decision', 'runtime.start', ruuid, 200, null),
      event('attempt', 'runtime.status', ruuid, null, null),
      event('outcome', 'runtime.status', ruuid, 200, 200),
      event('attempt', 'runtime.start', jwtRuuid, null, null),
      event('outcome', 'runtime.start', jwtRuuid, 200, 200),
    ]);
    // Forwarded to Demo-Org with its Basic set, to Demo-JWT with a JWT for its user.
    const outcomes = events.filter((e) => e.type === 'outcome');
    expect(outcomes.map((e) => [e.org, e.upstreamIdentity?.type])).toEqual([
      ['Demo-Org', 'basic'],
      ['Demo-Org', 'basic'],
      ['Demo-Org', 'basic'],
      ['Demo-JWT', 'jwt'],
    ]);
    expect(outcomes.at(-1)?.upstreamIdentity?.user).toBe('svc-demo-jwt@example.com');
  });
});
