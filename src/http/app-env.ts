// The one Hono environment type for the whole app: per-request variables set by middleware.
import type { Admission } from './admission.js';
import type { Principal } from '../auth/principal.js';
import type { CallFacts } from '../audit/event.js';
import type { RuntimeCall } from '../snaplogic/runtime-api.js';
import type { RequestTarget } from '../snaplogic/target.js';
import type { CallSignal } from './incoming.js';

export type AppEnv = {
  Variables: {
    /** The request id echoed in X-Request-Id and written to the audit trail. */
    requestId: string;
    /**
     * What the matched route has read of the path so far (its action, then the org once valid), for
     * the audit event of a path that does not validate. Nothing but the audit trail reads it.
     */
    route: Partial<RequestTarget> | undefined;
    /** Set by the route's validation step once the whole path is valid; every later step reads it. */
    target: RequestTarget | undefined;
    /** The SnapLogic call the path matched, and its validated query (without `?`; empty for none). */
    runtimeCall: { readonly call: RuntimeCall; readonly query: string } | undefined;
    /** SnapLogic's answer as passed on to the caller (status, headers, body), for the Idempotency-Key record. */
    answer: { status: number; headers: Record<string, string | string[] | undefined>; body: Uint8Array } | undefined;
    /** Set by authenticate once the token is verified; undefined before (and on a refused token). */
    principal: Principal | undefined;
    /** What the call has established so far (limits, attempt, SnapLogic's answer), for its audit events. */
    call: CallFacts;
    /**
     * Headers every response to this request carries (X-Request-Id, then the RateLimit fields once
     * a call is counted). Set by the request context; read and added to through http/respond.ts.
     */
    responseHeaders: Record<string, string>;
    /** True once shutdown has begun: every response closes its connection (see respond.ts). */
    draining: () => boolean;
    /** The response built by respond(), which already carries `responseHeaders`. */
    builtResponse: Response | undefined;
    /**
     * Fires when the caller hangs up or shutdown cuts the call; watched from the first byte. Every
     * call has one (health checks do not); read it with signalOf() (http/call.ts).
     */
    signal: CallSignal | undefined;
    /** The request body, read (within its deadline) before any limit is taken; unset before that. */
    body: Uint8Array | undefined;
    /** Set when the run guard read the run's state at SnapLogic (a retry after an unknown outcome). */
    stateRead: boolean | undefined;
    /**
     * Set by the rate limits when they send their check without waiting for it (the org has headroom): later steps
     * send their own Redis work at once and the forward waits for every check (see http/admission.ts).
     */
    admission: Admission | undefined;
    /** Set the moment the call is handed to SnapLogic; until then nothing was forwarded. */
    forwarded: boolean | undefined;
  };
};
