-- Write back feature states a worker computed from its write-behind cache
-- (streams.redis.feature_cache), each one only if the customer's stored event count is still
-- the one the worker read with the state (compare-and-set): Redis stays the store of record,
-- and a worker whose cached state went stale (another worker applied events, the customer was
-- erased, a write whose reply was lost) writes nothing for that customer and is told so.
--
-- KEYS: one feature hash per customer: <prefix>:{c:<id>}:f (layout of apply_events.lua)
-- ARGV[1]: retention in ms (0 = keep forever)
-- ARGV[2]: per key, space-separated: the "n" field the state was read with ('-' = none), the
--          new "n" (text) and the byte length of the new "s" in ARGV[3]
-- ARGV[3]: the new "s" fields one after the other (each a MessagePack map of the state with
--          its dedup ring under "ids", as apply_events.lua writes it)
-- Returns: an array, per key: 1 written, 0 not written (its stored "n" is another)

local ttl_ms = tonumber(ARGV[1])
local head, blobs = {}, ARGV[3]
for word in string.gmatch(ARGV[2], '%S+') do head[#head + 1] = word end
local out, at = {}, 1
for i = 1, #KEYS do
  local size = tonumber(head[3 * i])
  local current = redis.call('HGET', KEYS[i], 'n')
  if (current or '-') == head[3 * i - 2] then
    redis.call('HSET', KEYS[i], 'n', head[3 * i - 1], 's', string.sub(blobs, at, at + size - 1))
    if ttl_ms > 0 then redis.call('PEXPIRE', KEYS[i], ttl_ms) end
    out[i] = 1
  else
    out[i] = 0
  end
  at = at + size
end
return out
