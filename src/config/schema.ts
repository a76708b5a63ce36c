// The config file's shape, defaults and cross-field rules; the single source of truth for the README's reference.
import { z } from 'zod';
import { isValidOrg } from '../snaplogic/names.js';
import { runtimeActions } from '../snaplogic/runtime-api.js';
import { parseDuration } from './duration.js';
import { parseRedisUrl, redisUrlProblems } from './redis-url.js';
import { secretRefPattern } from './secret-ref.js';

export const asymmetricAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;
export const hmacAlgorithms = ['HS256', 'HS384', 'HS512'] as const;

/** Actions a policy can grant: one per SnapLogic runtime call (see src/snaplogic/runtime-api.ts). */
export const actions = runtimeActions;
export type Action = (typeof actions)[number];

const duration = () =>
  z
    .union([z.number(), z.string()])
    .describe('a duration: milliseconds, or a string such as 500ms, 30s, 5m')
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: 'must be a duration in milliseconds or a string such as 500ms, 30s, 5m',
        });
        return z.NEVER;
      }
      return ms;
    });

const secretRef = () =>
  z.string().regex(secretRefPattern, {
    message: 'must be a secret reference (env:NAME or file:/absolute/path); inline secrets are not allowed',
  });

const ORG_NAME_RULE =
  'must be a SnapLogic org name: letters, digits, ".", "_" or "-", starting with a letter or digit, ' +
  'at most 100 characters, no ".."';

const orgName = () => z.string().refine(isValidOrg, { message: ORG_NAME_RULE });

const positiveInt = () => z.number().int().positive();

// The message never repeats the value: a refused URL may well hold a password.
const redisUrl = () =>
  z.string().superRefine((value, ctx) => {
    const parsed = parseRedisUrl(value);
    if (parsed.ok) return;
    ctx.addIssue({
      code: 'custom',
      message:
        `${redisUrlProblems[parsed.problem]}: give redis://host:port[/db] or rediss://host:port[/db], ` +
        'and the credentials as redis.username and redis.password (a secret reference such as env:REDIS_PASSWORD)',
    });
  });

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

const httpUrl = (what: string) =>
  z.string().refine(
    (v) => {
      try {
        const u = new URL(v);
        return (u.protocol === 'https:' || u.protocol === 'http:') && u.username === '' && u.password === '';
      } catch {
        return false;
      }
    },
    { message: `must be an absolute http(s) URL for the ${what}, without credentials` },
  );

/** How an issuer's remote JWKS (jwksUri) is fetched and kept. */
const jwksSchema = z
  .strictObject({
    /** Per fetch. */
    timeout: duration().default(5_000),
    /** Least time between two fetches; a fetch for an unknown kid gets a burst of 3 first. */
    cooldown: duration().default(30_000),
    /** Keys older than this are refetched; while that fails the last good keys serve (see maxStale). */
    cacheMaxAge: duration().default(600_000),
    /** How long the last good keys stay trusted when they cannot be refreshed; then calls get 503 jwks_unavailable. */
    maxStale: duration().default(3_600_000),
  })
  .prefault({});

// Rules across an issuer's fields (one key source, HMAC only with a secret, https JWKS) are in issuerKeyProblems.
const issuerSchema = z.strictObject({
  issuer: z.string().min(1).describe('the issuer (iss) its tokens carry, such as https://idp.example.com'),
  audience: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .describe(
      'the audience (aud) its tokens must carry for snapgate, such as audience: snapgate, or a list of accepted audiences',
    ),
  algorithms: z
    .array(z.enum([...asymmetricAlgorithms, ...hmacAlgorithms]))
    .min(1)
    .describe('the list of algorithms its tokens may be signed with, such as [ES256] or [RS256]'),
  jwksUri: httpUrl('JWKS endpoint').optional(),
  jwksFile: z.string().min(1).optional(),
  publicKey: z.string().min(1).optional(),
  secret: secretRef().optional(),
  requiredClaims: z.array(z.string().min(1)).default([]),
  clockTolerance: duration().default(30_000),
  maxTokenAge: duration().optional(),
  typ: z.string().min(1).optional(),
  requireKid: z.boolean().default(false),
  jwks: jwksSchema,
});

const claimValue = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .describe('a string, or a list of strings (any of them matches)');

/** Which callers a policy rule or an org's identity mapping is for: by issuer and subject, or by claims. */
// That it names a sub or a claim is checked in callerMatchProblems, with the other rules across fields.
const callerMatchSchema = z
  .strictObject({
    iss: z.string().min(1).optional(),
    sub: claimValue.optional(),
    claims: z.record(z.string().min(1), claimValue).optional(),
  })
  .describe('the callers it is for: a mapping with sub and/or claims (and iss when there are several issuers)');
export type CallerMatch = z.output<typeof callerMatchSchema>;

const policyRuleSchema = z.strictObject({
  description: z.string().optional(),
  match: callerMatchSchema,
  orgs: z
    .union([
      z.literal('*'),
      z.array(z.union([z.literal('*'), orgName()]).describe('an org name declared under orgs, or "*"')).min(1),
    ])
    .describe('"*" (every org) or a list of org names declared under orgs'),
  actions: z
    .array(z.enum(actions))
    .min(1)
    .describe(`the list of actions it grants, of ${actions.join(', ')}`),
});

const timeoutsSchema = z.strictObject({
  connect: duration().optional(),
  headers: duration().optional(),
  body: duration().optional(),
});

