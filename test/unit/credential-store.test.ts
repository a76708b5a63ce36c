// Credential reload with secret files in a temporary directory: a new value is picked up (on reload and on a file
// change), a bad one keeps the last good credential and says why, and no logged line ever carries a secret.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { OrgConfig } from '../../src/config/schema.js';
import { createCredentialStore, CredentialError, type CredentialStore } from '../../src/credentials/store.js';
import { createLogger } from '../../src/log.js';
import { basic } from '../helpers/http.js';
import { recordOutput, recordSecret } from '../helpers/leak-scan.js';
import { until } from '../helpers/wait.js';

const USER = 'svc-acme@example.com';
const OLD = 'Old-Pa55word-for-reload';
const NEW = 'New-Pa55word-for-reload';
const OTHER = 'Other-Pa55word-from-env';
for (const secret of [OLD, NEW, OTHER, basic(USER, OLD), basic(USER, NEW)]) recordSecret(secret);

const stores: CredentialStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

interface Setup {
  store: CredentialStore;
  dir: string;
  passwordFile: string;
  logs: Record<string, unknown>[];
  logLines: string[];
}

/** Acme-Prod reads its user and password from files in a fresh directory; Other-Org reads env:OTHER_PASSWORD. */
async function setup(options: { watchFiles?: boolean } = {}): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'snapgate-credentials-'));
  const userFile = join(dir, 'acme-user');
  const passwordFile = join(dir, 'acme-password');
  writeFileSync(userFile, `${USER}\n`);
  writeFileSync(passwordFile, `${OLD}\n`);
  const orgs: Record<string, Pick<OrgConfig, 'pod' | 'username' | 'password'>> = {
    'Acme-Prod': {
      pod: 'https://elastic.snaplogic.com',
      username: `file:${userFile}`,
      password: `file:${passwordFile}`,
    },
    'Other-Org': { pod: 'https://elastic.snaplogic.com', username: 'env:OTHER_USER', password: 'env:OTHER_PASSWORD' },
  };
  const logs: Record<string, unknown>[] = [];
  const logLines: string[] = [];
  const log = createLogger({
    level: 'debug',
    write: (line) => {
      logLines.push(line);
      recordOutput(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const store = await createCredentialStore(
    { orgs },
    {
      env: { OTHER_USER: 'svc-other@example.com', OTHER_PASSWORD: OTHER },
      log,
      watchFiles: options.watchFiles ?? false,
    },
  );
  stores.push(store);
  return { store, dir, passwordFile, logs, logLines };
}

/** Fails naming the secret when any logged line carries a password or a Basic value (whole or base64 alone). */
function expectNoSecretIn(lines: readonly string[]): void {
  const text = lines.join('\n');
  for (const secret of [OLD, NEW, OTHER, basic(USER, OLD).slice(6), basic(USER, NEW).slice(6)]) {
    expect(text.includes(secret), `a log line carries ${secret.slice(0, 6)}…`).toBe(false);
  }
}

describe('credential reload', () => {
  it('resolves every org at start-up, version 1', async () => {
    const s = await setup();
    expect(s.store.basic('Acme-Prod')).toEqual({ authorization: basic(USER, OLD), version: 1, promoted: false });
    expect(s.store.basic('Other-Org')).toEqual({
      authorization: basic('svc-other@example.com', OTHER),
      version: 1,
      promoted: false,
    });
    expect(s.store.basic('Nope')).toBeUndefined();
  });

  it('picks up a new file value on reload: a new version for that org only, logged without the value', async () => {
    const s = await setup();
    const other = s.store.basic('Other-Org');
    writeFileSync(s.passwordFile, `${NEW}\n`);
    expect(await s.store.reload()).toEqual({ ok: true, problems: [], changed: ['Acme-Prod'] });
    expect(s.store.basic('Acme-Prod')).toEqual({ authorization: basic(USER, NEW), version: 2, promoted: false });
    expect(s.store.basic('Other-Org'), 'an unchanged org got a new version').toEqual(other);
    expect(s.logs.filter((l) => l.msg === 'credentials reloaded')).toEqual([
      expect.objectContaining({ level: 'info', changed: [{ org: 'Acme-Prod', identity: 'default', version: 2 }] }),
    ]);
    expectNoSecretIn(s.logLines);
  });

  it('a reload with nothing changed keeps every version', async () => {
    const s = await setup();
    expect(await s.store.reload()).toEqual({ ok: true, problems: [], changed: [] });
    expect(s.store.basic('Acme-Prod')?.version).toBe(1);
  });

  it('an empty new value keeps the last good credential; the problem names the reference, no value', async () => {
    const s = await setup();
    const before = s.store.basic('Acme-Prod');
    writeFileSync(s.passwordFile, '');
    const result = await s.store.reload();
    expect(result).toEqual({
      ok: false,
      problems: [`orgs.Acme-Prod.password: file:${s.passwordFile} is empty`],
      changed: [],
    });
    expect(s.store.basic('Acme-Prod'), 'the last good credential was replaced').toEqual(before);
    const warnings = s.logs.filter((l) => l.msg === 'credential reload failed; keeping the last good credentials');
    expect(warnings).toEqual([expect.objectContaining({ level: 'warn', problems: result.problems })]);
    expectNoSecretIn(s.logLines);

    // Fixed: the next reload takes the new value.
    writeFileSync(s.passwordFile, NEW);
    expect((await s.store.reload()).ok).toBe(true);
    expect(s.store.basic('Acme-Prod')).toEqual({ authorization: basic(USER, NEW), version: 2, promoted: false });
  });

  it('a secret file gone, or a user name with ":", keeps the last good set and reports each problem', async () => {
    const s = await setup();
    rmSync(s.passwordFile);
    writeFileSync(join(s.dir, 'acme-user'), `svc:${NEW}`);
    const result = await s.store.reload();
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([
      `orgs.Acme-Prod.password: file:${s.passwordFile} cannot be read (ENOENT)`,
      expect.stringMatching(/^orgs\.Acme-Prod\.username: file:.*acme-user contains ":"/),
    ]);
    expect(s.store.basic('Acme-Prod')).toEqual({ authorization: basic(USER, OLD), version: 1, promoted: false });
    expect(JSON.stringify(result)).not.toContain(NEW);
    expectNoSecretIn(s.logLines);
  });

  it('with watchFiles, a changed secret file is reloaded without being asked', async () => {
    const s = await setup({ watchFiles: true });
    writeFileSync(s.passwordFile, `${NEW}\n`);
    await until(
      () => s.store.basic('Acme-Prod')?.version === 2,
      5_000,
      () => JSON.stringify(s.logs),
    );
    expect(s.store.basic('Acme-Prod')?.authorization).toBe(basic(USER, NEW));
    expectNoSecretIn(s.logLines);
  });
});

describe('start-up', () => {
  it('refuses to start with every unresolvable reference listed, and no value in the message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'snapgate-credentials-'));
    const orgs: Record<string, Pick<OrgConfig, 'pod' | 'username' | 'password'>> = {
      'Acme-Prod': {
        pod: 'https://elastic.snaplogic.com',
        username: 'env:ACME_USER',
        password: `file:${join(dir, 'missing')}`,
      },
      'Other-Org': { pod: 'https://elastic.snaplogic.com', username: 'env:OTHER_USER', password: 'env:NOT_SET' },
    };
    const err = await createCredentialStore(
      { orgs },
      {
        env: { ACME_USER: USER, OTHER_USER: OTHER },
        log: createLogger({ write: () => undefined }),
      },
    ).then(
      (store) => {
        store.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CredentialError);
    expect((err as CredentialError).problems).toEqual([
      `orgs.Acme-Prod.password: file:${join(dir, 'missing')} cannot be read (ENOENT)`,
      'orgs.Other-Org.password: env:NOT_SET is not set in the environment',
    ]);
    expect((err as CredentialError).message).not.toContain(OTHER);
  });
});
