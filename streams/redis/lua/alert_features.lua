-- The feature states of the customers the alerter enriches or samples, in one call.
-- KEYS[i]  <prefix>:{c:<id>} (the feature store's customer hash)
-- ARGV[1]  the hash field of the packed state
-- Returns {state1, ..., staten} (false where absent).
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGET', KEYS[i], ARGV[1])
end
return out