const gcraFields = {
  /** Requests admitted per window, steady state. */
  limit: positiveInt().describe('a positive whole number of calls per window'),
  window: duration().refine((ms) => ms >= 1_000, { message: 'must be at least 1s' }),
  /** Extra requests admitted at once on top of `limit` (bucket capacity is limit + burst). */
  burst: z.number().int().nonnegative().default(0),
  /** Evaluate and report, never block. */
  shadow: z.boolean().default(false),
};

export const onRedisErrorModes = ['local', 'closed', 'open'] as const;
const onRedisError = () => z.enum(onRedisErrorModes);

const concurrencySchema = z
  .union([
    positiveInt().transform((limit) => ({ limit, shadow: false, lease: undefined as number | undefined })),
    z.strictObject({ limit: positiveInt(), shadow: z.boolean().default(false), lease: duration().optional() }),
  ])
  .describe('the most calls in flight at once: a positive whole number, or a mapping { limit, shadow, lease }');

/** One action group's limits: an org rate (GCRA), optionally per caller, optionally a concurrency cap. */
const limitGroupSchema = z.strictObject({
  ...gcraFields,
  perCaller: z.strictObject(gcraFields).optional(),
  concurrency: concurrencySchema.optional(),
});
export type LimitGroupConfig = z.output<typeof limitGroupSchema>;

/**
 * An org's limits per action group: writes (start, stop) and reads (status, list, stats), counted apart so that
 * reads never eat the resume quota. The writes' limits are given at the top level (as before) or under `writes`;
 * `reads` absent leaves reads unlimited (the upstream connection pool still bounds them), and a rateLimit with
 * only `reads` leaves writes unlimited.
 */
// Which of the top-level and writes' fields must or must not be given is checked in rateLimitProblems.
const rateLimitSchema = z
  .strictObject({
    limit: gcraFields.limit.optional(),
    window: gcraFields.window.optional(),
    burst: gcraFields.burst,
    shadow: gcraFields.shadow,
    perCaller: z.strictObject(gcraFields).optional(),
    concurrency: concurrencySchema.optional(),
    writes: limitGroupSchema.optional(),
    reads: limitGroupSchema.optional(),
    onRedisError: onRedisError().optional(),
  })
  .transform((r) => {
    const writes: LimitGroupConfig | undefined =
      r.writes ??
      (r.limit !== undefined && r.window !== undefined
        ? {
            limit: r.limit,
            window: r.window,
            burst: r.burst,
            shadow: r.shadow,
            ...(r.perCaller !== undefined ? { perCaller: r.perCaller } : {}),
            ...(r.concurrency !== undefined ? { concurrency: r.concurrency } : {}),
          }
        : undefined);
    return {
      ...(writes !== undefined ? { writes } : {}),
      ...(r.reads !== undefined ? { reads: r.reads } : {}),
      onRedisError: r.onRedisError,
    };
  });

export const credentialTypes = ['basic', 'jwt'] as const;
export type CredentialType = (typeof credentialTypes)[number];
/** The identity of callers no `identities` entry maps: the org's own credentials. */
export const defaultIdentity = 'default';

// A SnapLogic user is an e-mail-like login; what SnapLogic accepts beyond that is not documented.
const snaplogicUser = () =>
  z.string().regex(/^[^\s\p{Cc}]{1,254}$/u, {
    message: 'must be a SnapLogic user name (no spaces, at most 254 characters)',
  });

const identitySchema = z.strictObject({
  /** Names the identity in audit events and metrics (basic: required; jwt: defaults to user). */
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$/, {
      message: 'must be letters, digits, ".", "_", "@", "+" or "-", starting with a letter or digit, at most 100',
    })
    .optional(),
  match: callerMatchSchema,
  /** jwt: the SnapLogic user (sub) of the minted token. */
  user: snaplogicUser().optional(),
  /** basic: this identity's own stored credential set. */
  username: secretRef().optional(),
  password: secretRef().optional(),
  nextPassword: secretRef().optional(),
});
export type IdentityConfig = z.output<typeof identitySchema>;

const kidPattern = /^[A-Za-z0-9._~:-]{1,128}$/;

/** The keys snapgate signs SnapLogic's JWTs with, and the JWKS it publishes for SnapLogic to fetch. */
const signingSchema = z.strictObject({
  /** The issuer id registered in SnapLogic (Admin Manager → Authentication → JWT); the tokens' `iss`. */
  issuer: z
    .string()
    .min(1)
    .max(500)
    .describe("the issuer id registered in SnapLogic for snapgate's tokens (their iss)"),
  /** How long a minted token is valid; it is reused until 80% of that has passed. */
  lifetime: duration()
    .default(300_000)
    .refine((ms) => ms >= 1_000 && ms <= 3_600_000, { message: 'must be from 1s to 1h' }),
  keys: z
    .array(
      z.strictObject({
        /** A PKCS#8 PEM or private JWK (RS256: RSA ≥ 2048 bits; ES256: P-256), by reference. */
        key: secretRef().describe('a secret reference to the private key: file:/path/to/key.pem or env:NAME'),
        /** next: published, not used; active: signs; retired: published until its tokens have expired. */
        state: z.enum(['next', 'active', 'retired']).describe('one of "next", "active", "retired"'),
        /** Default: the JWK's own kid, else the key's RFC 7638 thumbprint. */
        kid: z.string().regex(kidPattern, { message: 'must be 1-128 of A-Z a-z 0-9 . _ ~ : -' }).optional(),
      }),
    )
    .min(1)
    .describe('the list of signing keys, each { key: file:/path, state: next|active|retired }'),
  jwks: z
    .strictObject({
      path: z
        .string()
        .regex(/^\/[A-Za-z0-9._~/-]*$/, { message: 'must be an absolute path such as /.well-known/jwks.json' })
        .refine((p) => !p.startsWith('/api/') && !['/livez', '/readyz', '/metrics'].includes(p), {
          message: 'must not be under /api/ or one of /livez, /readyz, /metrics',
        })
        .default('/.well-known/jwks.json'),
      /** Its own listener (reachable by SnapLogic) when set; without it the JWKS is served on server.port. */
      port: z.number().int().min(0).max(65535).optional(),
      host: z.string().min(1).default('0.0.0.0'),
      /** Cache-Control max-age of the JWKS answer. */
      maxAge: duration()
        .default(300_000)
        .refine((ms) => ms >= 0 && ms <= 86_400_000, { message: 'must be from 0 to 24h' }),
    })
    .prefault({}),
});
export type SigningConfig = z.output<typeof signingSchema>;

