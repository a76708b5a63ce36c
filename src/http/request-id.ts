// The request id: the caller's X-Request-Id when it is safe to echo and log, otherwise one made here.
import { randomUUID } from 'node:crypto';

const saneRequestId = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's X-Request-Id when it is short and plain; otherwise undefined (a new one is made). */
export function acceptableRequestId(value: string | undefined | null): string | undefined {
  return value && saneRequestId.test(value) ? value : undefined;
}

/** The id this request is known by in responses, logs and the audit trail. */
export function requestIdOf(header: string | undefined | null): string {
  return acceptableRequestId(header) ?? randomUUID();
}
