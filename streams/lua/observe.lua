-- The worker's observation step for one batch of scored customers (streams.observation_store).
--
-- KEYS[1]: <prefix>:churned       hash customer id -> churn time (seconds, text)
-- KEYS[2]: <prefix>:obs:due       sorted set "<id>|<slot>" -> time it resolves negative
-- KEYS[2 + i]: <prefix>:{c:<id>}:obs, the pending snapshots of the i-th customer
-- ARGV[1]: TTL of a snapshot hash (seconds), set when a snapshot is added
-- ARGV[2 + 5 (i - 1) ...]: per customer: id, newest event time, slot ('' = churn check only),
--          resolve-negative time, snapshot JSON
-- Returns one code per customer: 0 churned (churn time >= newest event: do not score, nothing
-- recorded), 1 recorded, 2 not recorded (slot taken, or churn check only); plus 10 when the
-- customer came back (it was marked churned before an event after its churn: mark cleared).
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS - 2 do
  local a = 2 + (i - 1) * 5
  local cid = ARGV[a]
  local code = 2
  local churn = redis.call('HGET', KEYS[1], cid)
  if churn and tonumber(churn) >= tonumber(ARGV[a + 1]) then
    code = 0
  else
    if churn then
      redis.call('HDEL', KEYS[1], cid)
      code = 12
    end
    local slot = ARGV[a + 2]
    if slot ~= '' and redis.call('HSETNX', KEYS[2 + i], slot, ARGV[a + 4]) == 1 then
      redis.call('EXPIRE', KEYS[2 + i], ttl)
      redis.call('ZADD', KEYS[2], ARGV[a + 3], cid .. '|' .. slot)
      code = code - 1
    end
  end
  out[i] = code
end
return out