// What credentials: basic and jwt each need (and forbid) is checked in orgCredentialProblems.
const orgSchema = z.strictObject({
  pod: httpUrl('SnapLogic control plane (pod)')
    .refine(
      (v) => {
        // An unparseable URL is httpUrl's to report; refinements on one field all run.
        if (!URL.canParse(v)) return true;
        const u = new URL(v);
        return (u.pathname === '/' || u.pathname === '') && u.search === '' && u.hash === '';
      },
      { message: 'must be the pod origin only, e.g. https://elastic.snaplogic.com (no path or query)' },
    )
    .describe("the org's SnapLogic pod origin, such as https://elastic.snaplogic.com"),
  /**
   * How snapgate authenticates to SnapLogic for this org: `basic` (stored user and password references) or `jwt`
   * (a short-lived token snapgate signs with signing.keys; nothing stored per org).
   */
  credentials: z.enum(credentialTypes).default('basic'),
  username: secretRef().optional(),
  password: secretRef().optional(),
  /** Basic: the password that replaces `password`; tried once when SnapLogic answers 401 to it, then kept. */
  nextPassword: secretRef().optional(),
  /** JWT: the SnapLogic user (`sub`) of callers no identity maps. */
  user: snaplogicUser().optional(),
  /** Callers that act as their own SnapLogic identity; the first whose match fits wins, the rest use the default. */
  identities: z.array(identitySchema).default([]),
  timeouts: timeoutsSchema.optional(),
  rateLimit: rateLimitSchema.optional(),
  /**
   * What the rate limits, the run lock and Idempotency-Key records do while Redis is unavailable;
   * `rateLimit.onRedisError`, when set, overrides it for the limits.
   */
  onRedisError: onRedisError().default('local'),
  /** Refuse start and stop calls without an Idempotency-Key header (400 idempotency_key_missing). */
  requireIdempotencyKey: z.boolean().default(false),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** How long shutdown lets calls in flight finish before cutting them (aborted_by_shutdown). */
      shutdownTimeout: duration().default(15_000),
      maxBodyBytes: z.number().int().nonnegative().default(65_536),
      /** Deadline for reading a request body, once the call is authorized (before any limit is taken). */
      bodyTimeout: duration().default(5_000),
      /** Deadline for receiving a request's headers (slow headers get their socket closed). */
      headersTimeout: duration().default(10_000),
      /** Deadline for receiving a whole request. */
      requestTimeout: duration().default(30_000),
      /** Idle keep-alive connections are closed after this; keep it above the load balancer's idle timeout. */
      keepAliveTimeout: duration().default(75_000),
      instanceId: z.string().min(1).optional(),
      /** Worker processes sharing the port (node:cluster); 1 runs in a single process. */
      workers: z.number().int().min(1).max(64).default(1),
    })
    .prefault({}),
  admin: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z
        .number()
        .int()
        .min(0)
        .max(65535)
        .describe('the port of the admin listener (/livez, /readyz, /metrics), such as 9464'),
    })
    .optional(),
  log: z.strictObject({ level: z.enum(['debug', 'info', 'warn', 'error']).default('info') }).prefault({}),
  auth: z
    .strictObject({
      issuers: z
        .array(issuerSchema)
        .min(1)
        .describe('the list of token issuers snapgate trusts, each with issuer, audience, algorithms and a key source'),
      /** Verified tokens remembered by hash (0 entries turns it off); reuse never outlives exp or maxTtl. */
      cache: z
        .strictObject({
          maxEntries: z.number().int().nonnegative().default(10_000),
          maxTtl: duration().default(60_000),
        })
        .prefault({}),
    })
    .describe('the auth section: a mapping with issuers (the token issuers snapgate trusts)'),
  policy: z.array(policyRuleSchema).default([]),
  /** Needed when any org has credentials: jwt. */
  signing: signingSchema.optional(),
  // At least one org: checked in orgsProblems, which runs even when an org has errors.
  orgs: z
    // Names are checked by the cross-field pass: a bad name in the key would hide every problem of its org.
    .record(z.string(), orgSchema)
    .describe('the SnapLogic orgs snapgate fronts: a mapping from org name to { pod, credentials }'),
  upstream: z
    .strictObject({
      connectTimeout: duration().default(5_000),
      headersTimeout: duration().default(30_000),
      bodyTimeout: duration().default(30_000),
      keepAliveTimeout: duration().default(4_000),
      connections: positiveInt().default(32),
      /** Calls waiting for a free connection at most; beyond, 503 upstream_busy at once. */
      maxQueue: z.number().int().nonnegative().default(256),
      /** How long a call waits for a free connection before 503 upstream_busy. */
      queueTimeout: duration().default(2_000),
      maxResponseBytes: positiveInt().default(1_048_576),
      allowInsecureHttp: z.boolean().default(false),
    })
    .prefault({}),
  redis: z
    .strictObject({
      url: redisUrl().optional(),
      sentinel: z
        .strictObject({
          name: z.string().min(1).describe("the master group's name the sentinels know, such as mymaster"),
          sentinels: z
            .array(z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }))
            .min(1)
            .describe('the list of sentinels, each { host, port }'),
          password: secretRef().optional(),
        })
        .optional(),
      cluster: z
        .strictObject({
          nodes: z
            .array(z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }))
            .min(1)
            .describe('the list of cluster nodes to start from, each { host, port }'),
        })
        .optional(),
      username: z.string().min(1).optional(),
      password: secretRef().optional(),
      tls: z.boolean().default(false),
      /** When false, /readyz reports Redis but stays ready without it (the rate-limit fallback serves). */
      requiredForReadiness: z.boolean().default(true),
      connectTimeout: duration().default(1_000),
      commandTimeout: duration().default(100),
    })
    // Exactly one of url, sentinel, cluster: checked in redisProblems.
    .optional(),
  /** One resume or stop of a run at a time, across instances (through Redis when it is configured). */
  runLock: z
    .strictObject({
      /**
       * After SnapLogic accepted a resume, the run stays closed to further resumes for this long (409 run_busy), so
       * a duplicate sent just after the first is refused rather than forwarded; a stop is not held back. 0: off.
       */
      holdAfterResume: duration()
        .default(2_000)
        .refine((ms) => ms >= 0 && ms <= 60_000, { message: 'must be from 0 to 60s' }),
      /**
       * How long the lock and the Idempotency-Key records wait on Redis before the org's onRedisError mode decides
       * (default: redis.commandTimeout). Raise it where a slow answer must not make this instance decide alone while
       * the others still share Redis; every write then waits that long while Redis is down.
       */
      commandTimeout: duration()
        .refine((ms) => ms >= 10 && ms <= 30_000, { message: 'must be from 10ms to 30s' })
        .optional(),
    })
    .prefault({}),
  /** Idempotency-Key records (start and stop): shared through Redis when it is configured. */
  idempotency: z
    .strictObject({
      /** How long an answer is kept for replays, counted from its outcome. */
      retention: duration()
        .default(24 * 60 * 60 * 1_000)
        .refine((ms) => ms >= 1_000 && ms <= 7 * 24 * 60 * 60 * 1_000, { message: 'must be from 1s to 7 days' }),
      /** Largest answer body kept for a replay; a larger one is replayed as its status and headers with a note. */
      maxBodyBytes: z.number().int().nonnegative().max(1_048_576).default(65_536),
    })
    .prefault({}),
  rateLimiting: z
    .strictObject({
      /** Instances sharing the limits; the local fallback admits limit / expectedInstances. */
      expectedInstances: positiveInt().default(1),
      /** How long Redis is left alone after a failure before one probe tries it again. */
      breakerOpenFor: duration().default(1_000),
      /** Most keys the in-process limiter holds (the least recently used are dropped first). */
      localMaxKeys: positiveInt().default(10_000),
    })
    .prefault({}),
  audit: z
    .strictObject({
      /** Shorthand for sinks: [{ type: stdout }]; used when `sinks` is absent. */
      stdout: z.boolean().default(true),
      sinks: z
        .array(
          z.discriminatedUnion('type', [
            z.strictObject({ type: z.literal('stdout'), required: z.boolean().default(true) }),
            z.strictObject({
              type: z.literal('file'),
              path: z
                .string()
                .min(1)
                .describe('the file the audit lines are appended to, such as /var/log/snapgate/audit.log'),
              maxBytes: positiveInt().default(104_857_600),
              /**
               * Rotated files kept; older ones are removed, each removal first leaving a signed retention marker
               * (needs audit.checkpoints). Absent: rotated files are never removed.
               */
              maxFiles: positiveInt().optional(),
              fsync: z.enum(['always', 'interval', 'never']).default('always'),
              required: z.boolean().default(true),
            }),
            z.strictObject({
              type: z.literal('redis'),
              stream: z
                .string()
                .regex(/\{[^}]+\}/, { message: 'must carry a hash tag such as audit:{snapgate}:events' })
                .default('audit:{snapgate}:events'),
              maxLen: positiveInt().default(1_000_000),
              required: z.boolean().default(true),
            }),
          ]),
        )
        .optional(),
      /**
       * What a write-ahead attempt does when a required sink cannot take it: refuse the call, or spool
       * locally and forward.
       */
      onFailure: z.enum(['reject', 'spool']).default('reject'),
      spoolDir: z.string().min(1).optional(),
      ackTimeout: duration().default(1_000),
      /**
       * Events held in memory per sink while it is down; beyond, they are counted and dropped (a
       * `dropped` event says how many).
       */
      maxQueue: positiveInt().default(10_000),
      /** How long shutdown waits for the sinks to take what is queued. */
      closeTimeout: duration().default(5_000),
      /**
       * Which reads (status, list, stats) leave events: `all` (attempt and outcome, like writes), `denied` (only
       * the decisions on refused reads) or `none`. Writes always record the write-ahead attempt.
       */
      reads: z.enum(['all', 'denied', 'none']).default('all'),
      /** Accept a config that audits nothing (no sinks, or none required). Start-up then logs a warning. */
      allowUnaudited: z.boolean().default(false),
      denials: z
        .strictObject({ fullPerSecond: positiveInt().default(5), maxKeys: positiveInt().default(1_000) })
        .prefault({}),
      /**
       * Signed checkpoints: every writer signs its chain position (Ed25519) when it opens, every `interval`, before
       * a retention removal and at shutdown, so `audit verify --key` proves the trail whole. Off when absent.
       */
      checkpoints: z
        .strictObject({
          key: secretRef().describe(
            'a reference to an Ed25519 private key (PKCS#8 PEM), such as file:/etc/snapgate/checkpoint.pem; ' +
              'snapgate keys generate --alg Ed25519 --out FILE writes one',
          ),
          interval: duration()
            .default(10_000)
            .refine((ms) => ms >= 1_000 && ms <= 300_000, { message: 'must be from 1s to 5m' }),
          /**
           * Public key files of keys that signed checkpoints before this one (after a rotation): a retention step
           * believes the markers they signed when it checks what it removes.
           */
          previousKeys: z.array(z.string().min(1).describe("the path of a retired key's public key file")).optional(),
          /** A second copy of every checkpoint, kept away from the trail (another disk, another Redis). */
          sink: z
            .discriminatedUnion('type', [
              z.strictObject({
                type: z.literal('file'),
                path: z.string().min(1).describe('the file checkpoint copies are appended to'),
                maxBytes: positiveInt().default(104_857_600),
              }),
              z.strictObject({
                type: z.literal('redis'),
                /** Another Redis than `redis` (the point of the copy); absent: the gateway's own Redis. */
                url: redisUrl().optional(),
                password: secretRef().optional(),
                stream: z
                  .string()
                  .regex(/\{[^}]+\}/, { message: 'must carry a hash tag such as audit:{snapgate}:checkpoints' })
                  .default('audit:{snapgate}:checkpoints'),
              }),
            ])
            .optional(),
        })
        .optional(),
    })
    // onFailure: spool needs spoolDir: checked in auditProblems.
    .prefault({}),
});

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

