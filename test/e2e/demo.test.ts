// The newcomer's first command: `npm run demo` starts everything locally, then through snapgate lists the suspended
// runs, resumes one with an Idempotency-Key (and replays it), and reads its status.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/gateway.js';
import { track } from '../helpers/children.js';

const RUNTIME = String.raw`http://127\.0\.0\.1:\d+/api/1/rest/public/runtime`;
const RUUID = '[0-9a-f]{24}_[0-9a-f-]{36}';
const AUTH = String.raw`-H "Authorization: Bearer \$TOKEN"`;

interface AuditLine {
  type: string;
  action: string;
  decision: string;
  ruuid: string | null;
  status: number | null;
  upstreamStatus: number | null;
}

describe('demo', () => {
  it('lists, resumes and reads a run through snapgate with nothing outside to set up, exits with --once', async () => {
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

    // The audit trail: each call allowed under its own action; the replay is a decision, not a second forward.
    const audit = lines
      .filter((l) => l.startsWith('[audit] '))
      .map((l) => JSON.parse(l.slice(8)) as AuditLine)
      .map((e) => ({
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
    ]);
  });
});
