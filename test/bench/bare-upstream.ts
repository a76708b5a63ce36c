// What the bench's bare proxy and Hono floors share: SnapLogic's address, the Basic header they add, and an undici
// pool with snapgate's default settings.
import { Agent } from 'undici';

export const upstream = process.env.BARE_UPSTREAM ?? 'http://127.0.0.1:9000';
const slUser = process.env.BENCH_SL_USER ?? 'bench@example.com';
const slPassword = process.env.BENCH_SL_PASSWORD ?? 'bench';
export const authorization = `Basic ${Buffer.from(`${slUser}:${slPassword}`).toString('base64')}`;

/** A pool like snapgate's own defaults (upstream.* in config). */
export function upstreamAgent(): Agent {
  return new Agent({
    connections: 32,
    keepAliveTimeout: 4_000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
    connect: { timeout: 5_000 },
    pipelining: 1,
  });
}
