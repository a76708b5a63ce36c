// The one Hono environment type for the whole app: per-request variables set by middleware.
import type { Principal } from '../auth/principal.js';
import type { CallFacts } from '../audit/event.js';
import type { Action } from '../config/schema.js';
import type { RequestTarget } from '../snaplogic/target.js';
import type { CallSignal } from './incoming.js';

export type AppEnv = {
  Variables: {
    /** The request id echoed in X-Request-Id and written to the audit trail. */
    requestId: string;
    /** The action of the route the request matched, set before its path is validated. */
    action: Action | undefined;
    /** Set by the route's validation step; every later step reads it (see snaplogic/target.ts). */
    target: RequestTarget | undefined;
    /** Set by authenticate once the token is verified; undefined before (and on a refused token). */
    principal: Principal | undefined;
    /** What the call has established so far (limits, attempt, SnapLogic's answer), for its audit events. */
    call: CallFacts;
    /**
     * Headers every response to this request carries (X-Request-Id, then the RateLimit fields once
     * a call is counted). Only http/respond.ts reads or writes them.
     */
    responseHeaders: Record<string, string>;
    /** The response built by respond(), which already carries `responseHeaders`. */
    builtResponse: Response;
    /** Fires when the caller hangs up or shutdown cuts the call; watched from the first byte. */
    signal: CallSignal;
    /** The request body, read (within its deadline) before any limit is taken. */
    body: Uint8Array;
    /** Set the moment the call is handed to SnapLogic; until then nothing was forwarded. */
    forwarded: boolean;
  };
};
