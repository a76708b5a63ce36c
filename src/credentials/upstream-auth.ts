// Which SnapLogic identity a call acts as, and the Authorization header that proves it: the org's Basic credentials
// (or a mapped caller's own set), or a JWT snapgate mints for the org's user (or the caller's mapped user). The
// caller's own token never reaches SnapLogic.
import type { Principal } from '../auth/principal.js';
import { defaultIdentity, type CallerMatch, type Config, type CredentialType } from '../config/schema.js';
import { callerMatches } from '../policy/policy.js';
import { createJwtMinter, type JwtMinter } from './jwt-minter.js';
import type { CredentialStore } from './store.js';

/** The identity a call used, as the audit trail records it: never a secret. */
export interface UpstreamIdentity {
  readonly type: CredentialType;
  /** `default` (the org's own credentials) or the name of the mapped identity. */
  readonly name: string;
  /** jwt: the SnapLogic user the token named (`sub`). */
  readonly user?: string;
  /** basic: set when the next password was used (after a 401 to the current one, or once promoted). */
  readonly nextPassword?: true;
}

export interface UpstreamCredential {
  readonly identity: UpstreamIdentity;
  /** The header SnapLogic gets. Never log it. */
  readonly authorization: string;
  /** basic: the version of the stored set (it grows on each changed reload); safe to log. */
  readonly version?: number;
  /** basic, while a next password is held and not yet promoted: what a 401 to `authorization` is retried with. */
  readonly fallback?: { readonly authorization: string; promote(): void };
}

export interface UpstreamAuth {
  /** The credential for this caller on this org; throws when the org has none (a bug: config validated it). */
  forCall(org: string, principal: Principal | undefined): Promise<UpstreamCredential>;
  /** JWTs signed so far (cache hits do not count). */
  minted(): number;
}

interface OrgIdentity {
  readonly name: string;
  readonly match: CallerMatch;
  readonly user?: string;
}

interface OrgAuth {
  readonly type: CredentialType;
  /** jwt: the default user, and the token audience `https://{pod}/api/1/rest/public`. */
  readonly user?: string;
  readonly audience: string;
  readonly identities: readonly OrgIdentity[];
}

/** A minter signing with the store's active key (read on every call), when `signing` is configured. */
export function storeMinter(
  signing: Pick<NonNullable<Config['signing']>, 'lifetime'> | undefined,
  store: Pick<CredentialStore, 'keys'>,
): JwtMinter | undefined {
  if (signing === undefined) return undefined;
  return createJwtMinter({
    keys: () => {
      const keys = store.keys();
      if (keys === undefined) throw new Error('signing keys are not loaded');
      return keys;
    },
    lifetimeMs: signing.lifetime,
  });
}

/** The audience SnapLogic requires of a token for this pod: `https://<control plane>/api/1/rest/public`. */
export function audienceOf(pod: string): string {
  return `${new URL(pod).origin}/api/1/rest/public`;
}

function compile(config: Pick<Config, 'orgs'>): Map<string, OrgAuth> {
  const out = new Map<string, OrgAuth>();
  for (const [org, cfg] of Object.entries(config.orgs)) {
    out.set(org, {
      type: cfg.credentials,
      ...(cfg.user !== undefined ? { user: cfg.user } : {}),
      audience: audienceOf(cfg.pod),
      identities: cfg.identities.map((i) => ({
        name: i.name ?? i.user!,
        match: i.match,
        ...(i.user !== undefined ? { user: i.user } : {}),
      })),
    });
  }
  return out;
}

/**
 * Builds the per-call credentials. With `signing`, the minter signs with the store's active key (read on every
 * call, so a reloaded key signs at once). `onMint` and `onPromote` feed metrics and logs.
 */
export function createUpstreamAuth(
  config: Pick<Config, 'orgs' | 'signing'>,
  store: CredentialStore,
  hooks: { onMint?: (org: string) => void; onPromote?: (org: string, identity: string) => void } = {},
): UpstreamAuth {
  const orgs = compile(config);
  const signing = config.signing;
  // The identity of a Basic call names only the identity and whether its next password is sent: one object per pair,
  // frozen, made on first use (identity names come from config, so the map stays small).
  const identities = new Map<string, UpstreamIdentity>();
  const basicIdentity = (name: string, promoted: boolean): UpstreamIdentity => {
    const key = `${promoted ? '1' : '0'}${name}`;
    let identity = identities.get(key);
    if (identity === undefined) {
      identity = Object.freeze({ type: 'basic' as const, name, ...(promoted ? { nextPassword: true } : {}) });
      identities.set(key, identity);
    }
    return identity;
  };
  const minter = storeMinter(signing, store);

  return {
    minted: () => minter?.minted() ?? 0,
    async forCall(org, principal) {
      const auth = orgs.get(org);
      if (auth === undefined) throw new Error(`no credentials for org ${org}`);
      const mapped =
        principal === undefined ? undefined : auth.identities.find((i) => callerMatches(i.match, principal));
      if (auth.type === 'jwt') {
        const user = mapped?.user ?? auth.user;
        if (minter === undefined || user === undefined || signing === undefined) {
          throw new Error(`org ${org} is jwt without signing keys or user`);
        }
        const before = minter.minted();
        const pending = minter.tokenFor({ org, user, audience: auth.audience, issuer: signing.issuer });
        // Read before awaiting: while a shared signature is awaited, other calls' signatures are counted too.
        const signedHere = minter.minted() !== before;
        const token = await pending;
        if (signedHere) hooks.onMint?.(org);
        return {
          identity: { type: 'jwt', name: mapped?.name ?? defaultIdentity, user },
          authorization: `Bearer ${token}`,
        };
      }
      const name = mapped?.name ?? defaultIdentity;
      const basic = store.basic(org, name);
      if (basic === undefined) throw new Error(`org ${org} has no Basic credentials for identity ${name}`);
      const identity = basicIdentity(name, basic.promoted);
      const { version } = basic;
      if (basic.next === undefined) return { identity, authorization: basic.authorization, version };
      const next = basic.next;
      return {
        identity,
        authorization: basic.authorization,
        version,
        fallback: {
          authorization: next,
          promote: () => {
            store.promote(org, name, basic.version);
            hooks.onPromote?.(org, name);
          },
        },
      };
    },
  };
}

/** What a send needs to know of SnapLogic's answer. */
interface Answer {
  readonly status: number;
}

/**
 * Sends with the credential; when SnapLogic answers 401 and a next password is held, sends once more with it (a
 * 401 means nothing ran, so the retry is safe) and, when that is not refused too, promotes it. Returns the answer
 * that counts and the identity it was given under.
 */
export async function sendAuthorized<A extends Answer>(
  credential: UpstreamCredential,
  send: (authorization: string) => Promise<A>,
  onFallback: () => void,
): Promise<{ answer: A; identity: UpstreamIdentity }> {
  const answer = await send(credential.authorization);
  if (answer.status !== 401 || credential.fallback === undefined) return { answer, identity: credential.identity };
  onFallback();
  const retried = await send(credential.fallback.authorization);
  if (retried.status !== 401 && retried.status !== 403) credential.fallback.promote();
  return { answer: retried, identity: { ...credential.identity, nextPassword: true } };
}