type Problem = { path: PropertyKey[]; message: string };

/**
 * Issuers and the rules that name them. A token's iss picks its issuer entry, so a duplicate would
 * silently shadow the earlier one; and with several issuers a `sub` is only unique within one, so
 * a rule that does not name its issuer would admit another issuer's caller of the same name.
 */
function issuerProblems(doc: Record<string, unknown> | undefined, policy: unknown[]): Problem[] {
  const problems: Problem[] = [];
  const entries = asRecord(doc?.auth)?.issuers;
  const issuers = Array.isArray(entries) ? entries.map((e) => asRecord(e)?.issuer) : [];
  const firstAt = new Map<string, number>();
  issuers.forEach((iss, j) => {
    if (typeof iss !== 'string') return;
    const first = firstAt.get(iss);
    if (first === undefined) firstAt.set(iss, j);
    else {
      problems.push({
        path: ['auth', 'issuers', j, 'issuer'],
        message:
          `repeats the issuer of auth.issuers.${first}; ` +
          'each issuer appears once (merge the two entries, e.g. list both audiences)',
      });
    }
  });
  const matchers: { path: PropertyKey[]; match: unknown; what: string }[] = policy.map((rule, i) => ({
    path: ['policy', i, 'match'],
    match: asRecord(rule)?.match,
    what: 'admit',
  }));
  for (const [name, org] of Object.entries(asRecord(doc?.orgs) ?? {})) {
    const identities = asRecord(org)?.identities;
    if (!Array.isArray(identities)) continue;
    identities.forEach((identity, i) =>
      matchers.push({ path: ['orgs', name, 'identities', i, 'match'], match: asRecord(identity)?.match, what: 'map' }),
    );
  }
  for (const { path, match: raw, what } of matchers) {
    const match = asRecord(raw);
    if (match === undefined) continue;
    const iss = match.iss;
    if (iss === undefined && issuers.length > 1) {
      problems.push({
        path: [...path, 'iss'],
        message:
          'is required once auth.issuers lists more than one issuer: a sub is unique only within its issuer, ' +
          `so without iss this rule would also ${what} a token from another issuer with the same sub (or claims); ` +
          'name the issuer this rule is for',
      });
    } else if (typeof iss === 'string' && iss !== '' && issuers.length > 0 && !firstAt.has(iss)) {
      problems.push({
        path: [...path, 'iss'],
        message: 'names an issuer that is not configured under auth.issuers, so the rule could never match',
      });
    }
  }
  return problems;
}

