// A real 3-master Redis Cluster on free loopback ports, built with redis-cli --cluster create.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, RedisServer } from './redis-server.js';

const run = promisify(execFile);

export class RedisCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(masters = 3): Promise<RedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'snapgate-cluster-'));
    const nodes: RedisServer[] = [];
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      nodes.push(
        await RedisServer.start({
          port,
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout',
            '2000',
          ],
        }),
      );
    }
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const states = await Promise.all(
        nodes.map(async (n) => {
          const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
          try {
            return /cluster_state:ok/.test(await c.cluster('INFO'));
          } finally {
            c.disconnect();
          }
        }),
      );
      if (states.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error('redis cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
    return new RedisCluster(nodes);
  }

  get hosts(): { host: string; port: number }[] {
    return this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
