// deploy/kubernetes/ as kubectl would read it: every manifest parses, the Deployment's ports, probes and shutdown
// timings agree with the config in the ConfigMap (parsed with snapgate's schema, defaults applied), the pod runs
// non-root on a read-only root filesystem with only its mounts writable, and every secret the config references is a
// file inside the mounted Secret.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

const DIR = resolve(import.meta.dirname, '../../deploy/kubernetes');

/** What src/gateway.ts gives calls cut at the drain deadline to write their outcome (ABORT_GRACE_MS). */
const ABORT_GRACE_S = 2;
/** The audit writer's batch in progress beyond ackTimeout, and Redis QUIT (src/deps.ts). */
const BATCH_S = 1;
const REDIS_QUIT_S = 1;
/** With workers, the primary waits this long for their last stdout lines (src/main.ts RELAY_FLUSH_MS). */
const RELAY_FLUSH_S = 2;
/** Slack beyond the computed worst case, for a loaded node. */
const MARGIN_S = 5;

type Obj = Record<string, any>;

interface Manifest {
  file: string;
  doc: Obj;
}

function manifests(): Manifest[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => {
        expect(d.errors, file).toEqual([]);
        return { file, doc: d.toJS() as Obj };
      }),
    )
    .filter((m) => m.doc !== null);
}

const all = manifests();
const kustomization = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as Obj;
const applied = all.filter((m) => (kustomization.resources as string[]).includes(m.file));

function one(kind: string, from = applied): Obj {
  const found = from.filter((m) => m.doc.kind === kind);
  expect(
    found.map((m) => m.file),
    kind,
  ).toHaveLength(1);
  return found[0]!.doc;
}

const deployment = one('Deployment');
const pod = deployment.spec.template.spec as Obj;
const container = (pod.containers as Obj[]).find((c) => c.name === 'snapgate')!;
const containerEnv = Object.fromEntries((container.env as Obj[]).map((e) => [e.name as string, String(e.value)]));

/** The config file the pod reads: SNAPGATE_CONFIG inside the ConfigMap volume's mount. */
function mountedConfig(): { config: Config; raw: unknown } {
  const path = containerEnv.SNAPGATE_CONFIG!;
  const mount = (container.volumeMounts as Obj[]).find((m) => path.startsWith(`${m.mountPath}/`));
  expect(mount, `a volume holds ${path}`).toBeDefined();
  const volume = (pod.volumes as Obj[]).find((v) => v.name === mount!.name)!;
  expect(volume.configMap, 'the config comes from a ConfigMap').toBeDefined();
  const configMap = applied.find((m) => m.doc.kind === 'ConfigMap' && m.doc.metadata.name === volume.configMap.name);
  expect(configMap, `ConfigMap ${volume.configMap.name}`).toBeDefined();
  const key = path.slice(mount!.mountPath.length + 1);
  const text = configMap!.doc.data[key] as string;
  expect(text, `the ConfigMap has ${key}`).toBeDefined();
  const raw = parse(text) as unknown;
  return { config: parseConfig(raw, `configmap ${key}`, containerEnv), raw };
}

const { config, raw } = mountedConfig();

/** A container port by name or number, as probes and Services give it. */
function containerPort(port: string | number): number | undefined {
  const ports = container.ports as Obj[];
  const found =
    typeof port === 'number' ? ports.find((p) => p.containerPort === port) : ports.find((p) => p.name === port);
  return found?.containerPort as number | undefined;
}

function stringsIn(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(stringsIn);
  return [];
}

