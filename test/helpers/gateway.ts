// Starts snapgate for tests: in-process (fast, logs and audit captured) or as a child process (signals, exit codes).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/log.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { SnapLogicStandIn, type StandInOptions } from './snaplogic-stand-in.js';
import { recordOutput, recordSecret } from './leak-scan.js';
import { track } from './children.js';
import type { TokenIssuer } from './token-issuer.js';

export const ROOT = resolve(import.meta.dirname, '../..');

/** A fresh temporary directory. */
export function tempDir(prefix = 'snapgate-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The test policy: svc-billing on Acme-Prod, and any caller with the data-eng scope and group on every org. */
export function testPolicy(): Record<string, any>[] {
  return [
    { match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
    {
      match: { claims: { scope: 'snaplogic:runtime:start', groups: 'data-eng' } },
      orgs: '*',
      actions: ['runtime.start'],
    },
  ];
}

/** The two stand-in orgs on `pod`, their credentials from the environment (see testSecrets). */
export function testOrgs(pod: string): Record<string, any> {
  return {
    'Acme-Prod': { pod, username: 'env:ACME_SL_USER', password: 'env:ACME_SL_PASSWORD' },
    'Other-Org': { pod, username: 'env:OTHER_SL_USER', password: 'env:OTHER_SL_PASSWORD' },
  };
}

/**
 * A config document pointing at a stand-in and an issuer: org Acme-Prod (and Other-Org), whose credentials come
 * from env:ACME_SL_USER / env:ACME_SL_PASSWORD, and a rule letting `svc-billing` start runs on Acme-Prod.
 */
export function baseConfig(
  standIn: SnapLogicStandIn,
  issuer: TokenIssuer,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    server: { host: '127.0.0.1', port: 0, shutdownTimeout: '5s' },
    log: { level: 'debug' },
    auth: {
      issuers: [
        {
          issuer: issuer.issuer,
          audience: 'snapgate',
          jwksUri: issuer.jwksUri,
          algorithms: ['ES256'],
          jwks: { cooldown: '1s' },
        },
      ],
    },
    policy: testPolicy(),
    orgs: testOrgs(standIn.url),
    upstream: { connectTimeout: '1s', headersTimeout: '2s', bodyTimeout: '2s' },
    ...overrides,
  };
}

export const testSecrets = {
  ACME_SL_USER: 'svc-acme@example.com',
  ACME_SL_PASSWORD: 'acme-secret-Pa55word!',
  OTHER_SL_USER: 'svc-other@example.com',
  OTHER_SL_PASSWORD: 'other-secret-Pa55word!',
};
for (const value of [
  testSecrets.ACME_SL_PASSWORD,
  testSecrets.OTHER_SL_PASSWORD,
  Buffer.from(`${testSecrets.ACME_SL_USER}:${testSecrets.ACME_SL_PASSWORD}`).toString('base64'),
  Buffer.from(`${testSecrets.OTHER_SL_USER}:${testSecrets.OTHER_SL_PASSWORD}`).toString('base64'),
]) {
  recordSecret(value);
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  logs: Record<string, unknown>[];
  logLines: string[];
  audit: AuditEvent[];
  auditLines: string[];
  close(): Promise<void>;
}

/** Every log and audit line any test gateway produced in this worker, for the secret-leak scan. */
export const allOutput: string[] = [];

/** Starts snapgate in this process on a free port, capturing its logs and audit lines. */
export async function startTestGateway(
  doc: Record<string, unknown>,
  env: Record<string, string | undefined> = testSecrets,
  options: {
    watchSecretFiles?: boolean;
    /** The config file `doc` was written to: reloads read it again (with `watchConfig`, on every change too). */
    configPath?: string;
    watchConfig?: boolean;
  } = {},
): Promise<TestGateway> {
  const logs: Record<string, unknown>[] = [];
  const logLines: string[] = [];
  const audit: AuditEvent[] = [];
  const auditLines: string[] = [];
  const config = parseConfig(doc, 'test', env);
  const gateway = await startGateway(config, {
    env,
    log: createLogger({
      level: 'debug',
      write: (line) => {
        logLines.push(line);
        allOutput.push(line);
        recordOutput(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    }),
    auditWrite: (text) => {
      for (const line of text.split('\n').filter(Boolean)) {
        auditLines.push(line);
        allOutput.push(line);
        recordOutput(line);
        audit.push(JSON.parse(line) as AuditEvent);
      }
    },
    instance: 'test-instance',
    watchSecretFiles: options.watchSecretFiles ?? false,
    ...(options.configPath !== undefined
      ? {
          configSource: {
            path: options.configPath,
            load: () => loadConfig(options.configPath!, env),
            watch: options.watchConfig ?? false,
          },
        }
      : {}),
  });
  return {
    gateway,
    url: `http://127.0.0.1:${gateway.port}`,
    logs,
    logLines,
    audit,
    auditLines,
    close: async () => {
      await gateway.shutdown(1_000);
    },
  };
}

/**
 * A config document whose only org is Acme-Prod, where svc-billing may start runs (Other-Org comes with a reload):
 * the starting point of the reload tests. `extra` overrides top-level sections.
 */
export function acmeOnlyConfig(
  standIn: SnapLogicStandIn,
  issuer: TokenIssuer,
  extra: Record<string, any> = {},
): Record<string, any> {
  const doc = baseConfig(standIn, issuer, extra) as Record<string, any>;
  delete doc.orgs['Other-Org'];
  doc.policy = [{ match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] }];
  return { ...doc, ...extra };
}

/** Starts snapgate in this process on `doc`, written to a config file of its own that reloads read again. */
export async function startReloadableGateway(
  doc: Record<string, unknown>,
  options: { watchConfig?: boolean; env?: Record<string, string>; prefix?: string } = {},
): Promise<{ gw: TestGateway; path: string; dir: string; write: (next: Record<string, unknown>) => void }> {
  const dir = tempDir(options.prefix ?? 'snapgate-reload-');
  const path = join(dir, 'snapgate.yaml');
  writeFileSync(path, stringify(doc));
  const gw = await startTestGateway(doc, options.env ?? testSecrets, {
    configPath: path,
    watchConfig: options.watchConfig ?? false,
  });
  return { gw, path, dir, write: (next) => writeFileSync(path, stringify(next)) };
}

export interface GatewayProcess {
  proc: ChildProcess;
  url: string;
  port: number;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** How many "snapgate listening" lines it has logged so far (one per worker with server.workers). */
  listeners(): number;
}

/** Writes `doc` as YAML and returns its path. */
export function writeConfig(doc: unknown, dir = tempDir()): string {
  const path = join(dir, 'snapgate.yaml');
  writeFileSync(path, stringify(doc));
  return path;
}

/**
 * Runs `snapgate` as a child process on `config` (a config file's path, or a document written to a fresh one):
 * src/main.ts through tsx, or with `built` the compiled dist/src/main.js as deployed (build it first). Its
 * environment is `env` (the test secrets unless given) and PATH. Resolves once it listens, or when it exits early.
 */
export async function spawnGateway(
  config: string | Record<string, unknown>,
  options: { env?: Record<string, string | undefined>; built?: boolean } = {},
): Promise<GatewayProcess> {
  const configPath = typeof config === 'string' ? config : writeConfig(config);
  const env = options.env ?? testSecrets;
  const entry = options.built ? [join(ROOT, 'dist/src/main.js')] : ['--import', 'tsx', join(ROOT, 'src/main.ts')];
  const proc = track(
    spawn(process.execPath, entry, {
      cwd: ROOT,
      env: { PATH: process.env.PATH, SNAPGATE_CONFIG: configPath, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const lines = (stream: NodeJS.ReadableStream, into: string[], onLine?: (l: string) => void) => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        into.push(line);
        allOutput.push(line);
        recordOutput(line);
        onLine?.(line);
      }
    });
    stream.on('end', () => {
      if (buf) {
        into.push(buf);
        allOutput.push(buf);
        recordOutput(buf);
      }
    });
  };
  const port = await new Promise<number>((resolvePort) => {
    lines(proc.stdout, stdout);
    lines(proc.stderr, stderr, (line) => {
      if (line.includes('"snapgate listening"')) resolvePort((JSON.parse(line) as { port: number }).port);
    });
    void exited.then(() => resolvePort(-1));
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    stdout,
    stderr,
    exited,
    kill: (signal = 'SIGTERM') => proc.kill(signal),
    stop: (signal = 'SIGTERM') => {
      proc.kill(signal);
      return exited;
    },
    listeners: () => stderr.filter((l) => l.includes('"snapgate listening"')).length,
  };
}

/** Spawns a gateway as spawnGateway does, runs `use` with it, then SIGKILLs it and waits for its exit, always. */
export async function withGatewayProcess(
  config: string | Record<string, unknown>,
  options: { env?: Record<string, string | undefined>; built?: boolean },
  use: (gw: GatewayProcess) => Promise<void>,
): Promise<void> {
  const gw = await spawnGateway(config, options);
  try {
    await use(gw);
  } finally {
    gw.kill('SIGKILL');
    await gw.exited;
  }
}

/** A stand-in serving Acme-Prod and Other-Org with the test credentials. */
export function startTestStandIn(options: Omit<StandInOptions, 'orgs'> = {}): Promise<SnapLogicStandIn> {
  return SnapLogicStandIn.start({
    ...options,
    orgs: {
      'Acme-Prod': { username: testSecrets.ACME_SL_USER, password: testSecrets.ACME_SL_PASSWORD },
      'Other-Org': { username: testSecrets.OTHER_SL_USER, password: testSecrets.OTHER_SL_PASSWORD },
    },
  });
}
