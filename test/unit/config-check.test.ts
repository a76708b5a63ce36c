// Config checking: every problem in one pass (field errors beside every cross-field rule), messages that say what is
// missing and what to give (never zod's "Invalid input", never a value), secret references checked for presence,
// and the effective config printed with secrets redacted.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { runConfigCli } from '../../src/config/cli.js';
import { ConfigError, parseConfig, validateConfig } from '../../src/config/load.js';
import { REDACTED, redactConfig } from '../../src/config/redact.js';
import { checkReferences } from '../../src/config/references.js';
import { minimalConfig, problemsOf } from '../helpers/config.js';
import { tempDir } from '../helpers/gateway.js';

/** zod's own wording, which says neither what is missing nor what to give. */
const OPAQUE =
  /Invalid input|Invalid option|Invalid discriminator|Unrecognized key|Too small|Too big|Invalid key in record|expected .* received/;

const issuer = (iss: string, extra: Record<string, unknown> = {}) => ({
  issuer: iss,
  audience: 'snapgate',
  jwksUri: `${iss}/jwks`,
  algorithms: ['ES256'],
  ...extra,
});

/** Problems of `doc` that start with `path: `. */
const at = (problems: string[], path: string) => problems.filter((p) => p.startsWith(`${path}: `));

/** A valid config that sets every field of every section (both credential kinds, every sink type). */
const everyField = (): Record<string, any> => ({
  server: {
    host: '0.0.0.0',
    port: 8080,
    shutdownTimeout: '15s',
    maxBodyBytes: 1,
    bodyTimeout: 1,
    headersTimeout: 1,
    requestTimeout: 1,
    keepAliveTimeout: 1,
    instanceId: 'x',
    workers: 1,
  },
  admin: { host: '127.0.0.1', port: 9464 },
  log: { level: 'info' },
  auth: {
    issuers: [
      {
        issuer: 'https://a',
        audience: ['x'],
        algorithms: ['ES256'],
        jwksUri: 'https://a/jwks',
        requiredClaims: ['x'],
        clockTolerance: 1,
        maxTokenAge: 1,
        typ: 'JWT',
        requireKid: true,
        jwks: { timeout: 1, cooldown: 1, cacheMaxAge: 1, maxStale: 1 },
      },
      { issuer: 'https://b', audience: 'x', algorithms: ['HS256'], secret: 'env:S' },
    ],
    cache: { maxEntries: 1, maxTtl: 1 },
  },
  policy: [
    {
      description: 'd',
      match: { iss: 'https://a', sub: ['s'], claims: { g: 'x' } },
      orgs: ['A'],
      actions: ['runtime.start'],
    },
  ],
  signing: {
    issuer: 'sg',
    lifetime: '5m',
    keys: [{ key: 'env:K', state: 'active', kid: 'k' }],
    jwks: { path: '/.well-known/jwks.json', port: 9999, host: '0.0.0.0', maxAge: 1 },
  },
  orgs: {
    A: {
      pod: 'https://p.example',
      credentials: 'basic',
      username: 'env:U',
      password: 'env:P',
      nextPassword: 'env:N',
      identities: [
        {
          name: 'n',
          match: { iss: 'https://a', sub: 'x' },
          username: 'env:U',
          password: 'env:P',
          nextPassword: 'env:N',
        },
      ],
      timeouts: { connect: 1, headers: 1, body: 1 },
      rateLimit: {
        writes: {
          limit: 1,
          window: '1s',
          burst: 0,
          shadow: false,
          perCaller: { limit: 1, window: '1s' },
          concurrency: { limit: 1, shadow: false, lease: 1 },
        },
        reads: { limit: 1, window: '1s', concurrency: 2 },
        onRedisError: 'open',
      },
      onRedisError: 'local',
      requireIdempotencyKey: true,
    },
    B: {
      pod: 'https://p.example',
      credentials: 'jwt',
      user: 'u@x',
      identities: [{ match: { iss: 'https://b', claims: { a: ['b'] } }, user: 'v@x' }],
      rateLimit: { limit: 1, window: '1s', perCaller: { limit: 1, window: '2s' }, concurrency: 3 },
    },
  },
  upstream: {
    connectTimeout: 1,
    headersTimeout: 1,
    bodyTimeout: 1,
    keepAliveTimeout: 1,
    connections: 1,
    maxQueue: 1,
    queueTimeout: 1,
    maxResponseBytes: 1,
    allowInsecureHttp: false,
  },
  redis: {
    url: 'redis://h:1',
    username: 'u',
    password: 'env:R',
    tls: false,
    requiredForReadiness: true,
    connectTimeout: 1,
    commandTimeout: 1,
  },
  runLock: { holdAfterResume: 1, commandTimeout: 10 },
  idempotency: { retention: '1h', maxBodyBytes: 1 },
  rateLimiting: { expectedInstances: 1, breakerOpenFor: 1, localMaxKeys: 1 },
  audit: {
    stdout: true,
    sinks: [
      { type: 'stdout', required: true },
      { type: 'file', path: '/x', maxBytes: 1, fsync: 'always', required: true },
      { type: 'redis', stream: 'a:{b}', maxLen: 1, required: true },
    ],
    onFailure: 'spool',
    spoolDir: '/s',
    ackTimeout: 1,
    maxQueue: 1,
    closeTimeout: 1,
    reads: 'all',
    allowUnaudited: false,
    denials: { fullPerSecond: 1, maxKeys: 1 },
  },
});

