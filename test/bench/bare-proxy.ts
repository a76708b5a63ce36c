// The baseline: a bare Node reverse proxy (node:http plus the same undici pool settings as snapgate), with no checks at
// all: a GET (the status read) is forwarded as a GET with its query, anything else as a POST.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { authorization, upstream, upstreamAgent } from './bare-upstream.js';

const agent = upstreamAgent();

const server = createServer((req, res) => {
  req.resume();
  agent
    .request({
      origin: upstream,
      path: req.url ?? '/',
      method: req.method === 'GET' ? 'GET' : 'POST',
      headers: { authorization },
    })
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
