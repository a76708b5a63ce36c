// docker-compose.yml runs the local stack (Redis, the SnapLogic stand-in, the dev issuer, snapgate) with nothing from
// outside: every service has a healthcheck on the port it listens on, snapgate waits for the others to be healthy,
// the config it mounts parses and finds what it references (variables, files, the stand-in); only the callers' port is
// published on every interface. The Dockerfile's production stage starts the built gateway with node, as non-root.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

const ROOT = resolve(import.meta.dirname, '../..');

interface Service {
  image?: string;
  build?: string | { context: string; target?: string };
  command?: string[] | string;
  ports?: (string | number | { target: number; published?: string | number; host_ip?: string })[];
  environment?: Record<string, string> | string[];
  volumes?: string[];
  healthcheck?: { test?: string[] | string; interval?: string; timeout?: string; retries?: number };
  depends_on?: string[] | Record<string, { condition?: string }>;
}

const composeText = readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText) as { services: Record<string, Service>; volumes?: Record<string, unknown> };

interface Published {
  hostIp: string | undefined;
  published: string | undefined;
  target: number;
}

/** A compose port entry, short ("[HOST_IP:][HOST:]CONTAINER[/proto]") or long ({ target, published, host_ip }). */
function published(entry: NonNullable<Service['ports']>[number]): Published {
  if (typeof entry === 'object') {
    return { hostIp: entry.host_ip, published: entry.published?.toString(), target: entry.target };
  }
  const text = String(entry).replace(/\/(tcp|udp)$/, '');
  const m = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(?:([^:]*):)?(\d+)$/.exec(text);
  if (!m) throw new Error(`unreadable port entry ${text}`);
  const [, ipv6, first, second, target] = m;
  // "A:B" is HOST:CONTAINER; "IP:A:B" is HOST_IP:HOST:CONTAINER.
  if (second === undefined) return { hostIp: undefined, published: ipv6 ?? first, target: Number(target) };
  return { hostIp: ipv6 ?? first, published: second, target: Number(target) };
}

/**
 * The service's environment with ${VAR:?message} / ${VAR:-default} / ${VAR} interpolations replaced by a placeholder.
 */
function environmentOf(service: Service): Record<string, string> {
  const raw = service.environment ?? {};
  const entries = Array.isArray(raw) ? raw.map((e) => e.split(/=(.*)/s, 2) as [string, string]) : Object.entries(raw);
  return Object.fromEntries(entries.map(([k, v]) => [k, String(v ?? '').replace(/\$\{[^}]*\}/g, 'interpolated')]));
}

/** A service's volumes as { source, target, readOnly }. */
function volumesOf(service: Service): { source: string; target: string; readOnly: boolean }[] {
  return (service.volumes ?? []).map((v) => {
    const [source, target, mode] = v.split(':');
    return { source: source!, target: target!, readOnly: mode === 'ro' };
  });
}

/** The argument after `flag` in a service's command. */
function commandFlag(service: Service, flag: string): string | undefined {
  const command = Array.isArray(service.command) ? service.command : String(service.command ?? '').split(/\s+/);
  const i = command.indexOf(flag);
  return i >= 0 ? command[i + 1] : undefined;
}

/** The URLs a healthcheck's test fetches, as { port, path }. */
function healthcheckUrls(service: Service): { port: number; path: string }[] {
  const test = service.healthcheck?.test;
  const text = Array.isArray(test) ? test.join(' ') : String(test ?? '');
  return [...text.matchAll(/https?:\/\/(?:127\.0\.0\.1|localhost):(\d+)(\/[A-Za-z0-9/_-]*)/g)].map((m) => ({
    port: Number(m[1]),
    path: m[2]!,
  }));
}

/** Every string in a parsed document. */
function stringsIn(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(stringsIn);
  return [];
}

const snapgate = compose.services.snapgate!;
const env = environmentOf(snapgate);

function mountedConfigPath(): string {
  const inContainer = env.SNAPGATE_CONFIG;
  expect(inContainer, 'SNAPGATE_CONFIG is set').toBeDefined();
  const volume = volumesOf(snapgate).find((v) => v.target === inContainer);
  expect(volume, `a volume mounts ${inContainer}`).toBeDefined();
  return resolve(ROOT, volume!.source);
}

async function mountedConfig(): Promise<Config> {
  return loadConfig(mountedConfigPath(), env);
}

