// The run guard of writes (start, stop), after the rate limits and before the forward: the Idempotency-Key record
// (replay, in flight, mismatch, a retry after an unknown outcome) and the run lock (one resume or stop of a run at a
// time across instances). Reads pass straight through.
import type { Context, MiddlewareHandler } from 'hono';
import type { OnRedisError } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import { signalOf } from '../http/call.js';
import { requestHeader } from '../http/incoming.js';
import { addResponseHeaders, respond } from '../http/respond.js';
import { RedisUnavailableError } from '../redis/unavailable.js';
import { isReadAction, type RunState } from '../snaplogic/runtime-api.js';
import type { RequestTarget } from '../snaplogic/target.js';
import type { RunStateReader } from '../upstream/run-state.js';
import type { IdempotencyToken, ModalIdempotencyStore, StoredAnswer } from './idempotency.js';
import {
  idempotencyKeyProblems,
  idempotencyScope,
  parseIdempotencyKey,
  requestFingerprint,
} from './idempotency-key.js';
import type { LockDecider, ModalRunLock } from './run-lock.js';
import { RecentRuns } from './recent-runs.js';

/** What the guard needs of each org. */
export interface RunGuardOrg {
  /** What the lock and the key records do while Redis is unavailable. */
  readonly onRedisError: OnRedisError;
  /** Refuse writes without an Idempotency-Key (400). */
  readonly requireIdempotencyKey: boolean;
  /** The longest one call to SnapLogic can take, its wait for a connection included: the lease is bounded by it. */
  readonly callMs: number;
  /** The longest the audit attempt before the call can wait for its acknowledgement. */
  readonly attemptMs: number;
}

export interface RunGuardDeps {
  lock: ModalRunLock;
  idempotency: ModalIdempotencyStore;
  readState: RunStateReader;
  orgs: ReadonlyMap<string, RunGuardOrg>;
  /** True when the lock and the records are shared through Redis; the degraded headers say when they were not. */
  shared: boolean;
  /** How long a run stays closed to resumes after SnapLogic accepted one (runLock.holdAfterResume). */
  holdAfterResumeMs: number;
}

/** Marks a response that is a stored answer, not a new call to SnapLogic (as Stripe's API does). */
export const REPLAYED_HEADER = 'idempotent-replayed';
/** Set to `local` when this instance's in-process lock decided, because Redis was unavailable. */
export const RUN_LOCK_DEGRADED_HEADER = 'x-snapgate-run-lock-degraded';
/** Set to `local` when the Idempotency-Key record lives in this instance only, because Redis was unavailable. */
export const IDEMPOTENCY_DEGRADED_HEADER = 'x-snapgate-idempotency-degraded';
/** On a replay whose body was over the stored cap: its size; the body itself is not replayed. */
export const REPLAY_BODY_OMITTED_HEADER = 'x-snapgate-replay-body-omitted';

/** Slack on a lease beyond the steps it covers, for the event loop and Redis between them. */
const LEASE_MARGIN_MS = 2_000;

/**
 * How long the lock (and a key record) is held at most: the audit attempt, then the call, twice over for a retry after
 * an unknown outcome (the state read first), plus the margin. Whatever happens, the holder is done by then.
 */
function leaseMs(org: RunGuardOrg, retry: boolean): number {
  return org.attemptMs + (retry ? 2 : 1) * org.callMs + LEASE_MARGIN_MS;
}

/**
 * What SnapLogic made of a write, once the call is over. `not_acted`: it cannot have acted (never sent, or it refused
 * the credentials or the rate: 401, 403, 429). `unknown`: sent, and no definite answer came back (no answer, a 5xx or
 * 408: the caller hung up, the call timed out or broke). `answered`: an answer it acted on or refused.
 */
type WriteOutcome =
  | { readonly kind: 'not_acted' }
  | { readonly kind: 'unknown' }
  | { readonly kind: 'answered'; readonly answer: NonNullable<AppEnv['Variables']['answer']> };

function outcomeOf(c: Context<AppEnv>): WriteOutcome {
  if (c.get('forwarded') !== true) return { kind: 'not_acted' };
  const answer = c.get('answer');
  const status = answer?.status ?? c.get('call').upstreamStatus;
  if (status === 401 || status === 403 || status === 429) return { kind: 'not_acted' };
  if (answer === undefined || answer.status >= 500 || answer.status === 408) return { kind: 'unknown' };
  return { kind: 'answered', answer };
}

/**
 * Whether SnapLogic may have resumed the run: it accepted the call (2xx), or the outcome is unknown. A resume of the
 * run right after such a call is most likely a duplicate: the run stays closed to resumes for the hold.
 */
function mayHaveResumed(outcome: WriteOutcome): boolean {
  if (outcome.kind !== 'answered') return outcome.kind === 'unknown';
  return outcome.answer.status >= 200 && outcome.answer.status < 300;
}

