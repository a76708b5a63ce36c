// What SnapLogic org names and runtime ids look like; the single check shared by routing and config.

/** Longest org name accepted. SnapLogic publishes no limit; 100 covers every real name seen. */
export const MAX_ORG_LENGTH = 100;

// Letters, digits, '-', '_' and '.', starting with a letter or digit. Dots are allowed inside
// names, but '..' never is, so no accepted name can act as a path segment of its own.
const orgPattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

// `<24 hex>_<uuid>`, e.g. 52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5
const ruuidPattern = /^[0-9a-fA-F]{24}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** True when `org` is a safe, plausible SnapLogic environment name. Case is kept: orgs are case-sensitive. */
export function isValidOrg(org: string): boolean {
  return org.length <= MAX_ORG_LENGTH && orgPattern.test(org) && !org.includes('..');
}

/** True when `ruuid` has SnapLogic's runtime id shape. */
export function isValidRuuid(ruuid: string): boolean {
  return ruuidPattern.test(ruuid);
}

/** What a caller is told when a path's org or ruuid segment fails these rules. */
export const INVALID_ORG_DETAIL =
  'The org segment is not a valid SnapLogic org name (letters, digits, ".", "_", "-"; at most 100 characters). ' +
  'Org names are case-sensitive.';
export const INVALID_RUUID_DETAIL =
  'The ruuid segment is not a SnapLogic runtime id (<24 hex>_<uuid>, ' +
  'e.g. 52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5).';
