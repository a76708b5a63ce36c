// Who may do what on which org: pure rule matching over verified claims, deny by default.
import type { Action, CallerMatch, PolicyRuleConfig } from '../config/schema.js';
import type { Principal } from '../auth/principal.js';

export interface Policy {
  /** True only when some rule matches the caller and grants `action` on `org`. */
  allows(principal: Principal, action: Action, org: string): boolean;
}

// Claims that OAuth defines as space-delimited strings (RFC 8693 `scope`, Azure AD `scp`).
const spaceDelimited = new Set(['scope', 'scp']);

function claimAt(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (name in claims) return claims[name];
  // Nested claims such as realm_access.roles; an exact key (even one with dots, like a URL) wins.
  let node: unknown = claims;
  for (const part of name.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** The values a claim holds, as strings: arrays element-wise, scope strings split on spaces. */
function claimValues(name: string, value: unknown): string[] {
  if (typeof value === 'string') return spaceDelimited.has(name) ? value.split(/\s+/).filter(Boolean) : [value];
  if (typeof value === 'number' || typeof value === 'boolean') return [String(value)];
  if (Array.isArray(value)) {
    return value.filter((v): v is string | number => typeof v === 'string' || typeof v === 'number').map(String);
  }
  return [];
}

const asList = (v: string | readonly string[]): readonly string[] => (typeof v === 'string' ? [v] : v);

/** True when the caller fits `match` (policy rules and org identity mappings use the same matching). */
export function callerMatches(match: CallerMatch, principal: Principal): boolean {
  if (match.iss !== undefined && match.iss !== principal.iss) return false;
  if (match.sub !== undefined && !asList(match.sub).includes(principal.sub)) return false;
  for (const [name, expected] of Object.entries(match.claims ?? {})) {
    const held = claimValues(name, claimAt(principal.claims, name));
    if (!asList(expected).some((e) => held.includes(e))) return false;
  }
  return true;
}

function grants(rule: PolicyRuleConfig, action: Action, org: string): boolean {
  if (!rule.actions.includes(action)) return false;
  return rule.orgs === '*' || rule.orgs.includes('*') || rule.orgs.includes(org);
}

/** Compiles the configured rules. With no rules, nothing is allowed. */
export function createPolicy(rules: readonly PolicyRuleConfig[]): Policy {
  return {
    allows: (principal, action, org) =>
      rules.some((rule) => grants(rule, action, org) && callerMatches(rule.match, principal)),
  };
}
