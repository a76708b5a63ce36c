// The SnapLogic runtime calls snapgate serves, as data (method, path, kind, query parameters), and the pure checks
// that turn a request's method, path and query into a typed call: no I/O, no Hono, nothing kept between calls.
import type { ErrorCode } from '../errors.js';
import { INVALID_ORG_DETAIL, INVALID_RUUID_DETAIL, isValidOrg, isValidRuuid } from './names.js';

/** Where every runtime call lives, on snapgate and on SnapLogic alike (snapgate is a drop-in). */
export const RUNTIME_PREFIX = '/api/1/rest/public/runtime';

/**
 * Every action a runtime call can stand for. A superset of `Action` in src/config/schema.ts, which lists only
 * start/stop/status today: the wiring step makes that list this one, so that RequestTarget can carry any of them.
 */
export const runtimeActions = [
  'runtime.start',
  'runtime.stop',
  'runtime.status',
  'runtime.list',
  'runtime.stats',
] as const;
export type RuntimeAction = (typeof runtimeActions)[number];

/** One per path shape; `runtime.stats` has three. */
export type RuntimeCallId = 'start' | 'stop' | 'status' | 'list' | 'stats' | 'stats.daily' | 'stats.concurrent';

/** Writes change a run (and need Write on the asset); reads do not. Limits and audit differ per kind. */
export type RuntimeCallKind = 'write' | 'read';

export type RuntimeMethod = 'GET' | 'POST';

/** A run's states, as SnapLogic spells them (case-sensitive). Suspending/Suspended/Resuming: Resumable only. */
export const runStates = [
  'Queued',
  'NoUpdate',
  'Prepared',
  'Started',
  'Completed',
  'Failing',
  'Failed',
  'Stopped',
  'Stopping',
  'Suspending',
  'Suspended',
  'Resuming',
] as const;
export type RunState = (typeof runStates)[number];

/** How a run was started: `always_on` is an Ultra Task. */
export const invokers = ['triggered', 'scheduled', 'always_on', 'manual'] as const;

/** How much a list or status answer carries (case-sensitive). */
export const levels = ['summary', 'detail'] as const;

/** What a query parameter's value must be. */
export type QueryRule =
  | { readonly type: 'one_of'; readonly values: readonly string[] }
  | { readonly type: 'integer'; readonly min: number; readonly max: number }
  /** Free text up to MAX_QUERY_VALUE_LENGTH; `spaces: false` also refuses any whitespace. */
  | { readonly type: 'text'; readonly spaces: boolean }
  /** `/{org}/projects/{project}` or `/{org}/shared`, {org} being the org of the path. */
  | { readonly type: 'project_path' }
  /** `YYYY-MM-DD`, a real calendar date. */
  | { readonly type: 'date' }
  /** `YYYY-MM-DDTHH:MM:SS`, a real calendar date and time, no zone or fraction. */
  | { readonly type: 'date_time' };

export interface QueryParameter {
  readonly name: string;
  readonly rule: QueryRule;
}

export interface RuntimeCall {
  readonly id: RuntimeCallId;
  readonly action: RuntimeAction;
  readonly method: RuntimeMethod;
  /** The full path, with `{org}` and `{ruuid}` placeholders; the same on snapgate and on SnapLogic. */
  readonly pattern: string;
  readonly kind: RuntimeCallKind;
  /** True when the path names a run (`{ruuid}`); false for calls on an org as a whole. */
  readonly targetsRun: boolean;
  /** The documented query parameters, in the order a forwarded query lists them. Empty: none accepted. */
  readonly query: readonly QueryParameter[];
}

/** What a call is aimed at; RequestTarget (src/snaplogic/target.ts) has this shape once its Action widens. */
export interface RuntimeTarget {
  readonly action: RuntimeAction;
  readonly org: string;
  readonly ruuid?: string;
}

/** Longest query value accepted, in UTF-16 code units. SnapLogic publishes none; names and paths fit well within. */
export const MAX_QUERY_VALUE_LENGTH = 256;

/**
 * First path segments that name a call, not an org. They win over `/runtime/{org}` and `/runtime/{org}/{ruuid}`
 * (as the literal segments do on SnapLogic's own paths), so an org literally named `start`, `stop` or `api-stats`
 * cannot be listed or have its runs read through snapgate; it can still be the org of a start, stop or api-stats
 * call (`/runtime/start/stop/{ruuid}` resumes a run of the org `stop`). Matching is case-sensitive, like org names:
 * `Start` is an org.
 */
