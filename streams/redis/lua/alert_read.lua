-- Read the alerter's per-customer records and churn marks of one batch in one call.
-- KEYS[1..n]  <prefix>:{c:<id>}:alert   (hash: r = record JSON, v = version) of the customers
--             whose record the caller does not hold already
-- KEYS[n+1]   <prefix>:churned          (hash: customer id -> churn time)
-- ARGV[1]     MessagePack array of customer ids: the n of KEYS first, then those whose churn
--             mark only is read
-- Returns {r1, v1, ..., rn, vn, c1, ..., cm} (false where absent).
local n = #KEYS - 1
local out = {}
for i = 1, n do
  local rv = redis.call('HMGET', KEYS[i], 'r', 'v')
  out[2 * i - 1] = rv[1]
  out[2 * i] = rv[2]
end
local ids = cmsgpack.unpack(ARGV[1])
local m = #ids
for lo = 1, m, 1000 do  -- unpack() of more than ~8,000 values overflows Lua's stack
  local hi = math.min(lo + 999, m)
  local marks = redis.call('HMGET', KEYS[n + 1], unpack(ids, lo, hi))
  for i = lo, hi do
    out[2 * n + i] = marks[i - lo + 1]
  end
end
return out
