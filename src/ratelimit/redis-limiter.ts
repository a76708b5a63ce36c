// The shared limiter: every policy of a request checked and consumed by one Lua script, on Redis's clock, in one
// round trip.
import { Cluster, type Redis, type Result } from 'ioredis';
import { batchWritesThisTurn, RedisDeadlineError, withDeadline, type RedisClient } from '../redis/client.js';
import {
  keyFor,
  policiesOf,
  type LimitDecision,
  type LimitPolicy,
  type LimitRequest,
  type PolicyOutcome,
  type RateLimiter,
} from './limits.js';

/**
 * KEYS[i]  one key per policy; all carry the same {org:…} hash tag (one Cluster slot)
 * ARGV[1]  lease id (snapgate's own, per call): the member of a concurrency lease
 * ARGV[2]  n, the number of policies
 * then per policy i, four values at ARGV[2 + 4(i-1) + 1 .. 4]:
 *   kind    'r' (GCRA rate) or 'c' (concurrency)
 *   shadow  '1' to evaluate and report without blocking
 *   a       r: emission interval T in µs      c: most leases at once
 *   b       r: burst tolerance τ in µs        c: lease lifetime in ms
 * Returns { admitted (0|1), then per policy: allowed (0|1), remaining, reset_ms, retry_ms }.
 * Nothing is written unless every enforced policy admits (all-or-nothing); a shadow policy that
 * would refuse is reported and left untouched.
 */
