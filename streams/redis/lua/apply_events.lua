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
-- Returns: JSON [[applied, late, {field: number, ...}, [[i, code], ...], last], ...], per
--          customer in KEYS order: the state after the batch without the ring, the events
--          refused (i: 1-based position in the customer's list), and the position of the event
--          the state ends with (the last applied, or a duplicate of the ring's newest entry; 0
--          when the state ends with an event of an earlier call). cjson writes 14 significant
--          digits: the reply is for scoring; the stored state is exact (read it with HGET ... s).
--
-- Poison isolation: an event is checked before it changes anything. Refused: a time that is
-- not a number or outside the ring's +-2^47 ms ("bad_timestamp"), a value that is not a finite
-- number ("bad_value"), an event that would make a field non-finite ("overflow"). A refused
-- event is neither applied nor remembered; the customer's other events are. A customer whose
-- stored state cannot be unpacked or holds a field that is not a finite number (left by an
-- earlier version) is refused whole ("bad_state"; every event listed, nothing written).
-- Nothing is written for a customer before all its events were checked.
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

-- field names of a kind, built once per call (string building is most of the script's cost)
local names = {}
local function names_of(kind)
  local n = names[kind]
  if n == nil then
    local c, s = {}, {}
    for i = 1, nhl do
      c[i] = cnames[i] .. kind
      s[i] = snames[i] .. kind
    end
    n = {c = c, s = s, n = 'n.' .. kind, v = 'v.' .. kind, t = 't.' .. kind}
    names[kind] = n
  end
  return n
end

local function rebase(st, new_r)
  local delta = new_r - st['r']
  local kinds = {}
  for f, _ in pairs(st) do
    if sub(f, 1, 2) == 'n.' then kinds[#kinds + 1] = names_of(sub(f, 3)) end
  end
  for i = 1, nhl do
    local factor = 2 ^ (-delta / hls[i][2])
    for _, nm in ipairs(kinds) do
      local ck, sk = nm.c[i], nm.s[i]
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
  if type(ts) ~= 'number' or ts ~= ts or ts == HUGE or ts == -HUGE or type(ms) ~= 'number'
      or not (ms > -TS_OFFSET and ms < TS_OFFSET) then
    return 'bad_timestamp'
  end
  if val and not is_number(val) then return 'bad_value' end
  return nil
end

local CS, SS = {}, {} -- the event's kind's new decayed count and value sums, per half-life
local NONE = {} -- no refused event (shared, never written to)

-- Apply one (deduplicated) event: the operations of online_models.features.apply_event. When a
-- field it adds to would stop being finite, change nothing and return false ("overflow"): the
-- new sums are computed first, exactly as rebase-then-add would, and only then written.
local function apply(st, typ, ts, val)
  local kind, new_kind = typ, false
  if st[names_of(typ).n] == nil and typ ~= OTHER then
    if (st['k'] or 0) >= max_types then kind = OTHER else new_kind = true end
  end
  local nm = names_of(kind)
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
    local c = st[nm.c[i]]
    if c == nil then c = 0 elseif delta > 0 then c = c * 2 ^ (-delta / h) end
    c = c + w
    if c ~= c or c == HUGE or c == -HUGE then return false end
    CS[i] = c
    if val then
      local sv = st[nm.s[i]]
      if sv == nil then sv = 0 elseif delta > 0 then sv = sv * 2 ^ (-delta / h) end
      sv = sv + val * w
      if sv ~= sv or sv == HUGE or sv == -HUGE then return false end
      SS[i] = sv
    end
  end
  local v
  if val then
    v = (st[nm.v] or 0) + val
    if not finite(v) then return false end
  end
  if new_kind then st['k'] = (st['k'] or 0) + 1 end
  if st['r'] == nil then
    st['r'] = ref
    st['ad'] = 0
  elseif delta > 0 then
    rebase(st, ref)
  end
  local j = floor((ref - day_start) / DAY + 0.5)
  if j < BITS then
    local bits = st['ad']
    local p = 2 ^ j
    if floor(bits / p) % 2 == 0 then st['ad'] = bits + p end
  end
  st['n'] = (st['n'] or 0) + 1
  st[nm.n] = (st[nm.n] or 0) + 1
  for i = 1, nhl do
    st[nm.c[i]] = CS[i]
    if val then st[nm.s[i]] = SS[i] end
  end
  if val then st[nm.v] = v end
  if st['t_first'] == nil or ts < st['t_first'] then st['t_first'] = ts end
  if st['t_last'] == nil or ts > st['t_last'] then st['t_last'] = ts end
  if st[nm.t] == nil or ts > st[nm.t] then st[nm.t] = ts end
  return true
end

-- the customer's reply, its event count and the blob to store (nil: nothing to write); reads
-- only: nothing is written before every customer was computed and the reply encoded
local function run(h, events, fp_at)
  local blob = redis.call('HGET', h, 's')
  local st = {}
  if blob then st = cmsgpack.unpack(blob) end
  local ring = st['ids'] or ''
  st['ids'] = nil
  local applied, late, rejected, last = 0, 0, NONE, 0
  for i, e in ipairs(events) do
    local fp, ts_ms = sub(fps, fp_at, fp_at + 7), e[3]
    fp_at = fp_at + 8
    local dfloor = st['dfloor']
    local why = refusal(e[2], ts_ms, e[4])
    if why then
      if rejected == NONE then rejected = {} end
      rejected[#rejected + 1] = {i, why}
    elseif dfloor ~= nil and ts_ms <= dfloor then
      late = late + 1
    elseif in_ring(ring, fp) then
      if sub(ring, #ring - WIDTH + 1, #ring - WIDTH + 8) == fp then last = i end
    else
      if not apply(st, e[1], e[2], e[4]) then
        if rejected == NONE then rejected = {} end
        rejected[#rejected + 1] = {i, 'overflow'}
      else
        applied = applied + 1
        last = i
        ring = ring .. fp .. ms_bytes(ts_ms)
        if #ring > ring_size * WIDTH then
          local gone = first_ms(ring)
          ring = sub(ring, WIDTH + 1)
          if dfloor == nil or gone > dfloor then st['dfloor'] = gone end
        end
      end
    end
  end
  local reply = {applied, late, st, rejected, last}
  if applied == 0 then return reply, nil, nil end
  st['ids'] = ring
  local packed = cmsgpack.pack(st)
  st['ids'] = nil
  return reply, fmt(st['n']), packed
end

local function refused(count)
  local rejected = {}
  for i = 1, count do rejected[i] = {i, 'bad_state'} end
  return {0, 0, {}, rejected, 0}
end

local function sound(st)
  for _, v in pairs(st) do
    if type(v) ~= 'number' or not finite(v) then return false end
  end
  return true
end

local out, writes = {}, {}
local fp_at = 1
for c = 1, #KEYS do
  local events = req['customers'][c]
  local ok, reply, n, packed = pcall(run, KEYS[c], events, fp_at)
  fp_at = fp_at + 8 * #events
  if ok then
    out[c] = reply
    if packed then writes[c] = {n, packed} end
  else
    out[c] = refused(#events)
  end
end
local ok, encoded = pcall(cjson.encode, out)
if not ok then -- a stored state with a non-finite number (from an earlier version): refuse it
  for c = 1, #KEYS do
    if not sound(out[c][3]) then
      out[c] = refused(#req['customers'][c])
      writes[c] = nil
    end
  end
  encoded = cjson.encode(out)
end
for c, w in pairs(writes) do
  redis.call('HSET', KEYS[c], 'n', w[1], 's', w[2])
  if ttl_ms > 0 then redis.call('PEXPIRE', KEYS[c], ttl_ms) end
end
return encoded
