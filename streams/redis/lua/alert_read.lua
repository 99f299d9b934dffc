-- Read the alerter's per-customer records and churn marks of one batch in one call.
-- KEYS[1..n]  <prefix>:{c:<id>}:alert   (hash: r = record JSON, v = version)
-- KEYS[n+1]   <prefix>:churned          (hash: customer id -> churn time)
-- ARGV[1..n]  the customer ids
-- Returns {r1, v1, r2, v2, ..., c1, ..., cn} (false where absent).
local n = #ARGV
local out = {}
for i = 1, n do
  local rv = redis.call('HMGET', KEYS[i], 'r', 'v')
  out[2 * i - 1] = rv[1]
  out[2 * i] = rv[2]
end
local marks = redis.call('HMGET', KEYS[n + 1], unpack(ARGV))
for i = 1, n do
  out[2 * n + i] = marks[i]
end
return out
