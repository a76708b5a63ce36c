// The authorize middleware: the verified caller must be granted this action on this org, deny by default.
import type { MiddlewareHandler } from 'hono';
import type { Action } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import type { Policy } from './policy.js';

/**
 * Checks the policy for the org and action already recorded on the request. An unknown org and a
 * forbidden one get the same answer (same status, same body), so callers cannot probe org names.
 */
export function authorize(policy: Policy, knownOrg: (org: string) => boolean = () => true) {
  return (action: Action): MiddlewareHandler<AppEnv> =>
    async function authorizeMiddleware(c, next) {
      const org = c.get('audit').org;
      if (org === undefined || !knownOrg(org) || !policy.allows(c.get('principal'), action, org)) {
        throw new GatewayError(
          'forbidden',
          `This caller may not perform ${action} on this org, or the org is not served by this gateway. Ask the platform team for a policy grant; quote the X-Request-Id.`,
        );
      }
      await next();
    };
}