/** A jwt org needs the signing section; its JWKS listener must not take another listener's port. */
function signingProblems(doc: Record<string, unknown> | undefined): Problem[] {
  const problems: Problem[] = [];
  const signing = asRecord(doc?.signing);
  for (const [name, org] of Object.entries(asRecord(doc?.orgs) ?? {})) {
    if (asRecord(org)?.credentials === 'jwt' && signing === undefined) {
      problems.push({
        path: ['orgs', name, 'credentials'],
        message: 'jwt needs the signing section (issuer and keys) that snapgate signs the tokens with',
      });
    }
  }
  const port = asRecord(signing?.jwks)?.port;
  if (typeof port === 'number' && port !== 0) {
    const server = asRecord(doc?.server)?.port ?? 8080;
    const admin = asRecord(doc?.admin)?.port;
    if (port === server || port === admin) {
      problems.push({
        path: ['signing', 'jwks', 'port'],
        message: `is the port of the ${port === server ? 'server' : 'admin'} listener; leave it out to serve the JWKS on server.port, or pick a free one`,
      });
    }
  }
  return problems;
}

/** A trail that records nothing, or whose loss never stops a call, must be asked for in so many words. */
function auditProblems(doc: Record<string, unknown> | undefined): Problem[] {
  const audit = asRecord(doc?.audit) ?? {};
  if (audit.allowUnaudited === true) return [];
  const optIn = 'add audit.allowUnaudited: true to run without an audit trail on purpose';
  const sinks = audit.sinks;
  if (Array.isArray(sinks)) {
    if (sinks.length === 0) {
      return [
        {
          path: ['audit', 'sinks'],
          message: `lists no sink, so nothing is audited: add one (e.g. { type: stdout }), or ${optIn}`,
        },
      ];
    }
    if (sinks.every((sink) => asRecord(sink)?.required === false)) {
      return [
        {
          path: ['audit', 'sinks'],
          message:
            'has no required sink (every one says required: false), so calls go ahead when no record was kept: ' +
            `make one required, or ${optIn}`,
        },
      ];
    }
    return [];
  }
  if (sinks === undefined && audit.stdout === false) {
    return [
      {
        path: ['audit', 'stdout'],
        message: `is false and no sinks are listed, so nothing is audited: list audit.sinks, or ${optIn}`,
      },
    ];
  }
  return [];
}