describe('docker-compose.yml', () => {
  it('runs redis, the SnapLogic stand-in, the dev issuer and snapgate, and needs nothing from the host', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['issuer', 'redis', 'snapgate', 'snaplogic']);
    // ${VAR:?message} would stop `docker compose up` until the operator supplies something from outside.
    expect(composeText.match(/\$\{[A-Za-z_][A-Za-z0-9_]*:?\?/g) ?? []).toEqual([]);
  });

  it('mounts a config that parses with the environment it sets', async () => {
    const config = await mountedConfig();
    expect(config.admin, 'the config has an admin listener').toBeDefined();
  });

  it('gives every service a healthcheck', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      const test = service.healthcheck?.test;
      expect(Array.isArray(test) && test.length > 1 && ['CMD', 'CMD-SHELL'].includes(test[0]!), name).toBe(true);
      expect(service.healthcheck?.interval, `${name} healthcheck interval`).toBeDefined();
    }
  });

  it('starts snapgate once every other service is healthy', () => {
    const dependsOn = snapgate.depends_on;
    expect(dependsOn !== undefined && !Array.isArray(dependsOn), 'depends_on with conditions').toBe(true);
    const others = Object.keys(compose.services).filter((s) => s !== 'snapgate');
    expect(Object.keys(dependsOn as object).sort()).toEqual(others.sort());
    for (const other of others) {
      expect((dependsOn as Record<string, { condition?: string }>)[other]?.condition, other).toBe('service_healthy');
    }
  });

  it('checks each service on the port it listens on, and snapgate on its admin /readyz or /livez', async () => {
    const config = await mountedConfig();
    expect(healthcheckUrls(snapgate).map((u) => u.port)).toEqual([config.admin!.port]);
    expect(['/readyz', '/livez']).toContain(healthcheckUrls(snapgate)[0]!.path);
    for (const name of ['snaplogic', 'issuer']) {
      const service = compose.services[name]!;
      const port = Number(commandFlag(service, '--port'));
      expect(healthcheckUrls(service), name).toEqual([{ port, path: '/healthz' }]);
      // Inside its container it must take the connections of the other services, not its loopback only.
      expect(commandFlag(service, '--host'), name).toBe('0.0.0.0');
      for (const p of (service.ports ?? []).map(published)) expect(p.target, `${name} publishes its port`).toBe(port);
    }
    const redis = compose.services.redis!;
    const redisPort = Number(commandFlag(redis, '--port') ?? 6379);
    const pingsPort = commandFlag({ command: redis.healthcheck?.test }, '-p');
    expect(Number(pingsPort ?? 6379)).toBe(redisPort);
    expect(new URL(env.SNAPGATE_REDIS_URL!).port || '6379').toBe(String(redisPort));
    expect(new URL(env.SNAPGATE_REDIS_URL!).hostname).toBe('redis');
  });

  it("points snapgate's config at the stand-in and the dev issuer, not at a real SnapLogic or identity provider", async () => {
    const config = await mountedConfig();
    const standInPort = Number(commandFlag(compose.services.snaplogic!, '--port'));
    for (const [name, org] of Object.entries(config.orgs)) {
      expect(org.pod, name).toBe(`http://snaplogic:${standInPort}`);
      expect(commandFlag(compose.services.snaplogic!, '--org'), 'the stand-in serves the org').toBe(name);
    }
    // The issuer's JWKS file is on the volume the issuer writes (--state-dir) and snapgate mounts read-only.
    const stateDir = commandFlag(compose.services.issuer!, '--state-dir')!;
    const issuerVolume = volumesOf(compose.services.issuer!).find((v) => v.target === stateDir);
    expect(issuerVolume, 'the issuer keeps its state dir on a volume').toBeDefined();
    expect(Object.keys(compose.volumes ?? {})).toContain(issuerVolume!.source);
    const shared = volumesOf(snapgate).find((v) => v.source === issuerVolume!.source);
    expect(shared?.readOnly, 'snapgate mounts the issuer state read-only').toBe(true);
    for (const issuer of config.auth.issuers) {
      expect(issuer.jwksFile, issuer.issuer).toBe(`${shared!.target}/jwks.json`);
      expect(issuer.issuer).toBe(commandFlag(compose.services.issuer!, '--iss') ?? 'snapgate-dev-issuer');
    }
  });

  it('sets every environment variable the config references, with the value the stand-in accepts', async () => {
    const raw = parse(readFileSync(mountedConfigPath(), 'utf8')) as unknown;
    const refs = stringsIn(raw).flatMap((s) => (/^env:([A-Za-z_][A-Za-z0-9_]*)$/.exec(s)?.[1] ?? []) as string[]);
    expect(refs.length).toBeGreaterThan(0);
    const standInEnv = environmentOf(compose.services.snaplogic!);
    const rawEnv = (s: Service) => s.environment as Record<string, string>;
    for (const name of refs) {
      expect(env[name], `${name} is set for snapgate`).toBeDefined();
      if (name.startsWith('SNAPGATE_DEV_SL_')) {
        expect(standInEnv[name], `${name} is set for the stand-in`).toBeDefined();
        expect(rawEnv(snapgate)[name], name).toBe(rawEnv(compose.services.snaplogic!)[name]);
      }
    }
    // Files it references (key sources, file: secrets) are mounted.
    const config = await mountedConfig();
    const files = [
      ...config.auth.issuers.flatMap((i) => (i.jwksFile !== undefined ? [i.jwksFile] : [])),
      ...stringsIn(raw).flatMap((s) => (s.startsWith('file:') ? [s.slice(5)] : [])),
    ];
    for (const file of files) {
      expect(
        volumesOf(snapgate).some((v) => file.startsWith(`${v.target}/`)),
        `${file} is inside a mounted volume`,
      ).toBe(true);
    }
  });

  it('builds the stand-in and the issuer from the Dockerfile dev target, with files that exist', () => {
    const dockerfile = readFileSync(resolve(ROOT, 'Dockerfile'), 'utf8');
    for (const name of ['snaplogic', 'issuer']) {
      const service = compose.services[name]!;
      expect(service.build, name).toEqual({ context: '.', target: 'dev' });
      const command = service.command as string[];
      expect(command.slice(0, 3), name).toEqual(['node', '--import', 'tsx']);
      expect(existsSync(resolve(ROOT, command[3]!)), command[3]).toBe(true);
    }
    expect(dockerfile).toMatch(/^FROM \S+ AS dev$/m);
    expect(snapgate.build, 'snapgate is the production (last) stage').toBe('.');
    for (const { source } of volumesOf(snapgate)) {
      if (source.startsWith('.')) expect(existsSync(resolve(ROOT, source)), source).toBe(true);
    }
  });

  it("publishes no port on every interface except the callers' port", async () => {
    const config = await mountedConfig();
    for (const [name, service] of Object.entries(compose.services)) {
      for (const entry of service.ports ?? []) {
        const p = published(entry);
        const everyInterface = p.hostIp === undefined || p.hostIp === '0.0.0.0' || p.hostIp === '::';
        if (everyInterface) {
          expect({ service: name, target: p.target }, JSON.stringify(entry)).toEqual({
            service: 'snapgate',
            target: config.server.port,
          });
        }
      }
    }
  });

  it(
    "publishes the admin port on the host's loopback only, and the " +
      'admin listener inside the container is reachable through it',
    async () => {
      const config = await mountedConfig();
      const admin = (snapgate.ports ?? []).map(published).filter((p) => p.target === config.admin!.port);
      expect(admin, JSON.stringify(snapgate.ports)).toEqual([
        { hostIp: '127.0.0.1', published: String(config.admin!.port), target: config.admin!.port },
      ]);
      // Inside the container a loopback-bound listener cannot be reached through a published port.
      expect(config.admin!.host).toBe('0.0.0.0');
    },
  );
});

