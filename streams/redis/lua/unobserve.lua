-- The learner's removal of resolved snapshots (streams.redis.observation_store, standalone Redis).
--
-- KEYS[1]: <prefix>:obs:due       sorted set, one member per customer -> earliest resolve time
-- KEYS[2]: <prefix>:obs:due:n     count of pending snapshots (DECRBY what was removed)
-- KEYS[2 + k]: <prefix>:{c:<id>}:obs of the k-th customer
-- ARGV[1]: horizon (seconds); ARGV[2]: observation interval (seconds)
-- ARGV[3]: JSON [[member, [slot, ...], id], ...], the k-th customer's due member, resolved
-- slots and id: the older per-snapshot members "<id>|<slot>" of those slots are removed from
-- the due index too (built here: one argument per snapshot cost the client more than this)
-- Each customer's member is re-scored by its lowest remaining slot's snapshot (t + horizon, t
-- read from a packed snapshot; the slot's start + horizon for an older JSON one), or removed
-- when its hash is empty. Returns how many snapshots were removed.
local horizon, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local items = cjson.decode(ARGV[3])
local removed = 0
local older = {}
for k, item in ipairs(items) do
  local key, member = KEYS[2 + k], item[1]
  removed = removed + redis.call('HDEL', key, unpack(item[2]))
  for _, slot in ipairs(item[2]) do older[#older + 1] = item[3] .. '|' .. slot end
  local lowest = nil
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local slot = tonumber(field)
    if slot and (lowest == nil or slot < lowest) then lowest = slot end
  end
  if lowest == nil then
    redis.call('ZREM', KEYS[1], member)
  else
    local raw = redis.call('HGET', key, string.format('%d', lowest))
    local at = lowest * interval + horizon
    local fmt = string.byte(raw, 1)
    if (fmt == 0xC1 or fmt == 0xC2) and #raw >= 13 then
      at = struct.unpack('<d', raw, 6) + horizon
    end
    redis.call('ZADD', KEYS[1], string.format('%.17g', at), member)
  end
end
for lo = 1, #older, 1000 do  -- in parts: unpack's stack is limited
  redis.call('ZREM', KEYS[1], unpack(older, lo, math.min(lo + 999, #older)))
end
if removed > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECRBY', KEYS[2], removed)
end
return removed
