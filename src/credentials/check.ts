// `snapgate credentials check`: one harmless read (a list of at most one run) per org and SnapLogic identity, sent
// with that identity's own credential, so an operator learns before serving which ones SnapLogic takes. Results are
// values; nothing here prints, and no result carries a header, a password or a token.
import { randomUUID } from 'node:crypto';
import { defaultIdentity, type Config, type CredentialType } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { runtimeCalls, upstreamPath } from '../snaplogic/runtime-api.js';
import { UpstreamCallError, type Forwarder, type UpstreamResponse } from '../upstream/forwarder.js';
import { upstreamRequestHeaders } from '../upstream/headers.js';
import { upstreamOrgs, type UpstreamOrg } from '../upstream/orgs.js';
import type { JwtMinter } from './jwt-minter.js';
import type { CredentialStore } from './store.js';
import { audienceOf, sendAuthorized, storeMinter, type UpstreamCredential } from './upstream-auth.js';

/**
 * ok: SnapLogic answered 2xx. ok_next_password: the current password got 401 and the next one 2xx (serving would
 * promote it). rejected: 401 or 403. unexpected: any other status, or an answer snapgate refuses (too large).
 * unreachable: no answer (refused, timed out, connection closed).
 */
export type CheckResult = 'ok' | 'ok_next_password' | 'rejected' | 'unexpected' | 'unreachable';

export interface CredentialCheck {
  readonly org: string;
  /** `default` (the org's own credential) or the name of an `identities` entry. */
  readonly identity: string;
  readonly type: CredentialType;
  /** jwt: the SnapLogic user (`sub`) of the token. */
  readonly user?: string;
  readonly result: CheckResult;
  /** SnapLogic's status (the next password's, when that was tried); absent when there was no answer. */
  readonly status?: number;
  /** unreachable or unexpected without a status: the error's code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...). */
  readonly error?: string;
  /** basic: the current password got 401, so the next one was sent too. */
  readonly nextPasswordTried?: boolean;
}

/** Whether a result counts as working: the command exits 0 only when every check is one of these. */
export const passes = (check: CredentialCheck): boolean => check.result === 'ok' || check.result === 'ok_next_password';

/** One identity to check, with what builds its credential. */
interface Target {
  readonly org: string;
  readonly identity: string;
  readonly type: CredentialType;
  readonly user?: string;
  readonly credential: () => Promise<UpstreamCredential>;
}

/** Checks run at once at most; enough to get through many orgs without opening a burst of connections. */
const CONCURRENCY = 4;

function targetsOf(
  config: Pick<Config, 'orgs' | 'signing'>,
  orgs: readonly string[],
  store: CredentialStore,
  minter: JwtMinter | undefined,
): Target[] {
  const targets: Target[] = [];
  for (const org of orgs) {
    const cfg = config.orgs[org]!;
    const names = [defaultIdentity, ...cfg.identities.map((i) => i.name ?? i.user!)];
    if (cfg.credentials === 'basic') {
      for (const identity of names) {
        targets.push({
          org,
          identity,
          type: 'basic',
          credential: () => Promise.resolve().then(() => basicCredential(store, org, identity)),
        });
      }
      continue;
    }
    const users = [cfg.user!, ...cfg.identities.map((i) => i.user!)];
    names.forEach((identity, i) => {
      const user = users[i]!;
      targets.push({
        org,
        identity,
        type: 'jwt',
        user,
        credential: () => jwtCredential(config, minter, org, identity, user),
      });
    });
  }
  return targets;
}

/** The identity's stored Basic set; the next password's promotion is only noted (this process serves nothing). */
function basicCredential(store: CredentialStore, org: string, identity: string): UpstreamCredential {
  const basic = store.basic(org, identity);
  if (basic === undefined) throw new Error(`org ${org} has no Basic credentials for identity ${identity}`);
  return {
    identity: { type: 'basic', name: identity },
    authorization: basic.authorization,
    ...(basic.next !== undefined ? { fallback: { authorization: basic.next, promote: () => undefined } } : {}),
  };
}

