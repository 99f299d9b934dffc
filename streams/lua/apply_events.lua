-- Apply a batch of customer events to per-customer feature hashes, exactly once.
--
-- KEYS: one feature hash per customer: <prefix>:{c:<id>}:f
-- ARGV[1]: JSON {"max_types": int, "ring": int, "customers": [[event, ...], ...]} where the
--          i-th list holds the events of KEYS[i], each [fingerprint, event_type, ts, ts_ms, value]
--          (fingerprint: 16 hex chars of sha1(event_id); ts: seconds; ts_ms: integer
--          milliseconds; value: number, or false when the event carries none)
-- Returns: JSON [[applied, late, {field: number, ...}], ...] per customer, in KEYS order; the
--          state after the batch, without the dedup ring
--
-- Exactly-once: the hash field "ids" is a ring of the last `ring` applied events, each a
-- fixed-width entry of fingerprint .. %013d ts_ms. An event whose fingerprint is in the ring is
-- a duplicate. When an entry leaves the ring, "dfloor" becomes the largest ts_ms that ever left
-- it; events at or below dfloor can no longer be checked and are skipped as late. Every event
-- applied with ts_ms > dfloor is still in the ring, so re-applying events never changes the
-- state. Same rules as streams.feature_store.InMemoryFeatureStore; same update as
-- online_models.features.apply_event.

local req = cjson.decode(ARGV[1])
local max_types = req['max_types']
local ring_size = req['ring']
local OTHER = '_other'
local WIDTH = 29 -- 16 hex + 13 digits
local out = {}

local function fmt(x)
  if x == math.floor(x) and math.abs(x) < 1e15 then
    return string.format('%d', x)
  end
  return string.format('%.17g', x)
end

local function in_ring(ring, fp)
  local start = 1
  while true do
    local pos = string.find(ring, fp, start, true)
    if pos == nil then return false end
    if (pos - 1) % WIDTH == 0 then return true end
    start = pos + 1
  end
end

for c = 1, #KEYS do
  local h = KEYS[c]
  local raw = redis.call('HGETALL', h)
  local st = {}
  local ring = ''
  for i = 1, #raw, 2 do
    if raw[i] == 'ids' then ring = raw[i + 1] else st[raw[i]] = tonumber(raw[i + 1]) end
  end
  local dirty = {}
  local applied, late = 0, 0
  for _, e in ipairs(req['customers'][c]) do
    local fp, typ, ts, ts_ms, val = e[1], e[2], e[3], e[4], e[5]
    local floor = st['dfloor']
    if floor ~= nil and ts_ms <= floor then
      late = late + 1
    elseif not in_ring(ring, fp) then
      applied = applied + 1
      ring = ring .. fp .. string.format('%013d', ts_ms)
      if #ring > ring_size * WIDTH then
        local gone = tonumber(string.sub(ring, 17, WIDTH))
        ring = string.sub(ring, WIDTH + 1)
        if floor == nil or gone > floor then st['dfloor'] = gone; dirty['dfloor'] = true end
      end
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
      if val then
        local vk = 'v.' .. kind
        st[vk] = (st[vk] or 0) + val
        dirty[vk] = true
      end
      if st['t_first'] == nil or ts < st['t_first'] then st['t_first'] = ts; dirty['t_first'] = true end
      if st['t_last'] == nil or ts > st['t_last'] then st['t_last'] = ts; dirty['t_last'] = true end
      local tk = 't.' .. kind
      if st[tk] == nil or ts > st[tk] then st[tk] = ts; dirty[tk] = true end
    end
  end
  if applied > 0 then
    local args = {'ids', ring}
    for f, _ in pairs(dirty) do
      args[#args + 1] = f
      args[#args + 1] = fmt(st[f])
    end
    redis.call('HSET', h, unpack(args))
  end
  out[c] = {applied, late, st}
end
return cjson.encode(out)