export const RESERVED_FIRST_SEGMENTS: readonly string[] = Object.freeze(['start', 'stop', 'api-stats']);

const param = (name: string, rule: QueryRule): QueryParameter => Object.freeze({ name, rule: Object.freeze(rule) });
const unixMs: QueryRule = { type: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER };
const level = param('level', { type: 'one_of', values: levels });
const dateTime = param('date_time', { type: 'date_time' });

// GET /runtime/{org}: the filters of the current docs, plus `level` from the older Pipeline Monitoring API page
// (real clients send `level=summary`). `org_wide` from that page is not in the current docs and is refused.
const listQuery: readonly QueryParameter[] = [
  // One state per request: the docs say "runs in the specified state", and the public client we found loops over
  // states with one request each. A comma-separated list is not a documented form, so it is refused.
  param('state', { type: 'one_of', values: runStates }),
  param('invoker', { type: 'one_of', values: invokers }),
  param('pipe_name', { type: 'text', spaces: true }),
  param('project_path', { type: 'project_path' }),
  param('plex_label', { type: 'text', spaces: true }),
  param('cc_label', { type: 'text', spaces: true }),
  // SnapLogic user ids are e-mail addresses: no whitespace.
  param('user_id', { type: 'text', spaces: false }),
  param('last_hours', { type: 'integer', min: 1, max: 1080 }),
  param('start', unixMs),
  param('end', unixMs),
  param('limit', { type: 'integer', min: 1, max: 1000 }),
  param('offset', { type: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER }),
  level,
];

function call(
  id: RuntimeCallId,
  action: RuntimeAction,
  method: RuntimeMethod,
  path: string,
  query: readonly QueryParameter[],
): RuntimeCall {
  return Object.freeze({
    id,
    action,
    method,
    pattern: `${RUNTIME_PREFIX}${path}`,
    kind: method === 'POST' ? 'write' : 'read',
    targetsRun: path.endsWith('{ruuid}'),
    query: Object.freeze([...query]),
  });
}

/** The table: every runtime call snapgate serves. A Record over the id union, so none can be left out. */
export const runtimeCalls: Readonly<Record<RuntimeCallId, RuntimeCall>> = Object.freeze({
  start: call('start', 'runtime.start', 'POST', '/start/{org}/{ruuid}', []),
  stop: call('stop', 'runtime.stop', 'POST', '/stop/{org}/{ruuid}', []),
  list: call('list', 'runtime.list', 'GET', '/{org}', listQuery),
  status: call('status', 'runtime.status', 'GET', '/{org}/{ruuid}', [level]),
  stats: call('stats', 'runtime.stats', 'GET', '/api-stats/{org}', [dateTime]),
  // `date` in the current docs, `date_time` in older ones: both accepted (not together), forwarded as given.
  'stats.daily': call('stats.daily', 'runtime.stats', 'GET', '/api-stats/{org}/daily', [
    param('date', { type: 'date' }),
    dateTime,
  ]),
  'stats.concurrent': call('stats.concurrent', 'runtime.stats', 'GET', '/api-stats/{org}/concurrent', [dateTime]),
});

// ---------------------------------------------------------------------------------------------------------------
// Path matching

/** Why a path is not a runtime call. */
export type PathRefusal = 'unknown_path' | 'invalid_path' | 'method_not_allowed' | 'invalid_org' | 'invalid_ruuid';

export type PathMatch =
  | { readonly ok: true; readonly call: RuntimeCall; readonly org: string; readonly ruuid?: string }
  /** Not under RUNTIME_PREFIX at all: not ours (404). */
  | { readonly ok: false; readonly reason: 'unknown_path'; readonly detail: string }
  /** Under the prefix, but no call has this shape (extra, missing, empty or dot segments). */
  | {
      readonly ok: false;
      readonly reason: 'invalid_path';
      /** The action the path's family asks for, when its first segments tell (for the audit event). */
      readonly action?: RuntimeAction;
      readonly detail: string;
    }
  /** The paths of this family take other methods only; `allow` is the Allow header's list. */
  | {
      readonly ok: false;
      readonly reason: 'method_not_allowed';
      readonly action?: RuntimeAction;
      readonly allow: readonly RuntimeMethod[];
      readonly detail: string;
    }
  | { readonly ok: false; readonly reason: 'invalid_org'; readonly call: RuntimeCall; readonly detail: string }
  | {
      readonly ok: false;
      readonly reason: 'invalid_ruuid';
      readonly call: RuntimeCall;
      readonly org: string;
      readonly detail: string;
    };