describe('config check: every problem in one pass', () => {
  it('reports field errors and every cross-field rule together, in one ConfigError', () => {
    const doc: Record<string, any> = {
      server: { port: 8080, shutdownTimeout: 'soon' },
      admin: { port: 8080 },
      auth: {
        issuers: [
          // A missing audience (a field error) beside cross-field errors of the same entry.
          { issuer: 'https://a.example', jwksUri: 'http://a.example/jwks', algorithms: ['ES256', 'HS256'] },
          { issuer: 'https://b.example', audience: 'snapgate', algorithms: ['ES256'], secret: 'env:B_SECRET' },
          { issuer: 'https://c.example', audience: 'snapgate', algorithms: ['ES256'], extra: true },
          issuer('https://a.example'),
        ],
      },
      policy: [
        { match: {}, orgs: ['Nope-Org'], actions: ['runtime.start'] },
        { match: { iss: 'https://z.example', sub: 'svc' }, orgs: '*', actions: ['runtime.fly'] },
      ],
      signing: {
        issuer: 'snapgate',
        keys: [{ key: 'env:K1', state: 'next' }],
        jwks: { port: 8080 },
      },
      orgs: {
        'Basic-Org': {
          pod: 'http://pod.example',
          user: 'someone@example.com',
          identities: [
            { match: { iss: 'https://b.example', sub: 'x' } },
            { name: 'default', match: { iss: 'https://b.example', sub: 'y' }, username: 'env:U', password: 'env:P' },
            { name: 'twice', match: { iss: 'https://b.example', sub: 'z' }, username: 'env:U', password: 'env:P' },
            { name: 'twice', match: { iss: 'https://b.example', sub: 'w' }, username: 'env:U', password: 'env:P' },
          ],
          rateLimit: { limit: 10, writes: { limit: 5, window: '1s' } },
        },
        'Jwt-Org': {
          pod: 'not a url',
          credentials: 'jwt',
          password: 'env:JWT_ORG_PASSWORD',
          rateLimit: { limit: 10 },
          identities: [{ match: { iss: 'https://b.example', claims: {} }, username: 'env:U' }],
        },
      },
      redis: { url: 'redis://127.0.0.1:6379', cluster: { nodes: [{ host: 'h', port: 1 }] } },
      audit: { onFailure: 'spool', sinks: [{ type: 'stdout', required: false }] },
    };
    let error: unknown;
    try {
      parseConfig(doc, 'test');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = [...(error as ConfigError).problems];
    const report = problems.join('\n');
    const expected: [string, RegExp][] = [
      // field errors
      ['server.shutdownTimeout', /duration/],
      ['auth.issuers.0.audience', /is required: the audience \(aud\)/],
      ['auth.issuers.2', /unknown key "extra"/],
      ['policy.1.actions.0', /must be one of "runtime.start"/],
      ['orgs.Jwt-Org.pod', /absolute http\(s\) URL/],
      // issuers
      ['auth.issuers.0.jwksUri', /must use https/],
      ['auth.issuers.0.algorithms', /HS256 needs an explicit shared secret/],
      ['auth.issuers.1.algorithms', /shared secret only verifies HS256/],
      ['auth.issuers.2', /exactly one key source.*found none/],
      ['auth.issuers.3.issuer', /repeats the issuer of auth.issuers.0/],
      // policy
      ['policy.0.match', /must name a sub or at least one claim/],
      ['policy.0.match.iss', /is required once auth.issuers lists more than one issuer/],
      ['policy.0.orgs.0', /names org "Nope-Org", which is not declared/],
      ['policy.1.match.iss', /not configured under auth.issuers/],
      // orgs: credentials per kind, identities, rate limits, pod scheme
      ['orgs.Basic-Org.username', /is required with credentials: basic/],
      ['orgs.Basic-Org.password', /is required with credentials: basic/],
      ['orgs.Basic-Org.user', /is for credentials: jwt/],
      ['orgs.Basic-Org.identities.0.name', /is required with credentials: basic/],
      ['orgs.Basic-Org.identities.0.username', /is required with credentials: basic/],
      ['orgs.Basic-Org.identities.1.name', /"default" names the org's own credentials/],
      ['orgs.Basic-Org.identities.3.name', /repeats the identity of identities.2/],
      ['orgs.Basic-Org.rateLimit.limit', /either at the top of rateLimit or under rateLimit.writes/],
      ['orgs.Basic-Org.pod', /must use https/],
      ['orgs.Jwt-Org.user', /is required with credentials: jwt/],
      ['orgs.Jwt-Org.password', /a jwt org stores no password/],
      ['orgs.Jwt-Org.identities.0.match', /must name a sub or at least one claim/],
      ['orgs.Jwt-Org.identities.0.user', /is required with credentials: jwt/],
      ['orgs.Jwt-Org.identities.0.username', /a jwt org stores no password/],
      ['orgs.Jwt-Org.rateLimit.window', /is required \(the writes' limit/],
      // sections
      ['signing.keys', /exactly one key with state: active.*found 0/],
      ['signing.jwks.port', /is the port of the server listener/],
      ['admin.port', /is the port of the server listener/],
      ['redis', /exactly one of url \(standalone\), sentinel or cluster/],
      ['audit.spoolDir', /is required with onFailure: spool/],
      ['audit.sinks', /has no required sink/],
    ];
    for (const [path, message] of expected) {
      expect(
        at(problems, path).some((p) => message.test(p)),
        `${path} ${message} in:\n${report}`,
      ).toBe(true);
    }
    expect(report).not.toMatch(OPAQUE);
  });

  it('reports the rules that need a section absent in the same pass as field errors', () => {
    const doc = minimalConfig({
      orgs: { 'Jwt-Org': { pod: 'https://elastic.snaplogic.com', credentials: 'jwt', user: 'svc@example.com' } },
      audit: { sinks: [{ type: 'redis' }], onFailure: 'never' },
      log: { level: 'loud' },
    }) as Record<string, any>;
    doc.auth.issuers[0].audience = undefined;
    const problems = problemsOf(doc);
    expect(problems, problems.join('\n')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^auth\.issuers\.0\.audience: is required/),
        expect.stringMatching(/^log\.level: must be one of "debug", "info", "warn", "error"/),
        expect.stringMatching(/^audit\.onFailure: must be one of "reject", "spool"/),
        expect.stringMatching(/^orgs\.Jwt-Org\.credentials: jwt needs the signing section/),
        expect.stringMatching(/^audit\.sinks\.0: a redis sink needs the redis section/),
        expect.stringMatching(/^policy\.0\.orgs\.0: names org "Acme-Prod"/),
      ]),
    );
  });

  it('reports an empty orgs mapping beside the other errors', () => {
    const doc = minimalConfig({ orgs: {}, upstream: { connections: 0 } });
    expect(problemsOf(doc)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^orgs: must declare at least one org/),
        expect.stringMatching(/^upstream\.connections: must be greater than 0/),
      ]),
    );
  });

  it('reports a URL that does not parse as a problem instead of failing (pod, jwksUri)', () => {
    const doc = minimalConfig() as Record<string, any>;
    doc.orgs['Acme-Prod'].pod = 'not a url';
    doc.auth.issuers[0].jwksUri = 'nope';
    expect(problemsOf(doc)).toEqual([
      expect.stringMatching(/^auth\.issuers\.0\.jwksUri: must be an absolute http\(s\) URL/),
      expect.stringMatching(/^orgs\.Acme-Prod\.pod: must be an absolute http\(s\) URL/),
    ]);
  });
});

