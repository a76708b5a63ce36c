// The stdout audit sink as a real process on a real pipe: a stalled reader is backpressure (each record written once),
// a closed one is a sink failure (no crash).
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { baseConfig, withGatewayProcess, type GatewayProcess } from '../helpers/gateway.js';
import { resumeNewRun, send } from '../helpers/http.js';
import { useStandInAndIssuer } from '../helpers/world.js';
import { sleep, until } from '../helpers/wait.js';

const world = useStandInAndIssuer();

/** (writer, seq) positions that appear more than once, with their counts. */
function duplicatePositions(lines: readonly string[]): string[] {
  const seen = new Map<string, number>();
  for (const l of lines) {
    const c = (JSON.parse(l) as AuditEvent).chain;
    const key = `${c?.writer}#${c?.seq}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return [...seen].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
}

/** stderr lines that are not the gateway's JSON log lines (a crash trace, Node's own warnings). */
const foreignStderr = (gw: GatewayProcess) =>
  gw.stderr.filter((l) => {
    try {
      JSON.parse(l);
      return false;
    } catch {
      return true;
    }
  });

/** Runs `use` with the built gateway listening (its stdout a pipe to this process) and a token for svc-billing. */
function withBuiltGateway(use: (gw: GatewayProcess, jwt: string, stdout: Readable) => Promise<void>): Promise<void> {
  return withGatewayProcess(baseConfig(world.standIn, world.issuer), { built: true }, async (gw) => {
    expect(gw.port, gw.stderr.join('\n')).toBeGreaterThan(0);
    await use(gw, await world.issuer.mint({ sub: 'svc-billing' }), gw.proc.stdout!);
  });
}

describe('stdout audit sink on a pipe', () => {
  it(
    'writes each record exactly once when the reader pauses 5 s during 100 calls: ' +
      'the chain verifies, no (writer, seq) repeats',
    async () => {
      await withBuiltGateway(async (gw, jwt, stdout) => {
        stdout.pause();
        const pausedAt = Date.now();
        const ids: string[] = [];
        const statuses: number[] = [];
        // 100 calls spread over the pause, 10 at a time.
        for (let round = 0; round < 10; round++) {
          const replies = await Promise.all(
            Array.from({ length: 10 }, (_, i) => {
              const id = `stall-${round}-${i}`;
              ids.push(id);
              return resumeNewRun(gw.url, world.standIn, jwt, { headers: { 'x-request-id': id } });
            }),
          );
          statuses.push(...replies.map((r) => r.status));
          await sleep(Math.max(0, pausedAt + (round + 1) * 450 - Date.now()));
        }
        await sleep(Math.max(0, pausedAt + 5_000 - Date.now()));
        stdout.resume();

        // Every call ends up in the trail: an outcome for a forwarded one or a refused attempt, a decision otherwise.
        const settled = () => {
          const done = new Set<string>();
          for (const l of gw.stdout) {
            const e = JSON.parse(l) as AuditEvent;
            if (e.type !== 'attempt' && typeof e.requestId === 'string') done.add(e.requestId);
          }
          return ids.every((id) => done.has(id));
        };
        await until(settled, 20_000, () => `${gw.stdout.length} lines; statuses ${JSON.stringify(statuses)}`);
        expect(await gw.stop()).toBe(0);

        const report = verifyChain(gw.stdout);
        const dups = duplicatePositions(gw.stdout);
        expect(
          { dups: dups.slice(0, 5), broken: report.broken },
          `${gw.stdout.length} lines, statuses ${JSON.stringify(statuses)}`,
        ).toEqual({ dups: [], broken: undefined });
        expect(report.ok).toBe(true);
        // The stall was felt: calls waited out the ack timeout and were refused (onFailure: reject), the rest
        // went through.
        expect(
          statuses.every((s) => s === 200 || s === 503),
          JSON.stringify(statuses),
        ).toBe(true);
        expect(statuses, JSON.stringify(statuses)).toContain(503);
        expect(foreignStderr(gw)).toEqual([]);
      });
    },
    60_000,
  );

  it(
    'keeps serving when stdout is closed after 1500 bytes: ' +
      'calls get 503 audit_unavailable, /livez answers, nothing unhandled; a closed stderr too',
    async () => {
      await withBuiltGateway(async (gw, jwt, stdout) => {
        let bytes = 0;
        stdout.on('data', (chunk: string) => {
          bytes += Buffer.byteLength(chunk);
          // Like `| head -c 1500`: the reader goes away once it has what it wanted.
          if (bytes >= 1_500) stdout.destroy();
        });
        while (!stdout.destroyed) {
          const r = await resumeNewRun(gw.url, world.standIn, jwt);
          // The reader may leave while this call's attempt line is on its way: that call is refused, as it must be.
          if (stdout.destroyed && r.status === 503) {
            expect(r.json?.code, r.text).toBe('audit_unavailable');
            break;
          }
          expect(r.status, r.text).toBe(200);
        }
        await sleep(200);

        const refused = await Promise.all(Array.from({ length: 5 }, () => resumeNewRun(gw.url, world.standIn, jwt)));
        expect(
          refused.map((r) => `${r.status} ${String(r.json?.code)}`),
          refused.map((r) => r.text).join('\n'),
        ).toEqual(Array(5).fill('503 audit_unavailable'));
        expect((await send(gw.url, 'GET', '/livez')).status).toBe(200);
        expect(gw.proc.exitCode, gw.stderr.join('\n')).toBeNull();
        expect(foreignStderr(gw)).toEqual([]);
        expect(gw.stderr.filter((l) => l.includes('"unhandled error"'))).toEqual([]);

        // Now stderr's reader goes away too: log lines fail to write, and still nothing crashes.
        gw.proc.stderr!.destroy();
        for (let i = 0; i < 5; i++) expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(503);
        await sleep(300);
        expect((await send(gw.url, 'GET', '/livez')).status).toBe(200);
        expect(gw.proc.exitCode).toBeNull();
        expect(await gw.stop()).toBe(0);
      });
    },
    30_000,
  );
});
