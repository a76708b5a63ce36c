// docker-compose.yml publishes only the callers' port on every interface, the admin port on the host's loopback, and
// mounts a config that parses.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';

const ROOT = resolve(import.meta.dirname, '../..');

interface Service {
  ports?: (string | number | { target: number; published?: string | number; host_ip?: string })[];
  environment?: Record<string, string> | string[];
  volumes?: string[];
}

const compose = parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, Service>;
};

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

describe('docker-compose.yml', () => {
  const snapgate = compose.services.snapgate!;
  const env = environmentOf(snapgate);

  async function mountedConfig() {
    const inContainer = env.SNAPGATE_CONFIG;
    expect(inContainer, 'SNAPGATE_CONFIG is set').toBeDefined();
    const volume = (snapgate.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === inContainer);
    expect(volume, `a volume mounts ${inContainer}`).toBeDefined();
    return loadConfig(resolve(ROOT, volume![0]!), env);
  }

  it('mounts a config that parses with the environment it sets', async () => {
    const config = await mountedConfig();
    expect(config.admin, 'the example config has an admin listener').toBeDefined();
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

describe('the example config on its own', () => {
  it('binds the admin listener to loopback, the safe default', async () => {
    const config = await loadConfig(resolve(ROOT, 'config/snapgate.example.yaml'));
    expect(config.admin?.host).toBe('127.0.0.1');
  });
});
