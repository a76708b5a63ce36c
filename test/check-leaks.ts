// After `vitest run`: every log line, audit event and error body the test run recorded is searched for every
// secret it recorded (SnapLogic passwords, Basic header values, every minted token and its signature).
// Exits 1 on any match. Writes reports/leak-scan/result.json for .ci/run.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LEAK_SCAN_DIR } from './helpers/leak-scan.js';

const files = existsSync(LEAK_SCAN_DIR) ? readdirSync(LEAK_SCAN_DIR) : [];
const secrets = new Set<string>();
for (const f of files.filter((n) => n.startsWith('secrets-'))) {
  for (const l of readFileSync(join(LEAK_SCAN_DIR, f), 'utf8').split('\n')) if (l) secrets.add(JSON.parse(l) as string);
}
let lines = 0;
const leaks: string[] = [];
for (const f of files.filter((n) => n.startsWith('output-'))) {
  const text = readFileSync(join(LEAK_SCAN_DIR, f), 'utf8');
  lines += text.split('\n').length - 1;
  for (const s of secrets) {
    // A JWT's signature alone is as good as the token: look for it on its own too.
    const needles = s.split('.').length === 3 ? [s, s.split('.')[2]!] : [s];
    for (const n of needles) {
      if (n.length >= 8 && text.includes(n)) leaks.push(`${f} contains a recorded secret (${n.slice(0, 6)}…)`);
    }
  }
}
const ok = leaks.length === 0 && secrets.size > 0 && lines > 0;
if (existsSync(LEAK_SCAN_DIR)) {
  writeFileSync(join(LEAK_SCAN_DIR, 'result.json'), JSON.stringify({ ok, secrets: secrets.size, lines, leaks }));
}
if (secrets.size === 0 || lines === 0) {
  process.stderr.write('leak scan: nothing was recorded; did the tests run?\n');
  process.exit(1);
}
if (leaks.length > 0) {
  process.stderr.write(`leak scan FAILED:\n${leaks.join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(
  `leak scan: ${secrets.size} secrets checked against ${lines} lines of logs, audit events and error bodies: ` +
    'none found\n',
);
