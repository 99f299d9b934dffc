-- The worker's observation step for one batch of scored customers (streams.redis.observation_store).
--
-- KEYS[1]: <prefix>:churned       hash customer id -> churn time (seconds, text)
-- KEYS[2]: <prefix>:obs:due       sorted set, one member per customer with pending snapshots
--                                  (observation_store.due_member) -> its earliest resolve time
-- KEYS[3]: <prefix>:obs:due:n     count of pending snapshots (INCRBY the recorded ones)
-- KEYS[3 + k]: <prefix>:{c:<id>}:obs, the pending snapshots of the customers that bring one
-- ARGV[1]: TTL of a snapshot hash (seconds), set when a snapshot is added
-- ARGV[2]: JSON [[id, newest event time, k], ...], one per customer scored; k = 0: churn check
--          only, else the snapshot is KEYS[3 + k] / ARGV[2 + k] and [slot, resolve time, due
--          member] follow as the item's 4th, 5th and 6th elements
-- ARGV[2 + k]: the k-th snapshot (packed bytes, streams.redis.packed_state.pack_snapshot)
-- Returns one code per customer: 0 churned (churn time >= newest event: do not score, nothing
-- recorded), 1 recorded, 2 not recorded (slot taken, or churn check only); plus 10 when the
-- customer came back (it was marked churned before an event after its churn: mark cleared).
local ttl = tonumber(ARGV[1])
local items = cjson.decode(ARGV[2])
local out = {}
local recorded = 0
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
      if redis.call('HSETNX', KEYS[3 + k], slot, ARGV[2 + k]) == 1 then
        redis.call('EXPIRE', KEYS[3 + k], ttl)
        -- LT: the member keeps the customer's earliest resolve time (added when absent)
        redis.call('ZADD', KEYS[2], 'LT', string.format('%.17g', item[5]), item[6])
        recorded = recorded + 1
        code = code - 1
      end
    end
  end
  out[i] = code
end
if recorded > 0 then
  redis.call('INCRBY', KEYS[3], recorded)
end
return out
