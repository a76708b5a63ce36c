// The shared limiter: every policy of a request checked and consumed by one Lua script, on Redis's clock, in one round trip.
import { Cluster, type Redis, type Result } from 'ioredis';
import { batchWritesThisTurn, withDeadline, type RedisClient } from '../redis/client.js';
import { keyFor, policiesOf, type LimitDecision, type LimitRequest, type PolicyOutcome, type RateLimiter } from './policy.js';

/**
 * KEYS[i]  one key per policy; all carry the same {org:…} hash tag (one Cluster slot)
 * ARGV[1]  request id: the member of a concurrency lease
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

declare module 'ioredis' {
  interface RedisCommander<Context> {
    snapgateLimit(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number[], Context>;
  }
}

/** Registers the script on a client; EVALSHA with an EVAL fallback on NOSCRIPT is ioredis's job. */
export function defineLimitCommand(client: RedisClient): void {
  if (typeof (client as Redis).snapgateLimit !== 'function') {
    client.defineCommand('snapgateLimit', { lua: LIMIT_SCRIPT });
  }
}

/**
 * Connects to every master and loads the script there, so the first decisions neither open
 * connections (ioredis Cluster connects to nodes lazily) nor pay the NOSCRIPT → EVAL fallback.
 */
export async function warmUpLimiter(client: RedisClient, deadlineMs: number): Promise<void> {
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  await Promise.all(nodes.map((node) => withDeadline(node.script('LOAD', LIMIT_SCRIPT), deadlineMs)));
}

/**
 * A limiter whose state lives in Redis, shared by every snapgate instance. Throws on any Redis
 * error, and RedisDeadlineError when no answer comes within `deadlineMs`.
 */
export function createRedisLimiter(client: RedisClient, deadlineMs = 1_000): RateLimiter {
  defineLimitCommand(client);
  return {
    async check({ limits, caller, requestId }: LimitRequest): Promise<LimitDecision> {
      const policies = policiesOf(limits);
      const keys = policies.map((p) => keyFor(limits.org, p, caller));
      const args: (string | number)[] = [requestId, policies.length];
      for (const p of policies) {
        if (p.kind === 'rate') args.push('r', p.shadow ? '1' : '0', p.intervalUs, p.toleranceUs);
        else args.push('c', p.shadow ? '1' : '0', p.limit, p.leaseMs);
      }
      batchWritesThisTurn(client);
      const raw = await withDeadline((client as Redis).snapgateLimit(keys.length, ...keys, ...args), deadlineMs);
      const outcomes: PolicyOutcome[] = policies.map((policy, i) => ({
        policy,
        allowed: raw[1 + i * 4] === 1,
        remaining: Number(raw[2 + i * 4]),
        resetMs: Number(raw[3 + i * 4]),
        retryMs: Number(raw[4 + i * 4]),
      }));
      const admitted = raw[0] === 1;
      const concIndex = policies.findIndex((p) => p.kind === 'concurrency');
      const leased = admitted && concIndex >= 0 && outcomes[concIndex]?.allowed === true;
      return {
        allowed: admitted,
        outcomes,
        release: async () => {
          if (!leased) return;
          await (client as Redis).zrem(keys[concIndex]!, requestId).catch(() => undefined);
        },
      };
    },
  };
}
