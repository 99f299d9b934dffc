-- The learner's read of due snapshot candidates (streams.redis.observation_store, standalone).
--
-- KEYS[k]: <prefix>:{c:<id>}:obs of the k-th customer read
-- ARGV[2k-1], ARGV[2k]: the lowest and highest slot to read of the k-th customer; '*', '*' for
-- its whole hash; '=', <field> for that one field
-- Returns per customer a flat list field, value, field, value... of the slots it holds in that
-- range (what HMGET of every slot in the range, or HGETALL, would return, without the absent
-- ones): one call for many customers instead of one HMGET of up to 64 fields each.
local out = {}
for k, key in ipairs(KEYS) do
  local lo, hi = ARGV[2 * k - 1], ARGV[2 * k]
  local got = {}
  if lo == '*' then
    got = redis.call('HGETALL', key)
  else
    local want = {}
    if lo == '=' then
      want[1] = hi
    elseif tonumber(hi) - tonumber(lo) < 8 then  -- a few slots: ask for them
      lo, hi = tonumber(lo), tonumber(hi)
      for s = lo, hi do want[#want + 1] = string.format('%d', s) end
    else  -- many: the fields the hash holds in the range
      lo, hi = tonumber(lo), tonumber(hi)
      for _, f in ipairs(redis.call('HKEYS', key)) do
        local s = tonumber(f)
        if s and s >= lo and s <= hi and f == string.format('%d', s) then want[#want + 1] = f end
      end
    end
    if #want > 0 then
      local vals = redis.call('HMGET', key, unpack(want))
      for i = 1, #want do
        if vals[i] then
          got[#got + 1] = want[i]
          got[#got + 1] = vals[i]
        end
      end
    end
  end
  out[k] = got
end
return out
