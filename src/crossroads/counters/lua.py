"""The Lua scripts behind `RedisState`: each check-and-update is one script, so one round trip.

Redis runs a script to completion before any other command, which is what makes a check and
its write atomic across replicas. Conventions shared by every script:

- Time is the server's (`TIME`) in integer microseconds, so replicas with skewed clocks
  agree, and a script needs no clock argument.
- Numbers go back to Redis through `fmt` (`%.0f`): Lua would otherwise print a number with
  14 significant digits, and a microsecond timestamp has 16.
- Replies are arrays of integers (Redis truncates Lua numbers to integers), times in µs.
- Members of a zset or hash are caller-made tokens (hex), so they never collide with the
  fixed field names `~sum`, `spent` and `reserved`.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "ADJUST",
    "BUDGET_USAGE",
    "CANCEL",
    "HIT",
    "RESERVE",
    "RESTORE_SPENT",
    "SETTLE",
]

_PRELUDE = """
local function fmt(x) return string.format('%.0f', x) end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- Remove the members of zset z scored at most `upto`, and their fields from hash h;
-- returns the sum of those fields. In batches, since unpack() has a stack limit.
local function drop_until(z, h, upto)
  local total = 0
  while true do
    local batch = redis.call('ZRANGEBYSCORE', z, '-inf', fmt(upto), 'LIMIT', 0, 500)
    if #batch == 0 then return total end
    local values = redis.call('HMGET', h, unpack(batch))
    for i = 1, #batch do total = total + (tonumber(values[i]) or 0) end
    redis.call('HDEL', h, unpack(batch))
    redis.call('ZREM', z, unpack(batch))
  end
end
"""

# Sliding window. KEYS: zset token -> time (µs), hash token -> cost plus `~sum` (the total).
# ARGV: limit, cost, window (µs), token.
# Reply: {admitted, used, reset (µs), retry after (µs; -1: never)}.
HIT = (
    _PRELUDE
    + """
local z, h = KEYS[1], KEYS[2]
local limit, cost, window, token = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_us()
local cutoff = now - window
local freed = drop_until(z, h, cutoff)
if freed ~= 0 then redis.call('HINCRBY', h, '~sum', fmt(-freed)) end
local used = tonumber(redis.call('HGET', h, '~sum') or '0')
if used + cost <= limit then
  redis.call('ZADD', z, fmt(now), token)
  redis.call('HSET', h, token, fmt(cost))
  redis.call('HINCRBY', h, '~sum', fmt(cost))
  local ttl_ms = fmt(math.ceil(window / 1000) + 1)
  redis.call('PEXPIRE', z, ttl_ms)
  redis.call('PEXPIRE', h, ttl_ms)
  return {1, used + cost, window, 0}
end
local retry = -1
if cost <= limit then
  -- Walk the window oldest first until enough cost has left it for this one to fit.
  local need, released, offset = used + cost - limit, 0, 0
  while retry < 0 do
    local batch = redis.call('ZRANGEBYSCORE', z, '(' .. fmt(cutoff), '+inf',
                             'WITHSCORES', 'LIMIT', offset, 500)
    if #batch == 0 then retry = window break end
    local tokens = {}
    for i = 1, #batch, 2 do tokens[#tokens + 1] = batch[i] end
    local costs = redis.call('HMGET', h, unpack(tokens))
    for i = 1, #tokens do
      released = released + (tonumber(costs[i]) or 0)
      if released >= need then
        retry = tonumber(batch[2 * i]) + window - now
        break
      end
    end
    offset = offset + 500
  end
end
local reset = 0
local newest = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
if #newest > 0 then reset = tonumber(newest[2]) + window - now end
return {0, used, reset, retry}
"""
)

# KEYS: as HIT. ARGV: token, cost. Reply: 1 when the hit was still in the window, else 0.
ADJUST = """
local h, token, cost = KEYS[2], ARGV[1], tonumber(ARGV[2])
local old = redis.call('HGET', h, token)
if not old then return 0 end
redis.call('HSET', h, token, ARGV[2])
redis.call('HINCRBY', h, '~sum', string.format('%.0f', cost - tonumber(old)))
return 1
"""

# Leases. KEYS: zset token -> expiry (µs). ARGV: limit, lease (µs), token.
# Reply: {admitted, held, µs until the earliest lease expires (0: none held)}.
ACQUIRE = (
    _PRELUDE
    + """
local z = KEYS[1]
local limit, lease, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_us()
redis.call('ZREMRANGEBYSCORE', z, '-inf', fmt(now))
local held = redis.call('ZCARD', z)
local admitted = 0
if held < limit then
  redis.call('ZADD', z, fmt(now + lease), token)
  held = held + 1
  admitted = 1
  local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', z, fmt(math.ceil(tonumber(last[2]) / 1000)))
end
local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
local reset = 0
if #first > 0 then reset = tonumber(first[2]) - now end
return {admitted, held, reset}
"""
)

# Budgets. KEYS: hash with `spent`, `reserved` and token -> amount; zset token -> expiry (µs).
# Every script that writes ends by setting the period's expiry (ARGV `expire_at`, epoch ms;
# 0 for a budget that never resets) on both keys.
_BUDGET = (
    _PRELUDE
    + """
local h, z = KEYS[1], KEYS[2]
local function expire(at_ms)
  if at_ms > 0 then
    redis.call('PEXPIREAT', h, fmt(at_ms))
    redis.call('PEXPIREAT', z, fmt(at_ms))
  end
end
local function live(now)
  local expired = drop_until(z, h, now)
  if expired ~= 0 then redis.call('HINCRBY', h, 'reserved', fmt(-expired)) end
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  return tonumber(v[1] or '0'), tonumber(v[2] or '0')
end
local function forget(token)
  local amount = redis.call('HGET', h, token)
  if not amount then return 0 end
  redis.call('HDEL', h, token)
  redis.call('ZREM', z, token)
  redis.call('HINCRBY', h, 'reserved', fmt(-tonumber(amount)))
  return 1
end
"""
)

# ARGV: amount, limit, ttl (µs), token, expire_at. Reply: {admitted, spent, reserved}.
RESERVE = (
    _BUDGET
    + """
local amount, limit, ttl, token = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_us()
local spent, reserved = live(now)
if spent + reserved + amount > limit then return {0, spent, reserved} end
redis.call('HSET', h, token, fmt(amount))
redis.call('HINCRBY', h, 'reserved', fmt(amount))
redis.call('ZADD', z, fmt(now + ttl), token)
expire(tonumber(ARGV[5]))
return {1, spent, reserved + amount}
"""
)

# ARGV: token, actual, expire_at. Reply: {spent, reserved}.
SETTLE = (
    _BUDGET
    + """
forget(ARGV[1])
redis.call('HINCRBY', h, 'spent', ARGV[2])
expire(tonumber(ARGV[3]))
return {live(now_us())}
"""
)

# ARGV: token. Reply: 1 when the reservation was still held, else 0.
CANCEL = (
    _BUDGET
    + """
return forget(ARGV[1])
"""
)

# ARGV: none. Reply: {spent, reserved}.
BUDGET_USAGE = (
    _BUDGET
    + """
return {live(now_us())}
"""
)

# ARGV: at_least, expire_at. Reply: {spent, reserved}.
RESTORE_SPENT = (
    _BUDGET
    + """
local spent, reserved = live(now_us())
if tonumber(ARGV[1]) > spent then
  redis.call('HSET', h, 'spent', ARGV[1])
  spent = tonumber(ARGV[1])
  expire(tonumber(ARGV[2]))
end
return {spent, reserved}
"""
)