const isString = (v: unknown): v is string => typeof v === 'string';

/**
 * Each issuer has exactly one key source, a shared secret only for HMAC (and HMAC only with one), and a JWKS over
 * https unless it is on loopback. Read from the raw entry, so a missing audience does not hide them.
 */
function issuerKeyProblems(doc: Record<string, unknown> | undefined): Problem[] {
  const problems: Problem[] = [];
  const entries = asRecord(doc?.auth)?.issuers;
  if (!Array.isArray(entries)) return problems;
  entries.forEach((entry, j) => {
    const iss = asRecord(entry);
    if (iss === undefined) return;
    const at = ['auth', 'issuers', j];
    const sources = (['jwksUri', 'jwksFile', 'publicKey', 'secret'] as const).filter((k) => iss[k] !== undefined);
    if (sources.length !== 1) {
      problems.push({
        path: at,
        message:
          'needs exactly one key source (jwksUri, jwksFile, publicKey or secret); ' +
          `found ${sources.length === 0 ? 'none' : sources.join(', ')}`,
      });
    }
    const algorithms = Array.isArray(iss.algorithms) ? iss.algorithms.filter(isString) : [];
    const hmac = algorithms.filter((a) => (hmacAlgorithms as readonly string[]).includes(a));
    const asymmetric = algorithms.filter((a) => (asymmetricAlgorithms as readonly string[]).includes(a));
    if (iss.secret !== undefined && asymmetric.length > 0) {
      problems.push({ path: [...at, 'algorithms'], message: 'a shared secret only verifies HS256, HS384 or HS512' });
    }
    if (iss.secret === undefined && hmac.length > 0) {
      problems.push({
        path: [...at, 'algorithms'],
        message:
          `${hmac.join(', ')} needs an explicit shared secret (secret: env:NAME); ` +
          'public keys and JWKS verify asymmetric algorithms only',
      });
    }
    if (isString(iss.jwksUri) && URL.canParse(iss.jwksUri)) {
      const u = new URL(iss.jwksUri);
      if (u.protocol === 'http:' && !isLoopback(u.hostname)) {
        problems.push({
          path: [...at, 'jwksUri'],
          message: 'must use https (plain http is accepted for loopback addresses only)',
        });
      }
    }
  });
  return problems;
}

/** Every policy rule's and identity's match names a sub or a claim: an empty one would match every caller. */
function callerMatchProblems(doc: Record<string, unknown> | undefined): Problem[] {
  const matches: { path: PropertyKey[]; match: unknown }[] = [];
  const policy = Array.isArray(doc?.policy) ? (doc.policy as unknown[]) : [];
  policy.forEach((rule, i) => matches.push({ path: ['policy', i, 'match'], match: asRecord(rule)?.match }));
  for (const [name, org] of Object.entries(asRecord(doc?.orgs) ?? {})) {
    const identities = asRecord(org)?.identities;
    if (!Array.isArray(identities)) continue;
    identities.forEach((identity, i) =>
      matches.push({ path: ['orgs', name, 'identities', i, 'match'], match: asRecord(identity)?.match }),
    );
  }
  const problems: Problem[] = [];
  for (const { path, match: raw } of matches) {
    const match = asRecord(raw);
    // Not a mapping (or absent): the schema says so.
    if (match === undefined || match.sub !== undefined) continue;
    // Claims of the wrong type are the schema's to report; only an absent or empty mapping matches everyone.
    const claims = match.claims === undefined ? {} : asRecord(match.claims);
    if (claims === undefined || Object.keys(claims).length > 0) continue;
    problems.push({
      path,
      message: 'must name a sub or at least one claim; a rule that matches every caller is not allowed',
    });
  }
  return problems;
}

