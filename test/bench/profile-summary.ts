// Summarises a V8 .cpuprofile: self time per function, top 30. Usage: tsx test/bench/profile-summary.ts FILE
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
const prof = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const self = new Map<number, number>();
prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
for (const n of prof.nodes) {
  const t = self.get(n.id) ?? 0;
  total += t;
  const url = n.callFrame.url.replace(/^.*node_modules\//, 'nm:').replace(/^.*\/work\/main\//, '');
  const key = `${n.callFrame.functionName || '(anon)'} ${url}:${n.callFrame.lineNumber}`;
  byFn.set(key, (byFn.get(key) ?? 0) + t);
  const file = url.startsWith('nm:') ? url.split('/').slice(0, 2).join('/') : url || n.callFrame.functionName;
  byFile.set(file, (byFile.get(file) ?? 0) + t);
}
const top = (m: Map<string, number>, k: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, t]) => `${((100 * t) / total).toFixed(1).padStart(5)}%  ${name}`)
    .join('\n');
process.stdout.write(`by function:\n${top(byFn, 30)}\n\nby file/package:\n${top(byFile, 25)}\n`);

// Inclusive time per function (each function counted once per stack), as a share of busy (non-idle) time.
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const label = (n: Node) =>
  `${n.callFrame.functionName || '(anon)'} ` +
  `${n.callFrame.url.replace(/^.*node_modules\//, 'nm:').replace(/^.*\/work\/main\//, '')}:${n.callFrame.lineNumber}`;
const inclusive = new Map<string, number>();
let busy = 0;
for (const n of prof.nodes) {
  const t = self.get(n.id) ?? 0;
  if (t === 0 || n.callFrame.functionName === '(idle)') continue;
  busy += t;
  const seen = new Set<string>();
  for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
    const key = label(byId.get(id)!);
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + t);
  }
}
const topBusy = [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 60));
process.stdout.write(
  `\ninclusive, share of busy ` +
    `time:\n${topBusy.map(([k, t]) => `${((100 * t) / busy).toFixed(1).padStart(5)}%  ${k}`).join('\n')}\n`,
);
