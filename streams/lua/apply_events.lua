-- Apply a batch of customer events to per-customer feature hashes, exactly once.
--
-- KEYS: for each customer, two keys sharing the customer's hash tag:
--         <prefix>:{c:<id>}:f     feature hash (fields: see online_models/features.py)
--         <prefix>:{c:<id>}:seen  sorted set of applied event ids, score = event time
-- ARGV: max_types, dedup_ids, dedup_window_s,
--       then per customer (in KEYS order): m, then m times: event_id, event_type, ts, value
--       (value = "" when the event carries none; ts and value as decimal strings)
-- Returns, per customer: { applied, skipped_late, {field, value, field, value, ...} }
--
-- Deduplication: an event id already in :seen is skipped. The set keeps at most dedup_ids ids
-- and none older than dedup_window_s before the newest; when ids are evicted the field
-- "dfloor" records the newest evicted event time, and events at or below it are skipped as
-- too late (they can no longer be checked), counted in field "late".
-- Same math as online_models.features.apply_event; numbers written with %.17g.

local max_types = tonumber(ARGV[1])
local dedup_ids = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local OTHER = '_other'
local a = 4
local out = {}

local function fmt(x)
  if x == math.floor(x) and math.abs(x) < 1e15 then
    return string.format('%d', x)
  end
  return string.format('%.17g', x)
end

for c = 1, #KEYS, 2 do
  local h = KEYS[c]
  local seen = KEYS[c + 1]
  local m = tonumber(ARGV[a])
  a = a + 1
  local st = {}
  local raw = redis.call('HGETALL', h)
  for i = 1, #raw, 2 do st[raw[i]] = tonumber(raw[i + 1]) end
  local dirty = {}
  local applied, late = 0, 0
  local floor = st['dfloor']
  for i = 1, m do
    local id, typ, ts_s, val = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    a = a + 4
    local ts = tonumber(ts_s)
    if floor ~= nil and ts <= floor then
      late = late + 1
    elseif redis.call('ZADD', seen, 'NX', ts_s, id) == 1 then
      applied = applied + 1
      local kind = typ
      if st['n.' .. typ] == nil and typ ~= OTHER then
        if (st['k'] or 0) >= max_types then
          kind = OTHER
        else
          st['k'] = (st['k'] or 0) + 1
          dirty['k'] = true
        end
      end
      st['n'] = (st['n'] or 0) + 1
      dirty['n'] = true
      local nk = 'n.' .. kind
      st[nk] = (st[nk] or 0) + 1
      dirty[nk] = true
      if val ~= '' then
        local vk = 'v.' .. kind
        st[vk] = (st[vk] or 0) + tonumber(val)
        dirty[vk] = true
      end
      if st['t_first'] == nil or ts < st['t_first'] then st['t_first'] = ts; dirty['t_first'] = true end
      if st['t_last'] == nil or ts > st['t_last'] then st['t_last'] = ts; dirty['t_last'] = true end
      local tk = 't.' .. kind
      if st[tk] == nil or ts > st[tk] then st[tk] = ts; dirty[tk] = true end
    end
  end
  if late > 0 then
    st['late'] = (st['late'] or 0) + late
    dirty['late'] = true
  end
  if applied > 0 then
    -- bound the dedup memory: by time window, then by count
    local newest = tonumber(redis.call('ZRANGE', seen, -1, -1, 'WITHSCORES')[2])
    local cut = newest - window
    local evicted = redis.call('ZRANGEBYSCORE', seen, '-inf', '(' .. fmt(cut), 'WITHSCORES', 'LIMIT', 0, 1)
    local new_floor = nil
    if #evicted > 0 then
      local old = redis.call('ZRANGEBYSCORE', seen, '-inf', '(' .. fmt(cut), 'WITHSCORES')
      new_floor = tonumber(old[#old])
      redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. fmt(cut))
    end
    local size = redis.call('ZCARD', seen)
    if size > dedup_ids then
      local old = redis.call('ZRANGE', seen, size - dedup_ids - 1, size - dedup_ids - 1, 'WITHSCORES')
      local f = tonumber(old[2])
      if new_floor == nil or f > new_floor then new_floor = f end
      redis.call('ZREMRANGEBYRANK', seen, 0, size - dedup_ids - 1)
    end
    if new_floor ~= nil and (st['dfloor'] == nil or new_floor > st['dfloor']) then
      st['dfloor'] = new_floor
      dirty['dfloor'] = true
    end
  end
  local args = {}
  for f, _ in pairs(dirty) do
    args[#args + 1] = f
    args[#args + 1] = fmt(st[f])
  end
  if #args > 0 then redis.call('HSET', h, unpack(args)) end
  local flat = {}
  for f, v in pairs(st) do
    flat[#flat + 1] = f
    flat[#flat + 1] = fmt(v)
  end
  out[#out + 1] = applied
  out[#out + 1] = late
  out[#out + 1] = flat
end
return out