/** After an unknown outcome, whether the run's state lets this write go ahead. */
function mayProceed(action: RequestTarget['action'], state: RunState): boolean {
  if (action === 'runtime.start') return state === 'Suspended';
  return !['Stopping', 'Stopped', 'Completed', 'Failed'].includes(state);
}

const retryAfter = (ms: number): Record<string, string> => ({
  'retry-after': String(Math.max(1, Math.ceil(ms / 1000))),
});

function unavailable(err: RedisUnavailableError): GatewayError {
  return new GatewayError(
    'coordination_unavailable',
    'snapgate cannot make sure this run is resumed or stopped only once right now (Redis is unavailable and this ' +
      'org is configured to refuse writes until it is back). Nothing was forwarded; retry after the Retry-After delay.',
    { cause: err, headers: retryAfter(err.retryAfterMs) },
  );
}

/** The 400 for a missing or malformed key, saying what to send. */
function keyProblem(problem: keyof typeof idempotencyKeyProblems): GatewayError {
  const example = 'e.g. Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324" (a quoted string, new per operation)';
  return problem === 'missing'
    ? new GatewayError(
        'idempotency_key_missing',
        `This org requires an Idempotency-Key on resume and stop calls; send one, ${example}. Nothing was forwarded.`,
      )
    : new GatewayError(
        'idempotency_key_invalid',
        `${idempotencyKeyProblems[problem]}; send one, ${example}. Nothing was forwarded.`,
      );
}

/** The stored answer, as a response: status, stored headers and body, marked as a replay. */
function replay(c: Context<AppEnv>, answer: StoredAnswer): Response {
  const headers: Record<string, string> = { ...answer.headers, [REPLAYED_HEADER]: 'true' };
  if (!answer.body.stored) headers[REPLAY_BODY_OMITTED_HEADER] = String(answer.body.size);
  const body = answer.body.stored && answer.body.bytes.byteLength > 0 ? answer.body.bytes : null;
  return respond(c, [204, 205, 304].includes(answer.status) ? null : body, { status: answer.status, headers });
}

/** How a key record ends once the call is over: stored answer, unknown outcome, or free again. */
async function settleKey(deps: RunGuardDeps, token: IdempotencyToken, outcome: WriteOutcome): Promise<void> {
  if (outcome.kind === 'not_acted') {
    await deps.idempotency.abandon(token);
  } else if (outcome.kind === 'unknown') {
    await deps.idempotency.unknown(token);
  } else {
    const { answer } = outcome;
    await deps.idempotency.complete(token, {
      status: answer.status,
      headers: Object.entries(answer.headers).filter((e): e is [string, string] => typeof e[1] === 'string'),
      body: answer.body,
    });
  }
}

function degradedHeaders(c: Context<AppEnv>, deps: RunGuardDeps, name: string, by: LockDecider): void {
  if (deps.shared && by === 'local') addResponseHeaders(c, { [name]: 'local' });
}

/**
 * For writes: parses the Idempotency-Key (400 when malformed, or missing where the org requires one), takes its
 * record (a replay answers at once; 409 while it is in flight, 422 when it was used for another action or run),
 * takes the run lock (409 run_busy with Retry-After), and after an unknown outcome reads the run's state first
 * (409 run_state_conflict with the state when the write must not be repeated). The lock and the record are
 * settled on every outcome, a caller hang-up included; a crashed instance's end with their lease.
 */
export function runGuard(deps: RunGuardDeps): MiddlewareHandler<AppEnv> {
  const recent = new RecentRuns();
  return async function runGuardMiddleware(c, next) {
    const target = c.get('target');
    const principal = c.get('principal');
    if (target === undefined || principal === undefined) throw new Error('the run guard runs after authorization');
    if (isReadAction(target.action)) return next();
    const org = deps.orgs.get(target.org);
    if (org === undefined || target.ruuid === undefined) throw new Error(`run guard: ${target.org} not configured`);
    const ruuid = target.ruuid;

    const header = requestHeader(c, 'idempotency-key');
    let token: IdempotencyToken | undefined;
    let retry = false;
    if (header !== undefined || org.requireIdempotencyKey) {
      // A key's record is taken once the limits have passed: a call over them gets its 429, never a stored answer.
      await c.get('admission')?.passed();
      const parsed = parseIdempotencyKey(header);
      // A header sent empty is a malformed key, not a missing one.
      if (!parsed.ok) throw keyProblem(parsed.problem === 'missing' && header !== undefined ? 'empty' : parsed.problem);
      const scope = idempotencyScope({ issuer: principal.iss, subject: principal.sub }, parsed.key);
      const fingerprint = requestFingerprint({ action: target.action, org: target.org, ruuid });
      let begun;
      try {
        begun = await deps.idempotency.begin(scope, fingerprint, leaseMs(org, true), org.onRedisError);
      } catch (err) {
        if (err instanceof RedisUnavailableError) throw unavailable(err);
        throw err;
      }
      degradedHeaders(c, deps, IDEMPOTENCY_DEGRADED_HEADER, begun.by);
      switch (begun.kind) {
        case 'replay':
          c.get('call').idempotency = 'replayed';
          return replay(c, begun.answer);
        case 'in_flight':
          throw new GatewayError(
            'idempotency_key_in_use',
            'A call with this Idempotency-Key is still in flight. Nothing was forwarded; retry after the Retry-After ' +
              'delay to get its answer.',
            { headers: retryAfter(begun.retryAfterMs) },
          );
        case 'mismatch':
          throw new GatewayError(
            'idempotency_key_mismatch',
            'This Idempotency-Key was first used for another action or run. Nothing was forwarded; use a new key ' +
              'for each operation.',
          );
        case 'new':
          token = begun.token;
          c.get('call').idempotency = 'new';
          break;
        case 'unknown_outcome':
          token = begun.token;
          retry = true;
          c.get('call').idempotency = 'retry';
          break;
      }
    }

    // The record is settled before the lock is released, so no other call slips in between the two.
    let settled = token === undefined;
    const settle = async (): Promise<void> => {
      if (settled || token === undefined) return;
      settled = true;
      await settleKey(deps, token, outcomeOf(c));
    };
    try {
      await guarded(c, deps, org, { target, ruuid, retry, settle, recent }, next);
    } finally {
      await settle();
    }
  };
}