/** The error a router answers a refused path with: 404, 400 or 405. */
export function errorCodeForPath(reason: PathRefusal): ErrorCode {
  switch (reason) {
    case 'unknown_path':
      return 'not_found';
    case 'method_not_allowed':
      return 'method_not_allowed';
    case 'invalid_path':
    case 'invalid_org':
    case 'invalid_ruuid':
      return 'invalid_path';
  }
}

/** Paths that share their first segment share their method; the first check after the prefix. */
interface Family {
  readonly method: RuntimeMethod;
  readonly shapes: string;
  /** The action a path of this family asks for, even when its shape or method is wrong (for the audit event). */
  readonly action: (segments: readonly string[]) => RuntimeAction | undefined;
  /** The call for the segments after the prefix, or undefined when none has their shape. */
  readonly pick: (segments: readonly string[]) => { call: RuntimeCall; org: string; ruuid?: string } | undefined;
}

const runSegments = (c: RuntimeCall, s: readonly string[]) =>
  s.length === 3 ? { call: c, org: s[1]!, ruuid: s[2]! } : undefined;

// A Map, not an object: a first segment such as `constructor` or `__proto__` must not find anything.
const families: ReadonlyMap<string, Family> = new Map<string, Family>([
  [
    'start',
    {
      method: 'POST',
      shapes: runtimeCalls.start.pattern,
      action: () => 'runtime.start',
      pick: (s) => runSegments(runtimeCalls.start, s),
    },
  ],
  [
    'stop',
    {
      method: 'POST',
      shapes: runtimeCalls.stop.pattern,
      action: () => 'runtime.stop',
      pick: (s) => runSegments(runtimeCalls.stop, s),
    },
  ],
  [
    'api-stats',
    {
      method: 'GET',
      action: () => 'runtime.stats',
      shapes: `${runtimeCalls.stats.pattern}[/daily|/concurrent]`,
      pick: (s) => {
        if (s.length === 2) return { call: runtimeCalls.stats, org: s[1]! };
        if (s.length !== 3) return undefined;
        if (s[2] === 'daily') return { call: runtimeCalls['stats.daily'], org: s[1]! };
        if (s[2] === 'concurrent') return { call: runtimeCalls['stats.concurrent'], org: s[1]! };
        return undefined;
      },
    },
  ],
]);

const orgFamily: Family = {
  method: 'GET',
  action: (s) => (s.length === 1 ? 'runtime.list' : s.length === 2 ? 'runtime.status' : undefined),
  shapes: `${runtimeCalls.list.pattern} or ${runtimeCalls.status.pattern}`,
  pick: (s) => {
    if (s.length === 1) return { call: runtimeCalls.list, org: s[0]! };
    if (s.length === 2) return { call: runtimeCalls.status, org: s[0]!, ruuid: s[1]! };
    return undefined;
  },
};

/**
 * Matches a request's method and raw path (the pathname as the client sent it, without the query) to a runtime
 * call. Segments are compared as received: nothing is percent-decoded and no dot segment is folded, so an escaped
 * or `.`/`..` segment never matches (valid org and ruuid characters never need escaping). Checks run in the order a
 * router answers them: the prefix (404), the method of the path's family (405, as today's start route does even
 * for a malformed path), the shape (400), then the org and the ruuid (400, naming the call and, for a bad ruuid,
 * the org). Methods are compared exactly (`GET`, `POST`); HEAD is not served.
 */
export function matchRuntimePath(method: string, path: string): PathMatch {
  if (path !== RUNTIME_PREFIX && !path.startsWith(`${RUNTIME_PREFIX}/`)) {
    return { ok: false, reason: 'unknown_path', detail: 'No SnapLogic runtime call has this path.' };
  }
  const segments = path.slice(RUNTIME_PREFIX.length + 1).split('/');
  const family = families.get(segments[0]!) ?? orgFamily;
  const action = family.action(segments);
  const named = action !== undefined ? { action } : {};
  if (method !== family.method) {
    return {
      ok: false,
      reason: 'method_not_allowed',
      ...named,
      allow: [family.method],
      detail: `${family.shapes} accepts ${family.method} only.`,
    };
  }
  const picked = family.pick(segments);
  if (picked === undefined || segments.some((s) => s === '' || s === '.' || s === '..')) {
    return {
      ok: false,
      reason: 'invalid_path',
      ...named,
      detail: `The path must be ${family.shapes}, with exactly those segments.`,
    };
  }
  const { call: matched, org, ruuid } = picked;
  if (!isValidOrg(org)) return { ok: false, reason: 'invalid_org', call: matched, detail: INVALID_ORG_DETAIL };
  if (ruuid !== undefined && !isValidRuuid(ruuid)) {
    return { ok: false, reason: 'invalid_ruuid', call: matched, org, detail: INVALID_RUUID_DETAIL };
  }
  return ruuid === undefined ? { ok: true, call: matched, org } : { ok: true, call: matched, org, ruuid };
}

