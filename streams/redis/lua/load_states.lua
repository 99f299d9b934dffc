-- Read the stored feature states of many customers in one call (the worker's write-behind
-- cache, streams.redis.feature_cache, loads the customers it has not seen yet).
--
-- KEYS: one feature hash per customer: <prefix>:{c:<id>}:f (layout of apply_events.lua)
-- Returns: an array, per key: {s, n} (each false when absent)

local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], 's', 'n')
end
return out
