// Config validation in tests: the smallest valid document, and the problems parseConfig reports for a document.
import { ConfigError, parseConfig } from '../../src/config/load.js';

/** The smallest valid config document (one remote-JWKS issuer, one rule, one org), a fresh object each call. */
export function minimalConfig<T extends Record<string, unknown>>(extra?: T) {
  return {
    auth: {
      issuers: [
        {
          issuer: 'https://idp.example',
          audience: 'snapgate',
          jwksUri: 'https://idp.example/jwks',
          algorithms: ['ES256'],
        },
      ],
    },
    policy: [{ match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] }],
    orgs: { 'Acme-Prod': { pod: 'https://elastic.snaplogic.com', username: 'env:U', password: 'file:/run/secrets/p' } },
    ...extra,
  };
}

/** Every problem `doc` has (path: message), in the order parseConfig reports them; [] when it is valid. */
export function problemsOf(doc: unknown, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(doc, 'test', env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}