describe('the Dockerfile', () => {
  const dockerfile = readFileSync(resolve(ROOT, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^(?=FROM )/m).filter((s) => s.startsWith('FROM '));
  const production = stages.at(-1)!;

  it('ends with the production stage, which starts the built gateway with node as a non-root user', () => {
    // No npm (its banners would reach stdout, the audit stream) and no build at start.
    const cmd = /^CMD (.+)$/m.exec(production)?.[1];
    expect(JSON.parse(cmd ?? 'null')).toEqual(['node', 'dist/src/main.js']);
    expect(production).not.toMatch(/^ENTRYPOINT /m);
    const user = /^USER (\S+)$/m.exec(production)?.[1];
    expect(user, 'a USER line').toBeDefined();
    expect(['root', '0'].includes(user!.split(':')[0]!)).toBe(false);
    // Slim: neither the sources nor the tests, only what the build stage compiled.
    expect(production).not.toMatch(/^COPY (src|test)\b/m);
  });

  it('keeps test/ in the build context for the dev target', () => {
    const ignored = readFileSync(resolve(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    expect(ignored).not.toContain('test');
  });
});

describe('the configs of the local stack', () => {
  it('binds the admin listener to loopback in the example config, the safe default', async () => {
    const config = await loadConfig(resolve(ROOT, 'config/snapgate.example.yaml'));
    expect(config.admin?.host).toBe('127.0.0.1');
  });

  it('config/snapgate.local.yaml parses and points at the dev commands on their default ports', async () => {
    const config = await loadConfig(resolve(ROOT, 'config/snapgate.local.yaml'), {
      SNAPGATE_DEV_SL_USER: 'snapgate-dev@example.com',
      SNAPGATE_DEV_SL_PASSWORD: 'snapgate-dev-password',
    });
    expect(config.orgs['Acme-Prod']?.pod).toBe('http://127.0.0.1:8081');
    expect(config.auth.issuers.map((i) => [i.issuer, i.jwksUri])).toEqual([
      ['snapgate-dev-issuer', 'http://127.0.0.1:8082/.well-known/jwks.json'],
    ]);
    expect(config.policy.some((r) => r.match.sub === 'svc-billing')).toBe(true);
    expect(config.redis?.url).toBe('redis://127.0.0.1:6379');
    expect([config.server.host, config.admin?.host]).toEqual(['127.0.0.1', '127.0.0.1']);
  });
});
