// The newcomer's first command: `npm run demo` starts everything locally and a resume succeeds.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/gateway.js';
import { track } from '../helpers/children.js';

describe('demo', () => {
  it('resumes a run through snapgate with nothing outside to set up, then exits with --once', async () => {
    const proc = track(
      spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/demo/demo.ts'), '--once'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, SNAPGATE_PORT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    expect(code, out).toBe(0);
    expect(out).toContain('→ HTTP 200 {"response_map":{},"http_status_code":200}');
    expect(out).toContain('"decision":"allowed"');
    // The curl line it prints: the token as a shell variable, then snapgate's address and the start path.
    expect(out).toMatch(
      new RegExp(
        String.raw`curl -si -X POST -H "Authorization: Bearer \$TOKEN" ` +
          String.raw`http://127\.0\.0\.1:\d+/api/1/rest/public/runtime/start/Demo-Org/`,
      ),
    );
  });
});