/** An org's writes' limits are given either at the top of rateLimit or under writes; given at the top, fully. */
function rateLimitProblems(name: string, raw: unknown): Problem[] {
  const r = asRecord(raw);
  if (r === undefined) return [];
  const at = ['orgs', name, 'rateLimit'];
  const problems: Problem[] = [];
  if (r.writes !== undefined) {
    for (const k of ['limit', 'window', 'perCaller', 'concurrency'] as const) {
      if (r[k] !== undefined) {
        problems.push({
          path: [...at, k],
          message: "give the writes' limits either at the top of rateLimit or under rateLimit.writes, not both",
        });
      }
    }
    return problems;
  }
  const topLevel = [r.limit, r.window, r.perCaller, r.concurrency].some((v) => v !== undefined);
  if (!topLevel && r.reads !== undefined) return problems;
  for (const k of ['limit', 'window'] as const) {
    if (r[k] === undefined) {
      problems.push({
        path: [...at, k],
        message: "is required (the writes' limit: calls per window), or give the writes' limits under writes",
      });
    }
  }
  return problems;
}

/**
 * What each kind of credentials needs and forbids, for the org and each of its identities, and identity names that
 * are unique and not the default's. An unknown `credentials` value is the schema's to report; then none of this runs.
 */
function orgCredentialProblems(name: string, raw: unknown): Problem[] {
  const org = asRecord(raw);
  if (org === undefined) return [];
  const credentials = org.credentials ?? 'basic';
  if (credentials !== 'basic' && credentials !== 'jwt') return [];
  const problems: Problem[] = [];
  const wrong = (path: PropertyKey[], message: string) => problems.push({ path: ['orgs', name, ...path], message });
  if (credentials === 'basic') {
    for (const k of ['username', 'password'] as const) {
      if (org[k] === undefined) {
        wrong([k], `is required with credentials: basic (a secret reference such as env:SL_${k.toUpperCase()})`);
      }
    }
    if (org.user !== undefined) wrong(['user'], 'is for credentials: jwt; a basic org names its user in username');
  } else {
    if (org.user === undefined) {
      wrong(['user'], 'is required with credentials: jwt: the SnapLogic user (sub) the minted token acts as');
    }
    for (const k of ['username', 'password', 'nextPassword'] as const) {
      if (org[k] !== undefined) wrong([k], 'is for credentials: basic; a jwt org stores no password (remove it)');
    }
  }
  const identities = Array.isArray(org.identities) ? (org.identities as unknown[]) : [];
  const names = new Map<string, number>();
  identities.forEach((entry, i) => {
    const identity = asRecord(entry);
    if (identity === undefined) return;
    if (credentials === 'basic') {
      if (identity.name === undefined) wrong(['identities', i, 'name'], 'is required with credentials: basic');
      for (const k of ['username', 'password'] as const) {
        if (identity[k] === undefined) wrong(['identities', i, k], 'is required with credentials: basic');
      }
      if (identity.user !== undefined) {
        wrong(['identities', i, 'user'], 'is for credentials: jwt; give username and password');
      }
    } else {
      if (identity.user === undefined) {
        wrong(['identities', i, 'user'], 'is required with credentials: jwt: the SnapLogic user (sub)');
      }
      for (const k of ['username', 'password', 'nextPassword'] as const) {
        if (identity[k] !== undefined) {
          wrong(['identities', i, k], 'is for credentials: basic; a jwt org stores no password');
        }
      }
    }
    const id = identity.name ?? identity.user;
    if (!isString(id)) return;
    if (id === defaultIdentity) {
      wrong(['identities', i, 'name'], `"${defaultIdentity}" names the org's own credentials; pick another name`);
    }
    const first = names.get(id);
    if (first === undefined) names.set(id, i);
    else wrong(['identities', i, 'name'], `repeats the identity of identities.${first}; give each its own name`);
  });
  return problems;
}

/** At least one org; per org, its credentials and its rate limits. */
function orgsProblems(doc: Record<string, unknown> | undefined): Problem[] {
  const orgs = asRecord(doc?.orgs);
  if (orgs === undefined) return [];
  const entries = Object.entries(orgs);
  if (entries.length === 0) {
    return [
      { path: ['orgs'], message: 'must declare at least one org (a mapping from org name to pod and credentials)' },
    ];
  }
  return entries.flatMap(([name, org]) => [
    ...(isValidOrg(name) ? [] : [{ path: ['orgs', name], message: `is not a usable key: ${ORG_NAME_RULE}` }]),
    ...orgCredentialProblems(name, org),
    ...rateLimitProblems(name, asRecord(org)?.rateLimit),
  ]);
}

/** A removal that leaves no signed marker would look like tampering; a checkpoint copy needs a Redis to go to. */
function checkpointProblems(audit: Record<string, unknown> | undefined, hasRedis: boolean): Problem[] {
  const problems: Problem[] = [];
  const signed = asRecord(audit?.checkpoints) !== undefined;
  const sinks = audit?.sinks;
  if (Array.isArray(sinks)) {
    sinks.forEach((sink, i) => {
      if (asRecord(sink)?.maxFiles !== undefined && !signed) {
        problems.push({
          path: ['audit', 'sinks', i, 'maxFiles'],
          message:
            'removes old audit files, which needs audit.checkpoints (a signed marker of each removal, so verify ' +
            'tells retention from tampering); add audit.checkpoints or drop maxFiles',
        });
      }
    });
  }
  const copy = asRecord(asRecord(audit?.checkpoints)?.sink);
  const trails = Array.isArray(sinks) ? sinks.map(asRecord) : [];
  if (copy?.type === 'file' && trails.some((t) => t?.type === 'file' && t.path === copy.path)) {
    problems.push({
      path: ['audit', 'checkpoints', 'sink', 'path'],
      message: 'is the path of an audit file sink; checkpoint copies need a file of their own, best on another disk',
    });
  }
  const stream = copy?.stream ?? 'audit:{snapgate}:checkpoints';
  if (
    copy?.type === 'redis' &&
    copy.url === undefined &&
    trails.some((t) => t?.type === 'redis' && (t.stream ?? 'audit:{snapgate}:events') === stream)
  ) {
    problems.push({
      path: ['audit', 'checkpoints', 'sink', 'stream'],
      message: 'is the stream of an audit redis sink on the same Redis; checkpoint copies need a stream of their own',
    });
  }
  if (copy?.type === 'redis' && copy.url === undefined && !hasRedis) {
    problems.push({
      path: ['audit', 'checkpoints', 'sink', 'url'],
      message: 'is required when no redis section is configured: the Redis the checkpoint copies go to',
    });
  }
  return problems;
}