export const LIMIT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local n = tonumber(ARGV[2])
local out = {1}
local writes = {}
local admitted = 1
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local shadow = ARGV[base + 2] == '1'
  local a = tonumber(ARGV[base + 3])
  local b = tonumber(ARGV[base + 4])
  local ok, remaining, reset_ms, retry_ms = 1, 0, 0, 0
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    if tat - now > b then
      ok = 0
      reset_ms = math.ceil((tat - now) / 1000)
      retry_ms = math.ceil((tat - b - now) / 1000)
    else
      local new_tat = tat + a
      remaining = math.floor((b - (new_tat - now)) / a + 1e-9) + 1
      if remaining < 0 then remaining = 0 end
      reset_ms = math.ceil((new_tat - now) / 1000)
      writes[#writes + 1] = {'r', KEYS[i], new_tat, reset_ms}
    end
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local count = redis.call('ZCARD', KEYS[i])
    if count >= a then
      ok = 0
      retry_ms = 1000
    else
      remaining = a - count - 1
      writes[#writes + 1] = {'c', KEYS[i], now + b * 1000, b}
    end
  end
  if ok == 0 and not shadow then admitted = 0 end
  out[#out + 1] = ok
  out[#out + 1] = remaining
  out[#out + 1] = reset_ms
  out[#out + 1] = retry_ms
end
out[1] = admitted
if admitted == 1 then
  for _, w in ipairs(writes) do
    if w[1] == 'r' then
      redis.call('SET', w[2], string.format('%.0f', w[3]), 'PX', math.max(1, w[4]))
    else
      redis.call('ZADD', w[2], string.format('%.0f', w[3]), member)
      redis.call('PEXPIRE', w[2], w[4])
    end
  end
end
return out
`;

/**
 * Gives back what a decision took: the lease, and one emission interval of each rate key.
 * KEYS[i]  the policy keys of the decision (same {org:…} hash tag)
 * ARGV[1]  the lease id
 * ARGV[2]  '1': only if the lease is still held (a late script's answer was never read: if the
 *          lease is there, that script admitted the call); '0': unconditionally
 * ARGV[3]  n, then per policy i at ARGV[3 + 2(i-1) + 1 .. 2]: kind ('r' | 'c'), r: interval T in µs
 * A rate key whose TAT falls to now or below is deleted (a full bucket). Returns 1 if anything was given back.
 */
export const REFUND_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local if_leased = ARGV[2] == '1'
local n = tonumber(ARGV[3])
local leased = 0
for i = 1, n do
  if ARGV[3 + (i - 1) * 2 + 1] == 'c' then
    leased = leased + redis.call('ZREM', KEYS[i], member)
  end
end
if if_leased and leased == 0 then return 0 end
for i = 1, n do
  local base = 3 + (i - 1) * 2
  if ARGV[base + 1] == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local new_tat = tat - tonumber(ARGV[base + 2])
    if new_tat <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
    end
  end
end
return 1
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    snapgateLimit(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number[], Context>;
    snapgateRefund(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>;
  }
}

/** Registers the scripts on a client; EVALSHA with an EVAL fallback on NOSCRIPT is ioredis's job. */
export function defineLimitCommand(client: RedisClient): void {
  if (typeof (client as Redis).snapgateLimit !== 'function') {
    client.defineCommand('snapgateLimit', { lua: LIMIT_SCRIPT });
    client.defineCommand('snapgateRefund', { lua: REFUND_SCRIPT });
  }
}

/**
 * Connects to every master and loads both scripts there, so the first decisions neither open
 * connections (ioredis Cluster connects to nodes lazily) nor pay the NOSCRIPT → EVAL fallback.
 */
export async function warmUpLimiter(client: RedisClient, deadlineMs: number): Promise<void> {
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  await Promise.all(
    nodes.flatMap((node) =>
      [LIMIT_SCRIPT, REFUND_SCRIPT].map((lua) => withDeadline(node.script('LOAD', lua), deadlineMs)),
    ),
  );
}

/**
 * Sends the refund script for `policies` (all, or those a decision took). Errors are ignored: a lease
 * still expires.
 */
function sendRefund(
  client: RedisClient,
  keys: readonly string[],
  policies: readonly LimitPolicy[],
  leaseId: string,
  ifLeased: boolean,
): Promise<void> {
  const args: (string | number)[] = [leaseId, ifLeased ? '1' : '0', policies.length];
  for (const p of policies) args.push(p.kind === 'rate' ? 'r' : 'c', p.kind === 'rate' ? p.intervalUs : 0);
  return (client as Redis).snapgateRefund(keys.length, ...keys, ...args).then(
    () => undefined,
    () => undefined,
  );
}

/**
 * A script whose answer missed its deadline: the call was decided without it (the fallback), but
 * the script may still run once Redis answers. `settle` says what became of the call; what the
 * script took is then given back accordingly. The lease always goes (the call has ended); the rate
 * quota goes only for a call that was not forwarded: a forwarded call counts once in Redis, like
 * any other, so instances sharing Redis stay exact across a slow answer.
 */
export class LateScript {
  private answer: number[] | undefined;
  private settled: 'release' | 'refund' | undefined;

  constructor(
    private readonly client: RedisClient,
    private readonly command: Promise<number[]>,
    private readonly keys: readonly string[],
    private readonly policies: readonly LimitPolicy[],
    private readonly leaseId: string,
  ) {
    command.then(
      (late) => {
        this.answer = late;
        this.act();
      },
      () => undefined,
    );
  }

  /** Called once, when the call ends: `forwarded` or not. */
  settle(forwarded: boolean): void {
    if (this.settled !== undefined) return;
    this.settled = forwarded ? 'release' : 'refund';
    const conc = this.policies.filter((p) => p.kind === 'concurrency');
    if (conc.length > 0) {
      // Queued behind the script on the same connection: runs right after it, whether or not its
      // answer is ever read. The lease shows whether the script admitted the call.
      const taken = forwarded ? conc : this.policies;
      void sendRefund(
        this.client,
        taken.map((p) => this.keys[this.policies.indexOf(p)]!),
        taken,
        this.leaseId,
        true,
      );
      return;
    }
    this.act();
  }

  /** Without a lease policy: refund what the answer says it took, once both the answer and the call's end are known. */
  private act(): void {
    if (this.settled !== 'refund' || this.answer === undefined || this.policies.some((p) => p.kind === 'concurrency')) {
      return;
    }
    const late = this.answer;
    this.answer = undefined;
    if (late[0] !== 1) return;
    const taken = this.policies.filter((_, i) => late[1 + i * 4] === 1);
    void sendRefund(
      this.client,
      taken.map((p) => this.keys[this.policies.indexOf(p)]!),
      taken,
      this.leaseId,
      false,
    );
  }
}

/** The limiter's answer did not come within its deadline; `late` settles what the script may still take. */
export class LimitDeadlineError extends RedisDeadlineError {
  constructor(
    ms: number,
    readonly late: LateScript,
  ) {
    super(ms);
  }
}

/**
 * A limiter whose state lives in Redis, shared by every snapgate instance. Throws on any Redis
 * error, and LimitDeadlineError (a RedisDeadlineError) when no answer comes within `deadlineMs`:
 * whoever decides the call instead settles its LateScript when the call ends.
 */
export function createRedisLimiter(client: RedisClient, deadlineMs = 1_000): RateLimiter {
  defineLimitCommand(client);
  return {
    async check({ limits, caller, leaseId }: LimitRequest): Promise<LimitDecision> {
      const policies = policiesOf(limits);
      const keys = policies.map((p) => keyFor(limits.org, p, caller, limits.group));
      const args: (string | number)[] = [leaseId, policies.length];
      for (const p of policies) {
        if (p.kind === 'rate') args.push('r', p.shadow ? '1' : '0', p.intervalUs, p.toleranceUs);
        else args.push('c', p.shadow ? '1' : '0', p.limit, p.leaseMs);
      }
      batchWritesThisTurn(client);
      const command = (client as Redis).snapgateLimit(keys.length, ...keys, ...args);
      let raw: number[];
      try {
        raw = await withDeadline(command, deadlineMs);
      } catch (err) {
        if (err instanceof RedisDeadlineError) {
          throw new LimitDeadlineError(deadlineMs, new LateScript(client, command, keys, policies, leaseId));
        }
        throw err;
      }
      const outcomes: PolicyOutcome[] = policies.map((policy, i) => ({
        policy,
        allowed: raw[1 + i * 4] === 1,
        remaining: Number(raw[2 + i * 4]),
        resetMs: Number(raw[3 + i * 4]),
        retryMs: Number(raw[4 + i * 4]),
      }));
      const admitted = raw[0] === 1;
      const concIndex = policies.findIndex((p) => p.kind === 'concurrency');
      let leased = admitted && concIndex >= 0 && outcomes[concIndex]?.allowed === true;
      let refundable = admitted;
      return {
        allowed: admitted,
        outcomes,
        release: async () => {
          if (!leased) return;
          leased = false;
          await (client as Redis).zrem(keys[concIndex]!, leaseId).catch(() => undefined);
        },
        refund: async () => {
          if (!refundable) return;
          refundable = false;
          leased = false;
          const taken = outcomes.filter((o) => o.allowed);
          await sendRefund(
            client,
            taken.map((o) => keys[policies.indexOf(o.policy)]!),
            taken.map((o) => o.policy),
            leaseId,
            false,
          );
        },
      };
    },
  };
}
