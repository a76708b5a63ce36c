// A floor for snapgate: the bare proxy's work, but served by Hono on @hono/node-server (no checks at all).
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { Hono } from 'hono';
import { Agent } from 'undici';

const upstream = process.env.BARE_UPSTREAM ?? 'http://127.0.0.1:9000';
const authorization = `Basic ${Buffer.from(`${process.env.BENCH_SL_USER ?? 'bench@example.com'}:${process.env.BENCH_SL_PASSWORD ?? 'bench'}`).toString('base64')}`;
const agent = new Agent({ connections: 32, keepAliveTimeout: 4_000, headersTimeout: 30_000, bodyTimeout: 30_000, connect: { timeout: 5_000 }, pipelining: 1 });

const app = new Hono();
app.post('/api/1/rest/public/runtime/start/:org/:ruuid', async (c) => {
  const up = await agent.request({ origin: upstream, path: c.req.path, method: 'POST', headers: { authorization } });
  const body = Buffer.from(await up.body.arrayBuffer());
  const sl = up.headers['x-sl-statuscode'];
  return new Response(body, {
    status: up.statusCode,
    headers: { 'content-type': String(up.headers['content-type'] ?? 'application/json'), ...(typeof sl === 'string' ? { 'x-sl-statuscode': sl } : {}) },
  });
});
const server = serve({ fetch: app.fetch, port: Number(process.env.BARE_PORT ?? 0), hostname: '127.0.0.1' }, (info: AddressInfo) => {
  process.stdout.write(`ready ${info.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