/** One Redis topology; spooled audit needs its directory; two listeners never share a port. */
function sectionProblems(doc: Record<string, unknown> | undefined): Problem[] {
  const problems: Problem[] = [];
  const redis = asRecord(doc?.redis);
  if (redis !== undefined && [redis.url, redis.sentinel, redis.cluster].filter((v) => v !== undefined).length !== 1) {
    problems.push({ path: ['redis'], message: 'needs exactly one of url (standalone), sentinel or cluster' });
  }
  const audit = asRecord(doc?.audit);
  if (audit?.onFailure === 'spool' && audit.spoolDir === undefined) {
    problems.push({
      path: ['audit', 'spoolDir'],
      message: 'is required with onFailure: spool (a directory on durable local disk)',
    });
  }
  problems.push(...checkpointProblems(audit, redis !== undefined));
  const keys = asRecord(doc?.signing)?.keys;
  if (Array.isArray(keys) && keys.length > 0) {
    const active = keys.filter((k) => asRecord(k)?.state === 'active').length;
    if (active !== 1) {
      problems.push({
        path: ['signing', 'keys'],
        message: `must hold exactly one key with state: active (the one that signs); found ${active}`,
      });
    }
  }
  const admin = asRecord(doc?.admin)?.port;
  const server = asRecord(doc?.server)?.port ?? 8080;
  if (typeof admin === 'number' && admin !== 0 && admin === server) {
    problems.push({
      path: ['admin', 'port'],
      message: 'is the port of the server listener (server.port); give the admin listener a port of its own',
    });
  }
  return problems;
}

/**
 * Every rule that spans fields (key sources, credentials per kind, rate-limit forms, policy → orgs and issuers,
 * duplicate issuers, one active signing key, one Redis topology, pod scheme → upstream.allowInsecureHttp, a config
 * that audits nothing, listener ports). They read the raw document defensively, never the parsed one: zod skips an
 * object's refinements once a field inside it is wrong, and these must report in the same pass as field errors.
 */
export function crossFieldProblems(raw: unknown): Problem[] {
  const problems: Problem[] = [];
  const doc = asRecord(raw);
  const orgs = asRecord(doc?.orgs) ?? {};
  const policy = Array.isArray(doc?.policy) ? (doc.policy as unknown[]) : [];
  problems.push(
    ...issuerKeyProblems(doc),
    ...callerMatchProblems(doc),
    ...orgsProblems(doc),
    ...issuerProblems(doc, policy),
    ...auditProblems(doc),
    ...signingProblems(doc),
    ...sectionProblems(doc),
  );
  policy.forEach((rule, i) => {
    const list = asRecord(rule)?.orgs;
    if (!Array.isArray(list)) return;
    list.forEach((org, j) => {
      // An invalid name is the schema's to report (and is not repeated here).
      if (typeof org === 'string' && org !== '*' && isValidOrg(org) && !Object.hasOwn(orgs, org)) {
        problems.push({
          path: ['policy', i, 'orgs', j],
          message: `names org "${org}", which is not declared under orgs`,
        });
      }
    });
  });
  const sinks = asRecord(doc?.audit)?.sinks;
  if (Array.isArray(sinks) && doc?.redis === undefined) {
    sinks.forEach((sink, i) => {
      if (asRecord(sink)?.type === 'redis') {
        problems.push({
          path: ['audit', 'sinks', i],
          message: 'a redis sink needs the redis section (url, sentinel or cluster)',
        });
      }
    });
  }
  const allowInsecure = asRecord(doc?.upstream)?.allowInsecureHttp === true;
  for (const [name, org] of Object.entries(orgs)) {
    const pod = asRecord(org)?.pod;
    if (typeof pod !== 'string' || !URL.canParse(pod)) continue;
    const u = new URL(pod);
    if (u.protocol === 'http:' && !isLoopback(u.hostname) && !allowInsecure) {
      problems.push({
        path: ['orgs', name, 'pod'],
        message:
          'must use https; plain http is accepted for loopback addresses, ' +
          'or anywhere with upstream.allowInsecureHttp: true',
      });
    }
  }
  return problems;
}

export type Config = z.output<typeof configSchema>;
export type IssuerConfig = Config['auth']['issuers'][number];
export type PolicyRuleConfig = Config['policy'][number];
export type OrgConfig = Config['orgs'][string];
export type UpstreamConfig = Config['upstream'];
export type RateLimitConfig = NonNullable<OrgConfig['rateLimit']>;
/** What the rate limits of one org do while Redis is unavailable. */
export function limitsRedisMode(org: OrgConfig): OnRedisError {
  return org.rateLimit?.onRedisError ?? org.onRedisError;
}
export type RedisConfig = NonNullable<Config['redis']>;
export type OnRedisError = (typeof onRedisErrorModes)[number];