/**
 * SnapLogic's path for a call on a validated target, each segment encoded again (a no-op for valid names, kept so
 * that nothing unescaped can ever reach the upstream path). Throws when the target does not fit the call (a run
 * for a call on an org, no run for a call on a run, an invalid org or ruuid): a programming error, not a request's.
 */
export function upstreamPath(c: RuntimeCall, target: { readonly org: string; readonly ruuid?: string }): string {
  if (!isValidOrg(target.org)) throw new Error(`${c.action}: the target's org is not a valid org name`);
  if (c.targetsRun !== (target.ruuid !== undefined)) {
    throw new Error(`${c.action} ${c.targetsRun ? 'targets a run' : 'targets an org, not a run'}`);
  }
  if (target.ruuid !== undefined && !isValidRuuid(target.ruuid)) {
    throw new Error(`${c.action}: the target's ruuid is not a runtime id`);
  }
  return c.pattern
    .replace('{org}', encodeURIComponent(target.org))
    .replace('{ruuid}', encodeURIComponent(target.ruuid ?? ''));
}

// ---------------------------------------------------------------------------------------------------------------
// Query validation

/** A refused query: the parameter (as the caller spelled it, made printable) and what is accepted instead. */
export interface QueryProblem {
  readonly parameter: string;
  readonly detail: string;
}

export type QueryCheck =
  /** `query`: the query to forward, without `?`; empty when there is none. */
  { readonly ok: true; readonly query: string } | { readonly ok: false; readonly problem: QueryProblem };

// C0 and C1 controls and DEL, plus the Unicode line and paragraph separators: nothing that can break a line.
const CONTROL = /[\p{Cc}\u2028\u2029]/u;
const WHITESPACE = /\s/u;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/;
const DIGITS = /^\d{1,16}$/;
const MAX_NAME_SHOWN = 64;

/** A caller's parameter name, safe to put in a problem: controls replaced, length bounded. */
function shown(name: string): string {
  const printable = name.replace(new RegExp(CONTROL.source, 'gu'), '\uFFFD');
  return printable.length > MAX_NAME_SHOWN ? `${printable.slice(0, MAX_NAME_SHOWN)}…` : printable;
}

function isCalendarDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]!;
  return d <= days;
}

function isDate(value: string): boolean {
  const m = DATE.exec(value);
  return m !== null && isCalendarDate(Number(m[1]), Number(m[2]), Number(m[3]));
}

function isDateTime(value: string): boolean {
  const m = DATE_TIME.exec(value);
  if (m === null || !isCalendarDate(Number(m[1]), Number(m[2]), Number(m[3]))) return false;
  return Number(m[4]) <= 23 && Number(m[5]) <= 59 && Number(m[6]) <= 59;
}

/**
 * `/{org}/projects/{project}` or `/{org}/shared`; the project one segment, not `.` or `..`, and free of `\`, `?` and
 * `#` (which some servers read as separators even once encoded).
 */
