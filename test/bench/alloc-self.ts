// Preloaded (node --import) into each bench target: the first SIGUSR2 starts V8's sampling heap profiler with
// collected objects included (so it counts every byte allocated, not what survives), the next stops it and writes to
// ALLOC_OUT the bytes sampled in between and the top allocating functions, by function and by innermost frame of
// snapgate's own code (dist/src or src). The bench transpiles it to plain JavaScript first: the built gateway runs
// without tsx. Idle until signalled.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const out = process.env.ALLOC_OUT;
let session: Session | undefined;

const where = (n: ProfileNode): string =>
  `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url
    .replace(/^.*node_modules\//, 'nm:')
    .replace(/^.*\/(dist\/)?src\//, 'src/')
    .replace(/^file:\/\//, '')}:${n.callFrame.lineNumber}`;

async function toggle(file: string): Promise<void> {
  if (session === undefined) {
    session = new Session();
    session.connect();
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    writeFileSync(`${file}.started`, '');
    return;
  }
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
    profile: { head: ProfileNode };
  };
  session.disconnect();
  session = undefined;
  const byFunction = new Map<string, number>();
  const byOwnFrame = new Map<string, number>();
  let total = 0;
  const walk = (n: ProfileNode, own: string): void => {
    const ours = /\/(dist\/)?src\//.test(n.callFrame.url) ? where(n) : own;
    if (n.selfSize > 0) {
      total += n.selfSize;
      byFunction.set(where(n), (byFunction.get(where(n)) ?? 0) + n.selfSize);
      byOwnFrame.set(ours, (byOwnFrame.get(ours) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, ours);
  };
  walk(profile.head, '(no snapgate frame)');
  const top = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 30)
      .map(([name, bytes]) => ({ name, bytes }));
  writeFileSync(file, JSON.stringify({ total, byFunction: top(byFunction), byOwnFrame: top(byOwnFrame) }));
}

if (out !== undefined) process.on('SIGUSR2', () => void toggle(out));
