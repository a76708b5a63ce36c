// The one Hono environment type for the whole app: per-request variables set by middleware.
import type { Principal } from '../auth/principal.js';
import type { AuditFields } from '../audit/event.js';
import type { CallSignal } from './incoming.js';

export type AppEnv = {
  Variables: {
    /** The request id echoed in X-Request-Id and written to the audit trail. */
    requestId: string;
    /** This gateway instance, for audit events. */
    instance: string;
    /** Set by authenticate once the token is verified. */
    principal: Principal;
    /** What this request has established so far, for the audit event written after it ends. */
    audit: AuditFields;
    /**
     * Headers every response to this request carries (X-Request-Id, then the RateLimit fields once
     * a call is counted). Responses snapgate builds include them as plain fields, which keeps
     * @hono/node-server on its fast path; see `withRequestHeaders`.
     */
    responseHeaders: Record<string, string>;
    /** The response built with `responseHeaders` already in it (see response-headers.ts). */
    builtResponse: Response;
    /** Fires when the caller hangs up or shutdown cuts the call; watched from the first byte. */
    signal: CallSignal;
    /** The request body, read (within its deadline) before any limit is taken. */
    body: Uint8Array;
    /** Set the moment the call is handed to SnapLogic; until then nothing was forwarded. */
    forwarded: boolean;
  };
};
