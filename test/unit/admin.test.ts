// The admin app: metrics text with its content type, and a clear 503 when metrics cannot be gathered.
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/ops/metrics.js';
import { adminApp } from '../../src/ops/admin.js';

const ready = () => Promise.resolve({ ready: true, checks: { config: 'ok' } });

describe('admin app', () => {
  it('serves the registry as Prometheus text', async () => {
    const metrics = createMetrics();
    metrics.requests.labels('allowed', 'none', 'Acme-Prod').inc(2);
    const res = await adminApp({ readiness: ready, metrics: metrics.registry }).request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(metrics.registry.contentType);
    expect(await res.text()).toContain('snapgate_requests_total{decision="allowed",reason="none",org="Acme-Prod"} 2');
  });

  it(
    'answers 503 naming the reason when the metrics cannot ' + 'be gathered (a worker not answering its primary)',
    async () => {
      const failing = { contentType: 'text/plain', metrics: () => Promise.reject(new Error('Operation timed out.')) };
      const res = await adminApp({ readiness: ready, metrics: failing }).request('/metrics');
      expect(res.status).toBe(503);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(await res.text()).toBe('metrics unavailable: Operation timed out.\n');
    },
  );
});
