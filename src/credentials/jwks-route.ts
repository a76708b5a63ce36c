// The JWKS SnapLogic fetches to verify the tokens snapgate signs: the next, active and retired keys' public members
// (see publicJwks), with Cache-Control and an ETag. Served on the callers' listener or on a listener of its own.
import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import type { SigningConfig } from '../config/schema.js';
import type { AppEnv } from '../http/app-env.js';
import type { CredentialStore } from './store.js';
import { publicJwks, type KeySet } from './signing-keys.js';

export interface JwksServing {
  readonly path: string;
  /** Cache-Control max-age, in ms. */
  readonly maxAgeMs: number;
  /** The current key set (a reload takes effect on the next fetch). */
  keys(): KeySet | undefined;
}

/** What the JWKS route serves, from the signing config and the store's current keys. */
export function jwksServing(signing: Pick<SigningConfig, 'jwks'>, store: Pick<CredentialStore, 'keys'>): JwksServing {
  return { path: signing.jwks.path, maxAgeMs: signing.jwks.maxAge, keys: () => store.keys() };
}

/** GET (and HEAD) `path`: the JWKS as JSON; 304 to a matching If-None-Match; 503 while no key set is loaded. */
export function jwksRoutes(serving: JwksServing): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  let cached: { set: KeySet; body: string; etag: string } | undefined;
  routes.get(serving.path, (c) => {
    const set = serving.keys();
    if (set === undefined) return c.json({ keys: [] }, 503, { 'cache-control': 'no-store', 'retry-after': '1' });
    if (cached?.set !== set) {
      const body = JSON.stringify(publicJwks(set));
      cached = { set, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
    }
    const headers = {
      'content-type': 'application/json',
      'cache-control': `public, max-age=${Math.floor(serving.maxAgeMs / 1000)}`,
      etag: cached.etag,
    };
    const inm = c.req.header('if-none-match');
    // Weak comparison (RFC 9110 13.1.2): a compressing proxy between here and SnapLogic hands on W/"…".
    const matches = (t: string) => t === '*' || t === cached!.etag || t === `W/${cached!.etag}`;
    if (inm !== undefined && inm.split(',').some((t) => matches(t.trim()))) {
      return c.body(null, 304, headers);
    }
    return c.body(cached.body, 200, headers);
  });
  return routes;
}

/** A Hono app serving only the JWKS, for its own listener. */
export function jwksApp(serving: JwksServing): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.route('/', jwksRoutes(serving));
  app.all('*', (c) => c.json({ error: 'not found: this listener serves the JWKS only' }, 404));
  return app;
}
