-- Apply a batch of customer events to per-customer feature hashes, exactly once.
--
-- The update is online_models.features.apply_event, operation for operation (an integration
-- test holds the two to each other on random streams); the dedup rule is the one of
-- streams.redis.feature_store.InMemoryFeatureStore.
--
-- KEYS: one feature hash per customer: <prefix>:{c:<id>}:f, fields
--         "s": the state, a MessagePack map field -> number (doubles are stored exactly),
--              plus the dedup ring under "ids"
--         "n": the event count again, as text, for people and tools (HGET ... n)
-- ARGV[1]: JSON {"max_types": int, "ring": int, "ttl_ms": int (0 = keep forever),
--                "hl": [[name, half_life_seconds], ...],
--                "customers": [[event, ...], ...]}
--          the i-th list holds the events of KEYS[i], each [event_type, ts, ts_ms, value]
--          (ts: seconds; ts_ms: integer milliseconds; value: number, or false when none;
--          null where the caller had no finite number)
-- ARGV[2]: the events' fingerprints, 8 bytes each (sha1(event_id)[:8]), concatenated in the
--          order of ARGV[1] (customer by customer)
-- Returns: JSON [[applied, late, {field: number, ...}, [[i, code], ...]], ...], per customer in
--          KEYS order: the state after the batch without the ring, and the events refused (i:
--          1-based position in the customer's list). cjson writes 14 significant digits: the
--          reply is for scoring; the stored state is exact (read it with HGET ... s).
--
-- Poison isolation: an event is checked before it changes anything. Refused: a time that is
-- not a number or outside the ring's +-2^47 ms ("bad_timestamp"), a value that is not a finite
-- number ("bad_value"), an event that would make a field non-finite ("overflow"). A refused
-- event is neither applied nor remembered; the customer's other events are. A customer whose
-- stored state cannot be unpacked or whose reply cannot be encoded (non-finite numbers left by
-- an earlier version) is refused whole ("bad_state"; every event listed, nothing written).
-- Nothing is written for a customer before all its events were checked and its reply encoded.
--
-- Exactly-once: "ids" is a ring of the last `ring` applied events, each a 14-byte entry:
-- 8 bytes of fingerprint, 6 bytes of big-endian ts_ms + 2^47. An event whose fingerprint is in the ring is a duplicate. When an
-- entry leaves the ring, "dfloor" becomes the largest ts_ms that ever left it; events at or
-- below dfloor can no longer be checked and are skipped as late. Every event applied with
-- ts_ms > dfloor is still in the ring, so re-applying events never changes the state.
--
-- Decay: c<h>.<type> / s<h>.<type> hold sums of 2^((t - r) / H) (times value), r = UTC day
-- start of t_last. When r moves forward every decayed field is rescaled and the active-day
-- bitmap "ad" (bit j = day r/86400 - j) is shifted.

local req = cjson.decode(ARGV[1])
local max_types = req['max_types']
local ring_size = req['ring']
local ttl_ms = req['ttl_ms']
local hls = req['hl']
local nhl = #hls
local OTHER = '_other'
local WIDTH = 14 -- 8 bytes fingerprint + 6 bytes time
local TS_OFFSET = 2 ^ 47
local fps = ARGV[2]
local DAY = 86400
local BITS = 32
local BITS_MOD = 2 ^ BITS
local floor, fmod, fmt_s, sub, find = math.floor, math.fmod, string.format, string.sub, string.find
local HUGE = math.huge

local cnames, snames = {}, {}
for i = 1, nhl do
  cnames[i] = 'c' .. hls[i][1] .. '.'
  snames[i] = 's' .. hls[i][1] .. '.'
end

local function fmt(x)
  if x == floor(x) and x > -1e15 and x < 1e15 then
    return fmt_s('%d', x)
  end
  return fmt_s('%.17g', x)
end

local function ms_bytes(ms)
  local x = ms + TS_OFFSET
  local f = x % 256; x = (x - f) / 256
  local e = x % 256; x = (x - e) / 256
  local d = x % 256; x = (x - d) / 256
  local c = x % 256; x = (x - c) / 256
  local b = x % 256; x = (x - b) / 256
  return string.char(x, b, c, d, e, f)
end

local function first_ms(ring)
  local a, b, c, d, e, f = string.byte(ring, 9, 14)
  return ((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f - TS_OFFSET
end

local function in_ring(ring, fp)
  local start = 1
  while true do
    local pos = find(ring, fp, start, true)
    if pos == nil then return false end
    if (pos - 1) % WIDTH == 0 then return true end
    start = pos + 1
  end
end

local function rebase(st, new_r)
  local delta = new_r - st['r']
  local kinds = {}
  for f, _ in pairs(st) do
    if sub(f, 1, 2) == 'n.' then kinds[#kinds + 1] = sub(f, 3) end
  end
  for i = 1, nhl do
    local factor = 2 ^ (-delta / hls[i][2])
    for _, kind in ipairs(kinds) do
      local ck, sk = cnames[i] .. kind, snames[i] .. kind
      if st[ck] ~= nil then st[ck] = st[ck] * factor end
      if st[sk] ~= nil then st[sk] = st[sk] * factor end
    end
  end
  local shift = floor(delta / DAY + 0.5)
  if shift < BITS then
    st['ad'] = fmod((st['ad'] or 0) * 2 ^ shift, BITS_MOD)
  else
    st['ad'] = 0
  end
  st['r'] = new_r
end

local function finite(x)
  return x == x and x ~= HUGE and x ~= -HUGE
end

local function is_number(x)
  return type(x) == 'number' and finite(x)
end

-- the reason an event is refused whatever the state, or nil
local function refusal(ts, ms, val)
  if not is_number(ts) or not is_number(ms) or ms <= -TS_OFFSET or ms >= TS_OFFSET then
    return 'bad_timestamp'
  end
  if val and not is_number(val) then return 'bad_value' end
  return nil
end

-- true when apply(st, typ, ts, val) keeps every field it adds to finite: the same operations
-- as apply and rebase, on the fields of the event's kind (rebase only shrinks the others)
local function stays_finite(st, typ, ts, val)
  local kind = typ
  if st['n.' .. typ] == nil and typ ~= OTHER and (st['k'] or 0) >= max_types then
    kind = OTHER
  end
  local day_start = floor(ts / DAY) * DAY
  local ref = st['r']
  local delta = 0
  if ref == nil then
    ref = day_start
  elseif day_start > ref then
    delta = day_start - ref
    ref = day_start
  end
  for i = 1, nhl do
    local h = hls[i][2]
    local w = 2 ^ ((ts - ref) / h)
    local ck = st[cnames[i] .. kind]
    local c = w
    if ck ~= nil then
      if delta > 0 then ck = ck * 2 ^ (-delta / h) end
      c = ck + w
    end
    if not finite(c) then return false end
    if val then
      local sk = st[snames[i] .. kind]
      local s = val * w
      if sk ~= nil then
        if delta > 0 then sk = sk * 2 ^ (-delta / h) end
        s = sk + val * w
      end
      if not finite(s) then return false end
    end
  end
  if val and not finite((st['v.' .. kind] or 0) + val) then return false end
  return true
end

local function apply(st, typ, ts, val)
  local kind = typ
  if st['n.' .. typ] == nil and typ ~= OTHER then
    if (st['k'] or 0) >= max_types then
      kind = OTHER
    else
      st['k'] = (st['k'] or 0) + 1
    end
  end
  local day_start = floor(ts / DAY) * DAY
  local ref = st['r']
  if ref == nil then
    ref = day_start
    st['r'] = ref
    st['ad'] = 0
  elseif day_start > ref then
    rebase(st, day_start)
    ref = day_start
  end
  local j = floor((ref - day_start) / DAY + 0.5)
  if j < BITS then
    local bits = st['ad']
    local p = 2 ^ j
    if floor(bits / p) % 2 == 0 then st['ad'] = bits + p end
  end
  st['n'] = (st['n'] or 0) + 1
  local nk = 'n.' .. kind
  st[nk] = (st[nk] or 0) + 1
  for i = 1, nhl do
    local w = 2 ^ ((ts - ref) / hls[i][2])
    local ck = cnames[i] .. kind
    st[ck] = (st[ck] or 0) + w
    if val then
      local sk = snames[i] .. kind
      st[sk] = (st[sk] or 0) + val * w
    end
  end
  if val then
    local vk = 'v.' .. kind
    st[vk] = (st[vk] or 0) + val
  end
  if st['t_first'] == nil or ts < st['t_first'] then st['t_first'] = ts end
  if st['t_last'] == nil or ts > st['t_last'] then st['t_last'] = ts end
  local tk = 't.' .. kind
  if st[tk] == nil or ts > st[tk] then st[tk] = ts end
end

-- the customer's new state, what to reply, and the blob to store (nil: nothing to write);
-- reads only, so an error anywhere leaves the customer as it was
local function run(h, events, fp_at)
  local blob = redis.call('HGET', h, 's')
  local st = {}
  if blob then st = cmsgpack.unpack(blob) end
  local ring = st['ids'] or ''
  st['ids'] = nil
  local applied, late, rejected = 0, 0, {}
  for i, e in ipairs(events) do
    local fp, ts_ms = sub(fps, fp_at, fp_at + 7), e[3]
    fp_at = fp_at + 8
    local dfloor = st['dfloor']
    local why = refusal(e[2], ts_ms, e[4])
    if why then
      rejected[#rejected + 1] = {i, why}
    elseif dfloor ~= nil and ts_ms <= dfloor then
      late = late + 1
    elseif not in_ring(ring, fp) then
      if not stays_finite(st, e[1], e[2], e[4]) then
        rejected[#rejected + 1] = {i, 'overflow'}
      else
        applied = applied + 1
        ring = ring .. fp .. ms_bytes(ts_ms)
        if #ring > ring_size * WIDTH then
          local gone = first_ms(ring)
          ring = sub(ring, WIDTH + 1)
          if dfloor == nil or gone > dfloor then st['dfloor'] = gone end
        end
        apply(st, e[1], e[2], e[4])
      end
    end
  end
  local reply = cjson.encode({applied, late, st, rejected})
  if applied == 0 then return reply, nil, nil end
  st['ids'] = ring
  return reply, fmt(st['n']), cmsgpack.pack(st)
end

local pieces = {}
local fp_at = 1
for c = 1, #KEYS do
  local h = KEYS[c]
  local events = req['customers'][c]
  local ok, reply, n, packed = pcall(run, h, events, fp_at)
  fp_at = fp_at + 8 * #events
  if ok then
    if packed then
      redis.call('HSET', h, 'n', n, 's', packed)
      if ttl_ms > 0 then redis.call('PEXPIRE', h, ttl_ms) end
    end
  else
    local rejected = {}
    for i = 1, #events do rejected[i] = {i, 'bad_state'} end
    reply = cjson.encode({0, 0, {}, rejected})
  end
  pieces[c] = reply
end
return '[' .. table.concat(pieces, ',') .. ']'