describe('config check: messages', () => {
  it('a missing audience names what is missing and what to give', () => {
    const doc = minimalConfig() as Record<string, any>;
    delete doc.auth.issuers[0].audience;
    expect(problemsOf(doc)).toEqual([
      expect.stringMatching(/^auth\.issuers\.0\.audience: is required: the audience \(aud\) .*audience: snapgate/),
    ]);
  });

  it('explains unions, enums, records, lists, discriminators and unknown keys in words', () => {
    const doc = minimalConfig() as Record<string, any>;
    doc.auth.issuers[0].audience = 42;
    doc.auth.issuers[0].algorithms = 'ES256';
    doc.auth.issuers[0].audienc = 'typo';
    doc.policy[0].orgs = 'Acme-Prod';
    doc.policy[0].match = { sub: 5, claims: { groups: { a: 1 } } };
    doc.policy.push({ orgs: ['Acme-Prod', 7], actions: [] });
    doc.orgs['bad..org'] = { pod: 'https://elastic.snaplogic.com', username: 'env:U', password: 'env:P' };
    doc.orgs['Acme-Prod'].credentials = 'oauth';
    doc.orgs['Acme-Prod'].rateLimit = { limit: 'many', window: {}, concurrency: 'lots' };
    doc.audit = { sinks: [{ type: 'kafka' }, {}, { type: 'file' }] };
    doc.redis = { sentinel: { sentinels: [] } };
    doc.server = 'everything';
    const problems = problemsOf(doc);
    const report = problems.join('\n');
    expect(report).not.toMatch(OPAQUE);
    const expected: [string, RegExp][] = [
      ['server', /must be a mapping of keys to values; got a string/],
      ['policy.1.orgs', /at 1: must be an org name declared under orgs, or "\*"; got a whole number/],
      ['auth.issuers.0.audience', /must be the audience \(aud\).*; got a whole number/],
      ['auth.issuers.0.algorithms', /must be the list of algorithms .*; got a string/],
      ['auth.issuers.0', /unknown key "audienc".*the keys here are: issuer, audience,/],
      ['policy.0.orgs', /must be "\*" \(every org\) or a list of org names/],
      ['policy.0.match.sub', /must be a string, or a list of strings/],
      ['policy.0.match.claims.groups', /must be a string, or a list of strings.*; got a mapping/],
      ['policy.1.match', /is required: the callers it is for/],
      ['policy.1.actions', /must list at least one entry/],
      ['orgs.bad..org', /is not a usable key: must be a SnapLogic org name/],
      ['orgs.Acme-Prod.credentials', /must be one of "basic", "jwt"/],
      ['orgs.Acme-Prod.rateLimit.limit', /must be a positive whole number of calls per window; got a string/],
      ['orgs.Acme-Prod.rateLimit.window', /must be a duration: milliseconds, or a string such as 500ms/],
      ['orgs.Acme-Prod.rateLimit.concurrency', /must be the most calls in flight at once/],
      ['audit.sinks.0.type', /must be one of "stdout", "file", "redis"/],
      ['audit.sinks.1.type', /is required: one of "stdout", "file", "redis"/],
      ['audit.sinks.2.path', /is required: the file the audit lines are appended to/],
      ['redis.sentinel.name', /is required: the master group's name/],
      ['redis.sentinel.sentinels', /must list at least one entry/],
    ];
    for (const [path, message] of expected) {
      expect(
        at(problems, path).some((p) => message.test(p)),
        `${path} ${message} in:\n${report}`,
      ).toBe(true);
    }
  });

  it('says what an empty or non-mapping document is', () => {
    expect(problemsOf(null)).toEqual([
      '(root): the config is empty: it must be a YAML mapping with at least auth and orgs',
    ]);
    expect(problemsOf(['a'])).toEqual([expect.stringMatching(/^\(root\): .*YAML mapping.*; got a list/)]);
  });

  it('never repeats a value it refuses', () => {
    const secret = 'Sup3r-S3cret-value';
    const doc = minimalConfig() as Record<string, any>;
    doc.orgs['Acme-Prod'].password = secret;
    doc.orgs['Acme-Prod'].credentials = secret;
    doc.orgs['Acme-Prod'].onRedisError = secret;
    doc.auth.issuers[0].audience = { value: secret };
    doc.auth.issuers[0].algorithms = [secret];
    doc.server = { port: secret, shutdownTimeout: secret };
    doc.redis = { url: `redis://:${secret}@redis.example:6379` };
    doc.audit = { sinks: [{ type: secret }] };
    const problems = problemsOf(doc, { SNAPGATE_LOG_LEVEL: secret });
    expect(problems.length).toBeGreaterThanOrEqual(9);
    expect(problems.join('\n')).not.toContain(secret);
  });
});

describe('config check: secret references', () => {
  it('names each reference that cannot be resolved by its config path, never a value', async () => {
    const dir = tempDir();
    const emptyFile = join(dir, 'empty');
    writeFileSync(emptyFile, '\n');
    const goodFile = join(dir, 'good');
    writeFileSync(goodFile, 'file-secret-value\n');
    const notAKey = join(dir, 'not-a-key.pem');
    writeFileSync(notAKey, 'not-a-key-at-all');
    mkdirSync(join(dir, 'a-dir'));
    const doc = minimalConfig({
      redis: {
        sentinel: { name: 'm', sentinels: [{ host: 'h', port: 1 }], password: 'env:SENTINEL_PW' },
        password: `file:${join(dir, 'missing')}`,
      },
      signing: { issuer: 'snapgate', keys: [{ key: `file:${notAKey}`, state: 'active' }] },
    }) as Record<string, any>;
    doc.auth.issuers.push({ issuer: 'https://h.example', audience: 'a', algorithms: ['HS256'], secret: 'env:HS' });
    doc.orgs['Acme-Prod'] = {
      pod: 'https://elastic.snaplogic.com',
      username: 'env:SL_USER',
      password: `file:${emptyFile}`,
      nextPassword: `file:${join(dir, 'a-dir')}`,
      identities: [
        {
          name: 'reporting',
          match: { iss: 'https://idp.example', sub: 'r' },
          username: `file:${goodFile}`,
          password: 'env:EMPTY',
        },
      ],
    };
    const check = await checkReferences(doc, { SL_USER: 'user-value', EMPTY: '' });
    expect(check.sites.map((s) => s.path).sort()).toEqual(
      [
        'auth.issuers.1.secret',
        'orgs.Acme-Prod.identities.0.password',
        'orgs.Acme-Prod.identities.0.username',
        'orgs.Acme-Prod.nextPassword',
        'orgs.Acme-Prod.password',
        'orgs.Acme-Prod.username',
        'redis.password',
        'redis.sentinel.password',
        'signing.keys.0.key',
      ].sort(),
    );
    expect(check.problems.slice().sort()).toEqual(
      [
        'auth.issuers.1.secret: refers to the environment variable HS, which is not set',
        'orgs.Acme-Prod.identities.0.password: refers to the environment variable EMPTY, which is empty',
        `orgs.Acme-Prod.nextPassword: refers to the file ${join(dir, 'a-dir')}, which is a directory`,
        `orgs.Acme-Prod.password: refers to the file ${emptyFile}, which is empty`,
        `redis.password: refers to the file ${join(dir, 'missing')}, which does not exist`,
        'redis.sentinel.password: refers to the environment variable SENTINEL_PW, which is not set',
        'signing.keys.0.key: is neither a PEM private key nor JSON (a private JWK)',
      ].sort(),
    );
    const report = check.problems.join('\n');
    for (const value of ['user-value', 'file-secret-value', 'not-a-key-at-all']) expect(report).not.toContain(value);
  });

  it('accepts usable signing keys and refuses a key snapgate cannot sign with, and a kid used twice', async () => {
    const dir = tempDir();
    const pem = (alg: 'ec' | 'rsa-small') => {
      const { privateKey } =
        alg === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
          : generateKeyPairSync('rsa', { modulusLength: 1024 });
      return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    };
    writeFileSync(join(dir, 'a.pem'), pem('ec'));
    writeFileSync(join(dir, 'b.pem'), pem('ec'));
    writeFileSync(join(dir, 'small.pem'), pem('rsa-small'));
    const doc = minimalConfig({
      signing: {
        issuer: 'snapgate',
        keys: [
          { key: `file:${join(dir, 'a.pem')}`, state: 'active', kid: 'one' },
          { key: `file:${join(dir, 'b.pem')}`, state: 'next', kid: 'one' },
          { key: `file:${join(dir, 'small.pem')}`, state: 'retired' },
        ],
      },
    });
    const check = await checkReferences(doc, { U: 'u' });
    expect(check.problems.filter((p) => p.startsWith('signing.'))).toEqual([
      'signing.keys.1: kid "one" is already used by signing.keys.0; give each key its own kid',
      'signing.keys.2.key: is an RSA key of 1024 bits; RS256 needs at least 2048 (generate a new key)',
    ]);
    expect(check.problems.join('\n')).not.toContain('PRIVATE KEY');
  });

  it('checks the audit checkpoint key as start-up would: an Ed25519 private key, nothing else', async () => {
    const dir = tempDir();
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    writeFileSync(join(dir, 'ed.pem'), ed);
    writeFileSync(join(dir, 'ec.pem'), ec);
    const audit = (p: string) => p.startsWith('audit.');
    const withKey = (file: string) =>
      minimalConfig({ audit: { checkpoints: { key: `file:${join(dir, file)}` } } }) as Record<string, unknown>;
    expect(parseConfig(withKey('ed.pem'), 'test').audit.checkpoints).toMatchObject({ interval: 10_000 });
    expect((await checkReferences(withKey('ed.pem'), { U: 'u' })).problems.filter(audit)).toEqual([]);
    const bad = await checkReferences(withKey('ec.pem'), { U: 'u' });
    expect(bad.problems.filter(audit)).toEqual([
      `audit.checkpoints.key: file:${join(dir, 'ec.pem')} holds a key of type ec; checkpoints need Ed25519`,
    ]);
    expect(bad.values).toContain(ec.replace(/\n$/, ''));
    const withPrevious = minimalConfig({
      audit: {
        checkpoints: { key: `file:${join(dir, 'ed.pem')}`, previousKeys: [join(dir, 'ec.pem'), join(dir, 'gone.pub')] },
      },
    });
    expect((await checkReferences(withPrevious, { U: 'u' })).problems.filter(audit)).toEqual([
      `audit.checkpoints.previousKeys.0: ${join(dir, 'ec.pem')} holds a ec key; checkpoints are Ed25519`,
      `audit.checkpoints.previousKeys.1: refers to the file ${join(dir, 'gone.pub')}, which does not exist`,
    ]);
    const missing = await checkReferences(withKey('none.pem'), { U: 'u' });
    expect(missing.problems.filter(audit)).toEqual([
      `audit.checkpoints.key: refers to the file ${join(dir, 'none.pem')}, which does not exist`,
    ]);
  });

  it('refuses maxFiles without checkpoints, and an interval outside 1s-5m, naming each field', () => {
    const doc = minimalConfig({
      audit: {
        sinks: [{ type: 'file', path: '/var/log/snapgate/audit.log', maxFiles: 3 }],
      },
    }) as Record<string, unknown>;
    expect(() => parseConfig(doc, 'test')).toThrow(
      /audit\.sinks\.0\.maxFiles: removes old audit files, which needs audit\.checkpoints/,
    );
    const same = minimalConfig({
      audit: {
        sinks: [
          { type: 'file', path: '/var/log/snapgate/audit.log' },
          { type: 'redis', stream: 'audit:{x}:events' },
        ],
        checkpoints: { key: 'env:CP_KEY', sink: { type: 'file', path: '/var/log/snapgate/audit.log' } },
      },
      redis: { url: 'redis://127.0.0.1:6379' },
    });
    expect(() => parseConfig(same, 'test')).toThrow(
      /audit\.checkpoints\.sink\.path: is the path of an audit file sink/,
    );
    const sameStream = minimalConfig({
      audit: {
        sinks: [{ type: 'redis', stream: 'audit:{x}:events' }],
        checkpoints: { key: 'env:CP_KEY', sink: { type: 'redis', stream: 'audit:{x}:events' } },
      },
      redis: { url: 'redis://127.0.0.1:6379' },
    });
    expect(() => parseConfig(sameStream, 'test')).toThrow(
      /audit\.checkpoints\.sink\.stream: is the stream of an audit redis sink/,
    );
    const fast = minimalConfig({ audit: { checkpoints: { key: 'env:CP_KEY', interval: '100ms' } } });
    expect(() => parseConfig(fast, 'test')).toThrow(/audit\.checkpoints\.interval: must be from 1s to 5m/);
  });
});

describe('config check: --print', () => {
  it('keeps references, redacts inline secrets and URL passwords, and scrubs resolved values', () => {
    const printed = redactConfig(
      {
        orgs: { A: { username: 'env:U', password: 'inline-password', pod: 'https://pod.example' } },
        redis: { url: 'redis://user:pw-in-url@redis.example:6379/0', password: 'file:/run/secrets/redis' },
        signing: { keys: [{ key: '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----' }] },
        server: { instanceId: 'has-resolved-value-inside' },
      },
      ['resolved-value'],
    );
    expect(printed).toEqual({
      orgs: { A: { username: 'env:U', password: REDACTED, pod: 'https://pod.example' } },
      redis: { url: `redis://${REDACTED}@redis.example:6379/0`, password: 'file:/run/secrets/redis' },
      signing: { keys: [{ key: REDACTED }] },
      server: { instanceId: `has-${REDACTED}-inside` },
    });
  });

  it('prints the effective config (defaults applied), which loads back to the same config', () => {
    const config = parseConfig(minimalConfig(), 'test');
    const printed = stringify(redactConfig(config));
    expect(printed).toContain('shutdownTimeout: 15000');
    expect(parseConfig(parse(printed), 'printed')).toEqual(config);
  });
});

describe('snapgate config (in process)', () => {
  const run = async (args: string[], env: Record<string, string> = {}) => {
    let stdout = '';
    let stderr = '';
    const code = await runConfigCli(args, {
      out: (t) => (stdout += t),
      err: (t) => (stderr += t),
      env,
      cwd: tempDir(),
    });
    return { code, stdout, stderr };
  };

  it('--json reports every problem as { path, message } and exits 78', async () => {
    const dir = tempDir();
    const path = join(dir, 'snapgate.yaml');
    const doc = minimalConfig() as Record<string, any>;
    delete doc.auth.issuers[0].audience;
    writeFileSync(path, stringify(doc));
    const { code, stdout } = await run(['check', '--config', path, '--json']);
    expect(code).toBe(78);
    const body = JSON.parse(stdout) as { ok: boolean; problems: { path: string; message: string }[] };
    expect(body.ok).toBe(false);
    expect(body.problems).toEqual(
      expect.arrayContaining([
        { path: 'auth.issuers.0.audience', message: expect.stringMatching(/^is required/) },
        { path: 'orgs.Acme-Prod.username', message: 'refers to the environment variable U, which is not set' },
      ]),
    );
  });

  it('validates the environment overrides as start-up does', async () => {
    const path = join(tempDir(), 'snapgate.yaml');
    writeFileSync(path, stringify(minimalConfig()));
    const { code, stderr } = await run(['check', '--config', path], { SNAPGATE_PORT: 'eighty', U: 'u' });
    expect(code).toBe(78);
    expect(stderr).toMatch(/^SNAPGATE_PORT: must be a port number/m);
  });

  it('refuses unknown flags and extra arguments with the usage and exit 2', async () => {
    for (const args of [['check', '--bogus'], ['check', 'extra'], ['lint'], ['check', '--config']]) {
      const { code, stderr, stdout } = await run(args);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toContain('usage: snapgate config check');
      expect(stdout).toBe('');
    }
  });
});

describe('config check: every field, every wrong kind of value', () => {
  it('each wrong value anywhere is a worded problem: no exception, no zod wording, never the value', () => {
    expect(validateConfig(everyField()).problems).toEqual([]);
    const paths: (string | number)[][] = [];
    const walk = (v: unknown, path: (string | number)[]) => {
      if (path.length > 0) paths.push(path);
      if (v !== null && typeof v === 'object') {
        for (const [k, c] of Object.entries(v)) walk(c, [...path, Array.isArray(v) ? Number(k) : k]);
      }
    };
    walk(everyField(), []);
    const marker = 'x-planted-value-zz';
    const variants: unknown[] = [undefined, 42, marker, { q: 1 }, [], [1, marker], null, true, -1, 1.5];
    const failures: string[] = [];
    for (const path of paths) {
      for (const value of variants) {
        const doc = everyField();
        let parent: any = doc;
        for (const k of path.slice(0, -1)) parent = parent[k];
        const key = path[path.length - 1]!;
        if (value === undefined) {
          if (Array.isArray(parent)) continue;
          delete parent[key];
        } else parent[key] = structuredClone(value);
        const where = `${path.join('.')} = ${JSON.stringify(value)}`;
        let problems: readonly string[];
        try {
          problems = validateConfig(doc).problems;
        } catch (err) {
          failures.push(`${where}: threw ${String(err)}`);
          continue;
        }
        for (const p of problems) {
          // A policy rule naming an undeclared (but well-formed) org may say which.
          const echoes = p.includes(marker) && !/^policy\.0\.orgs\.\d+: names org/.test(p);
          if (OPAQUE.test(p) || / another value/.test(p) || echoes) failures.push(`${where}: ${p}`);
        }
      }
    }
    expect(paths.length).toBeGreaterThan(150);
    expect(failures, failures.slice(0, 20).join('\n')).toEqual([]);
  });
});

describe('config check: what it refuses to read', () => {
  it('a config path that is a directory or a device is a problem, not a read without end', async () => {
    const { readConfigDocument } = await import('../../src/config/load.js');
    for (const [path, kind] of [
      [tempDir(), 'a directory'],
      ['/dev/zero', 'not a regular file'],
    ]) {
      await expect(readConfigDocument(path!)).rejects.toMatchObject({
        problems: [`(file): the config path is ${kind}; give the YAML file`],
      });
    }
  });

  it('a secret file that is a device or far too large is not read', async () => {
    const big = join(tempDir(), 'big');
    writeFileSync(big, Buffer.alloc(1024 * 1024 + 1, 'a'));
    const doc = minimalConfig() as Record<string, any>;
    doc.orgs['Acme-Prod'].username = 'file:/dev/zero';
    doc.orgs['Acme-Prod'].password = `file:${big}`;
    const check = await checkReferences(doc, {});
    expect(check.problems).toEqual([
      'orgs.Acme-Prod.username: refers to the file /dev/zero, which is not a regular file',
      `orgs.Acme-Prod.password: refers to the file ${big}, which is larger than 1048576 bytes; it should hold one value`,
    ]);
  });
});
