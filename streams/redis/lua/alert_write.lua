-- Write the alerter's per-customer records of one batch: all or nothing, compare-and-set.
-- KEYS[i]     <prefix>:{c:<id>}:alert (hash: r = record JSON, v = version)
-- ARGV[1]     TTL in ms (0 = none)
-- ARGV[1+i]   the version the caller read for KEYS[i] (0 = no record)
-- ARGV[1+n+i] the new record for KEYS[i]
-- Returns the (1-based) indexes of keys whose version moved; nothing is written then.
local n = #KEYS
local ttl = tonumber(ARGV[1])
local moved = {}
for i = 1, n do
  local v = redis.call('HGET', KEYS[i], 'v') or '0'
  if v ~= ARGV[1 + i] then
    moved[#moved + 1] = i
  end
end
if #moved > 0 then
  return moved
end
for i = 1, n do
  redis.call('HSET', KEYS[i], 'r', ARGV[1 + n + i], 'v', tostring(tonumber(ARGV[1 + i]) + 1))
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return moved
