-- The worker's observation step for one batch of scored customers (streams.redis.observation_store).
--
-- KEYS[1]: <prefix>:churned       hash customer id -> churn time (seconds, text)
-- KEYS[2]: <prefix>:obs:due       sorted set "<id>|<slot>" -> time it resolves negative
-- KEYS[2 + k]: <prefix>:{c:<id>}:obs, the pending snapshots of the customers that bring one
-- ARGV[1]: TTL of a snapshot hash (seconds), set when a snapshot is added
-- ARGV[2]: JSON [[id, newest event time, k], ...], one per customer scored; k = 0: churn check
--          only, else the snapshot is KEYS[2 + k] / ARGV[2 + k] and [slot, resolve time] follow
--          as the item's 4th and 5th elements
-- ARGV[2 + k]: the k-th snapshot (compressed bytes)
-- Returns one code per customer: 0 churned (churn time >= newest event: do not score, nothing
-- recorded), 1 recorded, 2 not recorded (slot taken, or churn check only); plus 10 when the
-- customer came back (it was marked churned before an event after its churn: mark cleared).
local ttl = tonumber(ARGV[1])
local items = cjson.decode(ARGV[2])
local out = {}
for i, item in ipairs(items) do
  local cid, newest, k = item[1], item[2], item[3]
  local code = 2
  local churn = redis.call('HGET', KEYS[1], cid)
  if churn and tonumber(churn) >= newest then
    code = 0
  else
    if churn then
      redis.call('HDEL', KEYS[1], cid)
      code = 12
    end
    if k > 0 then
      local slot = string.format('%d', item[4])
      if redis.call('HSETNX', KEYS[2 + k], slot, ARGV[2 + k]) == 1 then
        redis.call('EXPIRE', KEYS[2 + k], ttl)
        redis.call('ZADD', KEYS[2], string.format('%.17g', item[5]), cid .. '|' .. slot)
        code = code - 1
      end
    end
  end
  out[i] = code
end
return out
