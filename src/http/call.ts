// What the request path knows of the call in progress: its signal, and its facts as the audit trail reads them.
import type { Context } from 'hono';
import type { RequestFacts } from '../audit/request-event.js';
import type { AppEnv } from './app-env.js';
import { incomingOf, requestHeader, type CallSignal } from './incoming.js';

/** The call's signal, set by the request context for every call (health checks have none). */
export function signalOf(c: Context<AppEnv>): CallSignal {
  const signal = c.get('signal');
  if (signal === undefined) throw new Error('a call step ran on a request the request context did not watch');
  return signal;
}

/** What this request has established so far, as the audit trail reads it. */
export function factsOf(c: Context<AppEnv>, instance: string): RequestFacts {
  return {
    requestId: c.get('requestId'),
    instance,
    principal: c.get('principal'),
    target: c.get('target') ?? c.get('route'),
    call: c.get('call'),
    client: { address: incomingOf(c)?.socket?.remoteAddress, userAgent: requestHeader(c, 'user-agent') },
  };
}
