// The authorize middleware: the verified caller must be granted this action on this org, deny by default.
import type { MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import type { Policy } from './policy.js';

/**
 * Checks the policy for the request's target (set by its route). An unknown org and a forbidden
 * one get the same answer (same status, same body), so callers cannot probe org names.
 * `knownOrg` says which orgs this gateway serves; there is no default.
 */
export function authorize(policy: Policy, knownOrg: (org: string) => boolean): MiddlewareHandler<AppEnv> {
  return async function authorizeMiddleware(c, next) {
    const target = c.get('target');
    const principal = c.get('principal');
    if (target === undefined || principal === undefined) {
      throw new Error('authorize runs after the route validated its target and the caller was authenticated');
    }
    if (!knownOrg(target.org) || !policy.allows(principal, target.action, target.org)) {
      throw new GatewayError(
        'forbidden',
        `This caller may not perform ${target.action} on this org, or the org is not served by this gateway. ` +
          'Ask the platform team for a policy grant; quote the X-Request-Id.',
      );
    }
    await next();
  };
}