describe('deploy/kubernetes', () => {
  it('lists every manifest in kustomization.yaml (the example Secret aside), each with a kind and a name', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...(kustomization.resources as string[])].sort()).toEqual(
      files.filter((f) => !f.endsWith('.example.yaml')).sort(),
    );
    for (const { file, doc } of all) {
      expect(typeof doc.kind, file).toBe('string');
      expect(typeof doc.metadata?.name, file).toBe('string');
    }
    expect(
      applied.some((m) => m.doc.kind === 'Secret'),
      'no Secret with placeholder values is applied',
    ).toBe(false);
  });

  it("exposes server.port and admin.port as the container's ports, and the Service targets the callers' port only", () => {
    expect(containerPort('http')).toBe(config.server.port);
    expect(containerPort('admin')).toBe(config.admin?.port);
    expect(config.server.host).toBe('0.0.0.0');
    // kubelet probes the pod's IP: a loopback-bound admin listener would fail every probe.
    expect(config.admin?.host).toBe('0.0.0.0');
    const service = one('Service');
    const targets = (service.spec.ports as Obj[]).map((p) => containerPort(p.targetPort as string | number));
    expect(targets).toEqual([config.server.port]);
    for (const [k, v] of Object.entries(service.spec.selector as Obj)) {
      expect(deployment.spec.template.metadata.labels[k], `Service selector ${k}`).toBe(v);
    }
    const annotations = deployment.spec.template.metadata.annotations as Obj;
    expect(Number(annotations['prometheus.io/port'])).toBe(config.admin?.port);
  });

  it('probes /livez and /readyz on the admin port, each answering before its period ends', () => {
    const probes = {
      startup: container.startupProbe as Obj,
      readiness: container.readinessProbe as Obj,
      liveness: container.livenessProbe as Obj,
    };
    expect(probes.readiness.httpGet.path).toBe('/readyz');
    expect(probes.liveness.httpGet.path).toBe('/livez');
    // Startup must not wait on dependencies (a Redis outage would keep every new pod from starting).
    expect(probes.startup.httpGet.path).toBe('/livez');
    for (const [name, probe] of Object.entries(probes)) {
      expect(containerPort(probe.httpGet.port as string | number), name).toBe(config.admin?.port);
      expect(probe.timeoutSeconds, name).toBeLessThan(probe.periodSeconds as number);
    }
    // Up to a minute to start (the IdP's JWKS fetch times out after jwks.timeout).
    const maxJwksTimeoutS = Math.max(...config.auth.issuers.map((i) => i.jwks.timeout / 1000));
    expect(probes.startup.periodSeconds * probes.startup.failureThreshold).toBeGreaterThanOrEqual(
      Math.max(30, 2 * maxJwksTimeoutS),
    );
  });

  it('gives the whole shutdown time to finish: preStop pause + drain deadline + audit close < grace period', () => {
    const preStop = container.lifecycle.preStop as Obj;
    const command = preStop.exec?.command as string[] | undefined;
    const pauseS = preStop.sleep !== undefined ? Number(preStop.sleep.seconds) : Number(command?.[1]);
    expect(command?.[0] ?? 'sleep').toBe('sleep');
    expect(pauseS).toBeGreaterThanOrEqual(3);
    const drainS =
      config.server.shutdownTimeout / 1000 +
      ABORT_GRACE_S +
      config.audit.closeTimeout / 1000 +
      config.audit.ackTimeout / 1000 +
      BATCH_S +
      (config.redis !== undefined ? REDIS_QUIT_S : 0) +
      (config.server.workers > 1 ? RELAY_FLUSH_S : 0);
    const grace = pod.terminationGracePeriodSeconds as number;
    expect(grace, `preStop ${pauseS} s + drain ${drainS} s + margin ${MARGIN_S} s`).toBeGreaterThanOrEqual(
      pauseS + drainS + MARGIN_S,
    );
    // Readiness sees the drain (503) well within the pause: a pod that is going never looks ready for long.
    const readiness = container.readinessProbe as Obj;
    expect(readiness.periodSeconds * readiness.failureThreshold).toBeLessThanOrEqual(
      config.server.shutdownTimeout / 1000,
    );
    // Liveness never restarts a draining pod: /livez answers throughout, and one failure window exceeds the drain.
    const liveness = container.livenessProbe as Obj;
    expect(liveness.periodSeconds * liveness.failureThreshold).toBeGreaterThanOrEqual(
      config.server.shutdownTimeout / 1000,
    );
  });

  it('runs non-root, read-only root filesystem, no privilege escalation, no capabilities, with resources set', () => {
    const podSecurity = pod.securityContext as Obj;
    const security = container.securityContext as Obj;
    expect(security.runAsNonRoot ?? podSecurity.runAsNonRoot).toBe(true);
    expect(security.runAsUser ?? podSecurity.runAsUser, 'a numeric non-root uid').toBeGreaterThan(0);
    expect(security.readOnlyRootFilesystem).toBe(true);
    expect(security.allowPrivilegeEscalation).toBe(false);
    expect(security.capabilities?.drop).toContain('ALL');
    expect(security.capabilities?.add ?? []).toEqual([]);
    expect(podSecurity.seccompProfile?.type ?? security.seccompProfile?.type).toBe('RuntimeDefault');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.requests.memory).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(container.image).not.toMatch(/:latest$|^[^:]+$/);
  });

  it('mounts config and secrets read-only and an emptyDir for /tmp and every path snapgate writes', () => {
    const mounts = container.volumeMounts as Obj[];
    const volumes = new Map((pod.volumes as Obj[]).map((v) => [v.name as string, v]));
    const writable = mounts.filter((m) => m.readOnly !== true);
    for (const m of writable) expect(volumes.get(m.name)?.emptyDir, `${m.mountPath} is an emptyDir`).toBeDefined();
    for (const m of mounts.filter((x) => volumes.get(x.name)?.emptyDir === undefined)) {
      expect(m.readOnly, `${m.mountPath} is read-only`).toBe(true);
    }
    const writes = [
      '/tmp/',
      ...(config.audit.spoolDir !== undefined ? [`${config.audit.spoolDir}/`] : []),
      ...(config.audit.sinks ?? []).flatMap((s) => (s.type === 'file' ? [s.path] : [])),
      // The commented spool dir, for when an operator turns spooling on.
      '/var/lib/snapgate/spool/',
    ];
    for (const path of writes) {
      expect(
        writable.some((m) => path.startsWith(`${m.mountPath}/`)),
        `${path} is on a writable mount`,
      ).toBe(true);
    }
  });

  it('finds every file: secret of the config inside the mounted Secret, under a key the example Secret has', () => {
    const refs = stringsIn(raw).flatMap((s) => (s.startsWith('file:') ? [s.slice(5)] : []));
    expect(refs.length).toBeGreaterThan(0);
    expect(
      stringsIn(raw).filter((s) => s.startsWith('env:')),
      'secrets as files, not env',
    ).toEqual([]);
    const example = one(
      'Secret',
      all.filter((m) => m.file.endsWith('.example.yaml')),
    );
    const volumes = new Map((pod.volumes as Obj[]).map((v) => [v.name as string, v]));
    for (const ref of refs) {
      const mount = (container.volumeMounts as Obj[]).find((m) => ref.startsWith(`${m.mountPath}/`));
      expect(mount, `${ref} is inside a mounted volume`).toBeDefined();
      const secret = volumes.get(mount!.name)?.secret as Obj | undefined;
      expect(secret?.secretName, `${ref} is in a Secret`).toBe(example.metadata.name);
      const key = ref.slice(mount!.mountPath.length + 1);
      const items = secret!.items as Obj[] | undefined;
      const keyInSecret = items === undefined ? key : items.find((i) => i.path === key)?.key;
      expect(Object.keys({ ...example.data, ...example.stringData }), ref).toContain(keyInSecret);
    }
  });

  it('keeps one pod through voluntary disruptions, matching the Deployment; the fallback limit assumes its replicas', () => {
    const pdb = one('PodDisruptionBudget');
    const labels = deployment.spec.template.metadata.labels as Obj;
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels as Obj)) expect(labels[k], k).toBe(v);
    const replicas = deployment.spec.replicas as number;
    // A budget that allows no eviction would block every node drain.
    expect(pdb.spec.minAvailable).toBeLessThan(replicas);
    expect(pdb.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(config.rateLimiting.expectedInstances).toBe(replicas);
    const netpol = one('NetworkPolicy');
    expect(netpol.spec.podSelector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    const allowed = (netpol.spec.ingress as Obj[]).flatMap((r) => (r.ports as Obj[]).map((p) => containerPort(p.port)));
    expect(allowed.sort()).toEqual([config.server.port, config.admin!.port].sort());
  });
});
