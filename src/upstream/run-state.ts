// Reads one run's state from SnapLogic with the org's credentials: what a retry after an unknown outcome must know
// before it may forward again.
import type { Principal } from '../auth/principal.js';
import { sendAuthorized, type UpstreamAuth } from '../credentials/upstream-auth.js';
import { GatewayError } from '../errors.js';
import { runStates, runtimeCalls, upstreamPath, type RunState } from '../snaplogic/runtime-api.js';
import type { RequestTarget } from '../snaplogic/target.js';
import type { Forwarder, UpstreamAbortSignal } from './forwarder.js';
import { upstreamRequestHeaders } from './headers.js';
import type { UpstreamOrg } from './orgs.js';

/** The run's state as SnapLogic reports it; throws GatewayError `run_state_unavailable` when it cannot be read. */
export type RunStateReader = (
  target: RequestTarget,
  call: { readonly requestId: string; readonly signal: UpstreamAbortSignal; readonly principal: Principal | undefined },
) => Promise<RunState>;

const known: ReadonlySet<string> = new Set(runStates);

function unavailable(why: string, cause?: unknown): GatewayError {
  return new GatewayError(
    'run_state_unavailable',
    `An earlier call with this Idempotency-Key has an unknown outcome, and the run's state could not be read ` +
      `(${why}), so nothing was forwarded. Retry with the same key.`,
    { cause, headers: { 'retry-after': '1' } },
  );
}

/** `GET /runtime/{org}/{ruuid}?level=summary`, once, within the org's timeouts; `response_map.state` is the answer. */
export function createRunStateReader(deps: {
  forwarder: Forwarder;
  upstreamAuth: UpstreamAuth;
  onCredentialFallback: (org: string, identity: string) => void;
  orgs: ReadonlyMap<string, UpstreamOrg>;
}): RunStateReader {
  return async (target, call) => {
    const org = deps.orgs.get(target.org);
    if (org === undefined || target.ruuid === undefined) throw new Error(`run state of ${target.org}: no pod or run`);
    let res;
    try {
      // The same SnapLogic identity as the write it precedes.
      const credential = await deps.upstreamAuth.forCall(target.org, call.principal);
      const send = (authorization: string) =>
        deps.forwarder.forward({
          origin: org.origin,
          path: `${upstreamPath(runtimeCalls.status, target)}?level=summary`,
          method: 'GET',
          headers: upstreamRequestHeaders([], { authorization, requestId: call.requestId }),
          timeouts: org.timeouts,
          signal: call.signal,
          kind: 'read',
        });
      res = (
        await sendAuthorized(credential, send, () => deps.onCredentialFallback(target.org, credential.identity.name))
      ).answer;
    } catch (err) {
      if (err instanceof GatewayError && (err.code === 'client_closed_request' || err.code === 'aborted_by_shutdown')) {
        throw err;
      }
      throw unavailable(err instanceof GatewayError ? err.code : 'SnapLogic did not answer', err);
    }
    if (res.status !== 200) throw unavailable(`SnapLogic answered ${res.status}`);
    let state: unknown;
    try {
      const parsed = JSON.parse(Buffer.from(res.body).toString('utf8')) as { response_map?: { state?: unknown } };
      state = parsed.response_map?.state;
    } catch (err) {
      throw unavailable('SnapLogic sent no JSON', err);
    }
    if (typeof state !== 'string' || !known.has(state)) throw unavailable('SnapLogic sent no known state');
    return state as RunState;
  };
}