/** Under the run lock: the state check of a retry, then the rest of the chain (limits, forward). */
async function guarded(
  c: Context<AppEnv>,
  deps: RunGuardDeps,
  org: RunGuardOrg,
  run: { target: RequestTarget; ruuid: string; retry: boolean; settle: () => Promise<void>; recent: RecentRuns },
  next: () => Promise<void>,
): Promise<void> {
  const { target, ruuid, retry } = run;
  const lease = leaseMs(org, retry);
  // A stop, and a retry that reads the run's state before it forwards, may pass a hold left by a recent resume;
  // only a plain resume is held back by it.
  const purpose = target.action === 'runtime.start' && !retry ? 'start' : 'stop';
  const admission = c.get('admission');
  // With the limits still being decided, the lock is sent beside them, unless this instance locked the run moments
  // ago (then it is likely busy: the limits are decided first and a refusal stays a decision, as on the 429 path).
  const runKey = RecentRuns.keyOf(target.org, ruuid);
  const ahead = admission !== undefined && !retry && run.recent.quiet(runKey);
  if (!ahead) await admission?.passed();
  run.recent.note(runKey, lease);
  const acquiring = deps.lock.acquire(target.org, ruuid, lease, org.onRedisError, purpose).then(
    (lock) => {
      degradedHeaders(c, deps, RUN_LOCK_DEGRADED_HEADER, lock.by);
      if (!lock.ok) {
        run.recent.note(runKey, lock.retryAfterMs);
        throw runBusy(lock.retryAfterMs);
      }
      return lock;
    },
    (err: unknown) => {
      throw err instanceof RedisUnavailableError ? unavailable(err) : err;
    },
  );
  if (ahead) admission.add(acquiring);
  else await acquiring;
  try {
    if (retry) {
      const signal = signalOf(c);
      // The read reaches SnapLogic: the call keeps the rate quota it was counted against, even when refused.
      c.set('stateRead', true);
      const state = await deps.readState(target, {
        requestId: c.get('requestId'),
        signal,
        principal: c.get('principal'),
      });
      c.get('call').runState = state;
      if (!mayProceed(target.action, state)) {
        throw new GatewayError(
          'run_state_conflict',
          `An earlier call with this Idempotency-Key had an unknown outcome, and the run is now ${state}, so this ` +
            `${target.action === 'runtime.start' ? 'resume' : 'stop'} was not forwarded again. Read the run's ` +
            'status for what happened.',
          { extensions: { state } },
        );
      }
    }
    await next();
  } finally {
    await run.settle();
    const held = target.action === 'runtime.start' && mayHaveResumed(outcomeOf(c));
    // Not waited for: the answer does not wait on Redis once more. The record was settled first, so a retry with the
    // same key already gets the stored answer; the release (or the hold) is sent on the same connection at once.
    // A lock sent beside limits that refused is freed the same way.
    const lock = await acquiring.catch(() => undefined);
    // Only a holder tells what follows; a refused or failed acquire leaves what it noted (the lock is likely taken).
    if (lock !== undefined) {
      run.recent.note(runKey, held ? deps.holdAfterResumeMs : 0);
      void lock.release(held ? deps.holdAfterResumeMs : 0);
    }
  }
}

function runBusy(retryAfterMs: number): GatewayError {
  return new GatewayError(
    'run_busy',
    'Another resume or stop of this run is in flight, or one was sent to SnapLogic moments ago. Nothing ' +
      "was forwarded; read the run's state, and retry after the Retry-After delay if it still needs this call.",
    { headers: retryAfter(retryAfterMs) },
  );
}
