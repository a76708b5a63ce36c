// Caller headers that must never reach SnapLogic: each tries to change what it does (method override, URL rewrite),
// whom it believes the caller is (impersonation, client address, origin, cookie) or is simply not on the allow-list.
// Used by the header allow-list's unit test and by the end-to-end test through a real gateway.

/** Header name (lower case) to a value a hostile caller would send. */
export const hostileHeaders: Readonly<Record<string, string>> = {
  'x-http-method-override': 'DELETE',
  'x-http-method': 'DELETE',
  'x-method-override': 'DELETE',
  'x-original-url': '/api/1/rest/public/runtime/stop/Acme-Prod/x',
  'x-rewrite-url': '/api/1/rest/public/runtime/stop/Acme-Prod/x',
  'x-sl-impersonate': 'admin@example.com',
  'x-snaplogic-user': 'admin@example.com',
  'true-client-ip': '10.0.0.1',
  'x-client-ip': '10.0.0.1',
  'x-forwarded-host': 'evil.example',
  origin: 'https://evil.example',
  referer: 'https://evil.example/',
  cookie: 'SLSESSION=stolen',
  'x-custom': 'anything',
};
