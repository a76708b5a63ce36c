// The baseline: a bare Node reverse proxy (node:http plus the same undici pool settings as snapgate), with no checks at
// all.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';

const upstream = process.env.BARE_UPSTREAM ?? 'http://127.0.0.1:9000';
const slUser = process.env.BENCH_SL_USER ?? 'bench@example.com';
const slPassword = process.env.BENCH_SL_PASSWORD ?? 'bench';
const authorization = `Basic ${Buffer.from(`${slUser}:${slPassword}`).toString('base64')}`;
const agent = new Agent({
  connections: 32,
  keepAliveTimeout: 4_000,
  headersTimeout: 30_000,
  bodyTimeout: 30_000,
  connect: { timeout: 5_000 },
  pipelining: 1,
});

const server = createServer((req, res) => {
  req.resume();
  agent
    .request({ origin: upstream, path: req.url ?? '/', method: 'POST', headers: { authorization } })
    .then(async (up) => {
      const body = Buffer.from(await up.body.arrayBuffer());
      const sl = up.headers['x-sl-statuscode'];
      res.writeHead(up.statusCode, {
        'content-type': String(up.headers['content-type'] ?? 'application/json'),
        ...(typeof sl === 'string' ? { 'x-sl-statuscode': sl } : {}),
        'content-length': body.byteLength,
      });
      res.end(body);
    })
    .catch(() => {
      res.writeHead(502).end();
    });
});
server.listen(Number(process.env.BARE_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
