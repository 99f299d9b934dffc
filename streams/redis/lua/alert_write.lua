-- Write the alerter's per-customer records of one batch: all or nothing, compare-and-set.
-- KEYS[i]   <prefix>:{c:<id>}:alert (hash: r = record JSON, v = version)
-- ARGV[1]   TTL in ms (0 = none)
-- ARGV[2]   MessagePack array {v1, ..., vn, r1, ..., rn}: the version the caller read for
--           KEYS[i] (0 = no record) and the new record for KEYS[i] (one argument instead of
--           2n: the client packs arguments one by one, at a cost per argument)
-- Returns the (1-based) indexes of keys whose version moved; nothing is written then.
local n = #KEYS
local ttl = tonumber(ARGV[1])
local packed = cmsgpack.unpack(ARGV[2])
local moved = {}
for i = 1, n do
  local v = redis.call('HGET', KEYS[i], 'v') or '0'
  if tonumber(v) ~= packed[i] then
    moved[#moved + 1] = i
  end
end
if #moved > 0 then
  return moved
end
for i = 1, n do
  redis.call('HSET', KEYS[i], 'r', packed[n + i], 'v', packed[i] + 1)
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return moved