async function jwtCredential(
  config: Pick<Config, 'orgs' | 'signing'>,
  minter: JwtMinter | undefined,
  org: string,
  identity: string,
  user: string,
): Promise<UpstreamCredential> {
  const signing = config.signing;
  if (minter === undefined || signing === undefined) throw new Error(`org ${org} is jwt without signing keys`);
  const audience = audienceOf(config.orgs[org]!.pod);
  const token = await minter.tokenFor({ org, user, audience, issuer: signing.issuer });
  return { identity: { type: 'jwt', name: identity, user }, authorization: `Bearer ${token}` };
}

/** The most specific code in an error's cause chain: the transport's (ECONNREFUSED) over snapgate's own. */
function errorCode(err: unknown): string {
  let code = err instanceof GatewayError ? err.code : 'error';
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth += 1) {
    const own = (e as { code?: unknown }).code;
    if (typeof own === 'string' && own.length > 0) code = own;
  }
  return code;
}

async function checkOne(target: Target, upstream: UpstreamOrg, forwarder: Forwarder): Promise<CredentialCheck> {
  const { org, identity, type } = target;
  const base = { org, identity, type, ...(target.user !== undefined ? { user: target.user } : {}) };
  const credential = await target.credential();
  const path = `${upstreamPath(runtimeCalls.list, { org })}?limit=1`;
  const send = (authorization: string): Promise<UpstreamResponse> =>
    forwarder.forward({
      origin: upstream.origin,
      path,
      method: 'GET',
      headers: upstreamRequestHeaders([['accept', 'application/json']], {
        authorization,
        requestId: randomUUID(),
      }),
      timeouts: upstream.timeouts,
      kind: 'read',
    });
  let nextPasswordTried = false;
  try {
    const { answer } = await sendAuthorized(credential, send, () => {
      nextPasswordTried = true;
    });
    const status = answer.status;
    const tried = nextPasswordTried ? { nextPasswordTried } : {};
    if (status >= 200 && status < 300) {
      return { ...base, result: nextPasswordTried ? 'ok_next_password' : 'ok', status, ...tried };
    }
    return { ...base, result: status === 401 || status === 403 ? 'rejected' : 'unexpected', status, ...tried };
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    const tried = nextPasswordTried ? { nextPasswordTried } : {};
    const result = err instanceof UpstreamCallError ? 'unreachable' : 'unexpected';
    return { ...base, result, error: errorCode(err), ...tried };
  }
}

/**
 * Checks every identity (the default and each `identities` entry) of `orgs` (default: every configured org, in
 * config order), at most 4 at a time, each with one `GET /api/1/rest/public/runtime/{org}?limit=1` under the org's
 * upstream timeouts. Returns the results in that order. A Basic 401 is retried once with the next password, as
 * serving does, but nothing is promoted. Throws for an org that is not configured (the caller checks names first).
 */
export async function checkCredentials(
  config: Pick<Config, 'orgs' | 'signing' | 'upstream'>,
  deps: { store: CredentialStore; forwarder: Forwarder },
  orgs: readonly string[] = Object.keys(config.orgs),
): Promise<CredentialCheck[]> {
  for (const org of orgs) if (config.orgs[org] === undefined) throw new Error(`org ${org} is not configured`);
  const { store, forwarder } = deps;
  const minter = storeMinter(config.signing, store);
  const upstreams = upstreamOrgs(config);
  const targets = targetsOf(config, orgs, store, minter);
  const results: CredentialCheck[] = new Array<CredentialCheck>(targets.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    while (nextIndex < targets.length) {
      const i = nextIndex;
      nextIndex += 1;
      const target = targets[i]!;
      results[i] = await checkOne(target, upstreams.get(target.org)!, forwarder);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, targets.length) }, worker));
  return results;
}