function isProjectPath(value: string, org: string): boolean {
  if (/[\\?#]/.test(value)) return false;
  const parts = value.split('/');
  if (parts[0] !== '' || parts[1] !== org) return false;
  if (parts.length === 3) return parts[2] === 'shared';
  const project = parts[3];
  return parts.length === 4 && parts[2] === 'projects' && project !== undefined && !['', '.', '..'].includes(project);
}

/** What a rule accepts, in words, for a problem's detail. */
function accepted(p: QueryParameter, org: string): string {
  const r = p.rule;
  switch (r.type) {
    case 'one_of':
      return `one of ${r.values.join(', ')} (case-sensitive, one value)`;
    case 'integer':
      return r.max === Number.MAX_SAFE_INTEGER
        ? `a whole number from ${r.min}, in decimal digits`
        : `a whole number from ${r.min} to ${r.max}, in decimal digits`;
    case 'text':
      return `1 to ${MAX_QUERY_VALUE_LENGTH} characters, no control characters${r.spaces ? '' : ' and no whitespace'}`;
    case 'project_path':
      return `/${org}/projects/{project} or /${org}/shared (the org of the path; no \\, ? or # in the project)`;
    case 'date':
      return 'a date as YYYY-MM-DD';
    case 'date_time':
      return 'a date and time as YYYY-MM-DDTHH:MM:SS';
  }
}

/** The value to forward, canonical (integers without leading zeros), or undefined when the rule refuses it. */
function canonical(p: QueryParameter, value: string, org: string): string | undefined {
  if (value.length > MAX_QUERY_VALUE_LENGTH || CONTROL.test(value)) return undefined;
  const r = p.rule;
  switch (r.type) {
    case 'one_of':
      return r.values.includes(value) ? value : undefined;
    case 'integer': {
      const n = DIGITS.test(value) ? Number(value) : NaN;
      return Number.isSafeInteger(n) && n >= r.min && n <= r.max ? String(n) : undefined;
    }
    case 'text':
      return r.spaces || !WHITESPACE.test(value) ? value : undefined;
    case 'project_path':
      return isProjectPath(value, org) ? value : undefined;
    case 'date':
      return isDate(value) ? value : undefined;
    case 'date_time':
      return isDateTime(value) ? value : undefined;
  }
}

/** Rules between parameters: the list's time window, and daily's two spellings of its day. */
function crossCheck(c: RuntimeCall, values: ReadonlyMap<string, string>): QueryProblem | undefined {
  const start = values.get('start');
  const end = values.get('end');
  if (start !== undefined && end !== undefined && Number(start) > Number(end)) {
    return { parameter: 'end', detail: 'end must not be before start (both are Unix times in milliseconds).' };
  }
  if (c.id === 'stats.daily' && values.has('date') && values.has('date_time')) {
    return { parameter: 'date_time', detail: 'Give the day as date (YYYY-MM-DD) or as the older date_time, not both.' };
  }
  return undefined;
}

/**
 * Validates a request's query for a call on `org` (needed for `project_path`, which must stay within that org).
 * Accepts only the call's documented parameters, each at most once, non-empty, within MAX_QUERY_VALUE_LENGTH and
 * free of control characters, each by its rule. Returns the query to forward, rebuilt from the validated values in
 * the table's order and percent-encoded (`%20` for a space), or the first problem, in the caller's order.
 * `searchParams` has already decoded `+` and `%XX` (e.g. `new URL(url).searchParams`).
 */
export function validateQuery(c: RuntimeCall, searchParams: URLSearchParams, org: string): QueryCheck {
  const values = new Map<string, string>();
  for (const [name, value] of searchParams) {
    const p = c.query.find((q) => q.name === name);
    if (p === undefined) {
      const detail =
        c.query.length === 0
          ? `${c.pattern} takes no query parameters.`
          : `Unknown query parameter. ${c.pattern} accepts ${c.query.map((q) => q.name).join(', ')}.`;
      return { ok: false, problem: { parameter: shown(name), detail } };
    }
    if (values.has(name)) {
      return { ok: false, problem: { parameter: name, detail: `${name} is given more than once; give it once.` } };
    }
    if (value === '') {
      return { ok: false, problem: { parameter: name, detail: `${name} is empty; it must be ${accepted(p, org)}.` } };
    }
    const forwarded = canonical(p, value, org);
    if (forwarded === undefined) {
      return { ok: false, problem: { parameter: name, detail: `${name} must be ${accepted(p, org)}.` } };
    }
    values.set(name, forwarded);
  }
  const problem = crossCheck(c, values);
  if (problem !== undefined) return { ok: false, problem };
  const query = c.query
    .filter((q) => values.has(q.name))
    .map((q) => `${q.name}=${encodeURIComponent(values.get(q.name)!)}`)
    .join('&');
  return { ok: true, query };
}

// ---------------------------------------------------------------------------------------------------------------
// Kinds of action

const readActions: ReadonlySet<RuntimeAction> = new Set(
  Object.values(runtimeCalls)
    .filter((c) => c.kind === 'read')
    .map((c) => c.action),
);

/** True for the actions that only read (status, list, stats): their own limits, their own audit mode. */
export function isReadAction(action: RuntimeAction): boolean {
  return readActions.has(action);
}
