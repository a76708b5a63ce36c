// Runs the built `snapgate` CLI as a process (node dist/src/main.js …), for the tests of its commands.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { track } from './children.js';
import { ROOT } from './gateway.js';
import { recordOutput } from './leak-scan.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `snapgate` with `args`, its environment `env` and PATH only; its output is leak-scanned. */
export function runSnapgate(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<CliRun> {
  const proc = track(
    spawn(process.execPath, [join(ROOT, 'dist/src/main.js'), ...args], {
      cwd: options.cwd ?? ROOT,
      env: { PATH: process.env.PATH, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise<CliRun>((resolve) => {
    proc.once('close', (code) => {
      for (const text of [stdout, stderr]) if (text) recordOutput(text);
      resolve({ code, stdout, stderr });
    });
  });
}
