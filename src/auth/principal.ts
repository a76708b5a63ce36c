// The verified caller, as the rest of the gateway sees it: made by the verifier, read by policy, limits and audit.
import type { JWTPayload } from 'jose';

/** The verified caller. Claims are kept for policy matching; the token itself is never kept. */
export interface Principal {
  readonly iss: string;
  readonly sub: string;
  /** `azp` or `client_id`, when the token carries one. */
  readonly clientId?: string;
  readonly claims: Readonly<JWTPayload>;
}
