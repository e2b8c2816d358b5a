-- hostlimit on Redis: the whole protocol in one script. Key layout version 5.
--
-- KEYS[1]  the log: a list, newest first (LPUSH), one entry per admission (never per unit
--          of weight), each one binary value of 20 bytes, struct '>I8I8I4':
--          seq = the sequence number, ts = the recorded timestamp (microseconds of the
--          server's clock), cum = the cumulative weight of admissions 1..seq, mod 2^32.
--          Sequence numbers are consecutive, so the entry of sequence s is at index
--          seq - s (seq: the newest, in the head): one LINDEX, and the entry's own seq is
--          checked against it (a hole, an entry too many or garbage gives HLCORRUPT).
-- KEYS[2]  the head and the configuration: a hash.
--          v = layout version, rules = the rates in canonical form (sorted),
--          rates = the rates as their owner wrote them (for error messages),
--          "h5 <rules>" = the head, one binary field named after the layout and the rules,
--            so that one HGET finds it only for a caller of this layout with these rates
--            (any other reads nil, and then v and rules say what is wrong):
--            7 + n big-endian unsigned 64-bit integers
--            (struct '>I8...', so never negative, fractional nor NaN; each below 2^53),
--            seq, cum, ts, first, exp, trim, bound_1, ..., bound_n, nonce:
--            seq, cum, ts = the newest admission (0, 0, 0 before the first),
--            first = the sequence number of the oldest entry (the trim moves it),
--            exp = when (server µs) the keys' expiry must next be pushed back,
--            trim = the sequence number from which the next admission trims,
--            bound_i = at least what rate i's window holds, now and from now on (the
--              exact use when it was last searched, plus what was admitted since): while
--              bound_i + units fits, rate i admits without reading the log,
--            nonce = that of the acquire that made the newest admission (0: none), so
--              that an undo takes back that admission and no other,
--          denied:<i>, never_fits, timed_out, undone, kept = counters (statistics; the last
--            two: undos that took an admission back, and those that found it not the
--            newest or never made)
--          Rates are numbered in canonical order (that of rules), whatever order a caller
--          gave them in: callers with the same rates in other orders share the bounds.
--          (Layout 4 kept the log in a sorted set, score = ts, member "%016d:%d" (seq,
--          cum), the same head under "h4 <rules>"; layout 3 kept the head in a field h
--          beside v and rules, its rates numbered in each caller's order; layout 2 as
--          decimal text "seq:cum:...:bound_n".)
-- Both keys carry the limiter's name in a hash tag, hostlimit:{name}:..., so that they live
-- in one Cluster slot.
--
-- ARGV: mode (acquire | usage | check | read | count | reset | undo), the head's field
-- ("h5 " .. rules), the rates as written, then the numbers in one binary string of
-- big-endian doubles: clock (µs; negative = the server's clock), weight (capped at 2^32),
-- charge (weight mod 2^32), ttl (ms), then per rate, in canonical order, limit, window_us
-- and as one byte each requests (1) or weight (0) and the rate's index in the caller's
-- order, then the call's nonce (below 2^52: an async acquire's names it for an undo,
-- other calls send 0): struct '>dddd' .. 'ddBB' n times .. 'd', so n comes from its
-- length. Mode count takes the rate's counter and a tally ('' for none) after.
--
-- Replies (integers):
--   acquire: ts, seq as 16 bytes (struct '>I8I8') admitted | {2} nothing to charge |
--            {0, rate, retry_after_us} denied | {3, rate} never fits (rate: the caller's
--            index; of rates refusing until the same time, the first in the caller's order)
--   usage:   {t, used_1, next_free_1, ...} (next_free -1 for an empty window)
--   check:   {seq} (creating the configuration of a new limiter)
--   read:    {seq} (creating nothing)
--   count:   {0 or 1}            reset: {1 if a log was dropped}
--   undo:    {1} the newest admission, made by the acquire with this nonce, taken back |
--            {0} nothing taken back
-- Errors: "HLMISMATCH <stored rates>", "HLLAYOUT <stored version>", "HLCORRUPT <why>",
-- "HLARGS <why>" (arguments this script cannot read: a caller of another version).
--
-- Everything read from the keys is checked: garbage gives HLCORRUPT, never a guess.
--
-- The cost: a call far from every limit is four commands (HGET, TIME, LPUSH, HSET), four
-- arguments and little Lua: the head is one struct.unpack, the numbers one more, the entry
-- one struct.pack, no string parsing, and the helpers of the log search are made
-- (closures) only on the calls that read the log. A rate counting requests whose bound
-- shows no room reads one entry (no search); a weight rate bisects (O(log n) LINDEX).

if redis.replicate_commands then
  -- Redis 3.2 to 4: replicate the effects (TIME is not deterministic). A no-op since 5.
  redis.replicate_commands()
end

local LAYOUT = '5'
local MOD = 4294967296
local MAX = 9007199254740992 -- 2^53: past it doubles are no longer exact integers
local log, meta = KEYS[1], KEYS[2]
local mode, field, rates_text, numbers = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

-- N[1..4]: clock, weight, charge, ttl; N[4i+1], N[4i+2], N[4i+3], N[4i+4]: rate i's limit,
-- window (µs), requests (1) or weight (0), and its index in the caller's order (what the
-- replies name, and what breaks a tie between rates refusing until the same time). The formats of the numbers and of the head (6 + n
-- integers), constants for 1 and 2 rates.
local n = (#numbers - 40) / 18
local NUMBERS, HEAD
if n == 1 then
  NUMBERS, HEAD = '>ddddddBBd', '>I8I8I8I8I8I8I8I8'
elseif n == 2 then
  NUMBERS, HEAD = '>ddddddBBddBBd', '>I8I8I8I8I8I8I8I8I8'
elseif n >= 1 and n <= 64 and n == math.floor(n) then
  NUMBERS, HEAD = '>dddd' .. string.rep('ddBB', n) .. 'd', '>' .. string.rep('I8', 7 + n)
else
  return redis.error_reply('HLARGS the numbers are ' .. #numbers .. ' bytes, not 40 + 18 n')
end
local N = { struct.unpack(NUMBERS, numbers) }
local ttl = N[4]
-- The acquire's nonce: kept with the newest admission, so that an undo takes back only the
-- admission it names.
local nonce = N[4 * n + 5]

-- H: the head, H[6 + i] rate i's bound. `stored`: the configuration (v, rules, rates)
-- is there; only a new (or expired, or reset) limiter lacks it.
local H, rules_text
local stored = true
local head = redis.call('HGET', meta, field)
if head == false or mode == 'reset' then
  -- No head for us: a new limiter, another layout, other rates; or a reset. Read only here.
  local prefix = 'h' .. LAYOUT .. ' '
  if string.sub(field, 1, #prefix) ~= prefix then
    return redis.error_reply('HLARGS script ' .. LAYOUT .. ' called with field ' .. field)
  end
  rules_text = string.sub(field, #prefix + 1)
  local m = redis.call('HMGET', meta, 'v', 'rules')
  if m[1] then
    if m[1] ~= LAYOUT then
      return redis.error_reply('HLLAYOUT ' .. tostring(m[1]))
    end
    if m[2] ~= rules_text then
      return redis.error_reply('HLMISMATCH ' .. tostring(redis.call('HGET', meta, 'rates')))
    end
  end
  if mode == 'reset' then
    -- An empty log with the same rates (whatever garbage the keys held): {1} if there was
    -- a log to drop.
    local had = redis.call('EXISTS', log)
    redis.call('DEL', log, meta)
    redis.call('HSET', meta, 'v', LAYOUT, 'rules', rules_text, 'rates', rates_text)
    redis.call('PEXPIRE', meta, ttl)
    return { had }
  end
  if redis.call('EXISTS', log) == 1 then
    return redis.error_reply('HLCORRUPT a log without its head')
  end
  stored = m[1] ~= false
  if mode == 'check' and not stored then
    redis.call('HSET', meta, 'v', LAYOUT, 'rules', rules_text, 'rates', rates_text)
    redis.call('PEXPIRE', meta, ttl)
    stored = true
  end
  H = { 0, 0, 0, 1, 0, 0 }
  for i = 1, n do
    H[6 + i] = 0
  end
  H[7 + n] = 0
else
  -- Exactly 7 + n integers, each below 2^53 (2^53 + 1 would read as 2^53: a guess).
  if #head ~= 8 * (7 + n) then
    return redis.error_reply('HLCORRUPT the head is not ' .. (7 + n) .. ' numbers')
  end
  H = { struct.unpack(HEAD, head) }
  for i = 1, 7 + n do
    if H[i] >= MAX then
      return redis.error_reply('HLCORRUPT the head is not ' .. (7 + n) .. ' integers in range')
    end
  end
  if H[2] >= MOD or H[4] < 1 or H[4] > H[1] then
    return redis.error_reply('HLCORRUPT the head is not ' .. (7 + n) .. ' integers in range')
  end
end
local seq, cum, last, oldest, exp, next_trim = H[1], H[2], H[3], H[4], H[5], H[6]

if mode == 'check' or mode == 'read' then
  return { seq }
end
if mode == 'count' then
  if not stored then
    return { 0 }
  end
  redis.call('HINCRBY', meta, ARGV[5], 1)
  if ARGV[6] ~= '' then
    redis.call('HINCRBY', meta, ARGV[6], 1)
  end
  return { 1 }
end

local now
if mode == 'undo' then
  -- An undo reads no clock: it puts back what the log held.
  now = last
elseif N[1] < 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = N[1]
end
-- The recorded timestamp: never before the last one, and never 0 (before every admission).
local t = math.max(now, last, 1)
local weight, charge = N[2], N[3]

if mode ~= 'acquire' and mode ~= 'usage' and mode ~= 'undo' then
  return redis.error_reply('HLCORRUPT unknown mode ' .. tostring(mode))
end

-- Acquire: never fits, nothing to charge, and whether some rate's bound shows no room
-- (then the log is searched).
local room, longest = true, 0
if mode == 'acquire' then
  local anything = false
  for i = 1, n do
    local limit = N[4 * i + 1]
    local units = weight
    if N[4 * i + 3] == 1 then
      units = 1
    end
    if units > limit then
      return { 3, N[4 * i + 4] }
    end
    if units > 0 then
      anything = true
      if H[6 + i] + units > limit then
        room = false
      end
    end
    if N[4 * i + 2] > longest then
      longest = N[4 * i + 2]
    end
  end
  if not anything then
    return { 2 }
  end
end

-- The log search, made only on the calls that read the log (usage, a bound without room,
-- a trim): a call far from every limit creates no closure.
local at_seq, boundary
if mode == 'usage' or mode == 'undo' or not room or seq >= next_trim then
  -- The entry with sequence number s, checked (its length, its seq against its index, ts
  -- at most the newest's, so below 2^53 as the head's is; cum is below 2^32 by its
  -- format), or nil for a sequence number outside [oldest, seq] or garbage.
  at_seq = function(s)
    if s < oldest or s > seq then
      return nil
    end
    local entry = redis.call('LINDEX', log, seq - s)
    if type(entry) ~= 'string' or #entry ~= 20 then
      return nil
    end
    local es, ts, c = struct.unpack('>I8I8I4', entry)
    if es ~= s or ts > last then
      return nil
    end
    return { seq = s, cum = c, ts = ts }
  end
  -- The newest admission outside a window of `w` ending at t (ts <= t - w), by bisection
  -- over [oldest, seq] (timestamps never decrease with the sequence number): O(log n)
  -- LINDEX. Sequence 0 (the start, before the first admission) if there is none, which
  -- holds only while nothing was trimmed: a trim keeps the newest entry outside the
  -- longest window. nil for garbage.
  boundary = function(w)
    local edge = t - w
    if seq == 0 then
      if oldest ~= 1 then
        return nil
      end
      return { seq = 0, cum = 0, ts = 0 }
    end
    if last <= edge then
      -- The newest is outside: the head has it, nothing to read.
      return { seq = seq, cum = cum, ts = last }
    end
    local lo = at_seq(oldest)
    if lo == nil then
      return nil
    end
    if lo.ts > edge then
      if oldest ~= 1 then
        return nil
      end
      return { seq = 0, cum = 0, ts = 0 }
    end
    -- lo is outside the window, seq (ts = last) inside.
    local hi = seq
    while hi - lo.seq > 1 do
      local e = at_seq(math.floor((lo.seq + hi) / 2))
      if e == nil then
        return nil
      end
      if e.ts <= edge then
        lo = e
      else
        hi = e.seq
      end
    end
    return lo
  end
end

-- Undo: take back the newest admission if it is the acquire with this nonce (whose caller
-- dropped the call before its reply): the log and the head as they were before it, except
-- the expiry and the next trim (both only ever safe to keep). An admission that is no
-- longer the newest stays (taking it out would renumber those after it, whose callers
-- hold their sequence numbers); so does one never run. Both count under `kept`. {1} if
-- undone.
if mode == 'undo' then
  -- 0 names no acquire (the head's nonce after an undo, or of an admission by a caller
  -- that sends none).
  if not stored or seq < 1 or H[7 + n] ~= nonce or nonce == 0 then
    if stored then
      redis.call('HINCRBY', meta, 'kept', 1)
    end
    return { 0 }
  end
  local newest = at_seq(seq)
  local before = { seq = 0, cum = 0, ts = 0 }
  if seq > 1 then
    -- A trim keeps the newest entry before the longest window, so the entry before the
    -- newest is always there.
    before = at_seq(seq - 1)
  end
  if newest == nil or before == nil then
    return redis.error_reply('HLCORRUPT a hole in the log')
  end
  redis.call('HINCRBY', meta, 'undone', 1)
  if seq == 1 then
    -- Back to a limiter that never admitted: no log, no head; the rates stay.
    redis.call('DEL', log)
    redis.call('HDEL', meta, field)
    return { 1 }
  end
  redis.call('LPOP', log)
  local charge = (newest.cum - before.cum) % MOD
  for i = 1, n do
    local units = charge
    if N[4 * i + 3] == 1 then
      units = 1
    end
    -- Every bound counted the newest admission (it came after every search).
    H[6 + i] = math.max(H[6 + i] - units, 0)
  end
  H[7 + n] = 0
  redis.call('HSET', meta, field, struct.pack(HEAD, seq - 1, before.cum, before.ts, oldest, exp,
    next_trim, unpack(H, 7, 7 + n)))
  return { 1 }
end

if mode == 'usage' then
  local reply = { t }
  for i = 1, n do
    local window = N[4 * i + 2]
    local b = boundary(window)
    if b == nil then
      return redis.error_reply('HLCORRUPT the log does not reach back over the window')
    end
    local u
    if N[4 * i + 3] == 1 then
      u = seq - b.seq
    else
      u = (cum - b.cum) % MOD
    end
    local next_free = -1
    if seq > b.seq then
      local first = at_seq(b.seq + 1)
      if first == nil then
        return redis.error_reply('HLCORRUPT a hole in the log')
      end
      next_free = first.ts + window
    end
    reply[2 * i] = u
    reply[2 * i + 1] = next_free
  end
  return reply
end

if not room then
  local refusing, refusing_at = -1, -1
  for i = 1, n do
    local limit, window, requests = N[4 * i + 1], N[4 * i + 2], N[4 * i + 3] == 1
    local units = requests and 1 or weight
    if units > 0 and H[6 + i] + units > limit then
      -- The bound does not show room. e: the oldest admission x whose leaving (with all
      -- before it) makes room, and whether it has left the window already:
      local e
      if requests then
        -- Counting requests needs no search. x is the limit-th newest, seq + 1 - limit.
        -- If x is before 1 (fewer than limit admissions ever) or was trimmed (before
        -- oldest: at or before the trim's base, whose ts was at most t' - longest at the
        -- trim's t' <= t, so outside every window), or its ts <= t - window, then the
        -- window holds only admissions after x: at most seq - x = limit - 1, and it holds
        -- no more later but for admissions (windows only slide forward), so limit - 1 is
        -- a bound and the request fits. Otherwise x and the limit - 1 after it (their
        -- timestamps never decrease, and none is after t) are all inside: the window holds
        -- limit, and x's leaving, at x.ts + window, is the first that makes room, the
        -- answer the search of the window gives.
        local x = seq + 1 - limit
        if x >= oldest then
          e = at_seq(x)
          if e == nil then
            return redis.error_reply('HLCORRUPT a hole in the log')
          end
        end
        if e == nil or e.ts <= t - window then
          H[6 + i] = limit - 1
        end
      else
        -- Weight: the window's exact use from the boundary (a difference of cumulative
        -- sums), then x by bisection on the sums, so the cost is the log of the window's
        -- admissions, whatever the weight.
        local b = boundary(window)
        if b == nil then
          return redis.error_reply('HLCORRUPT the log does not reach back over the window')
        end
        H[6 + i] = (cum - b.cum) % MOD
        if H[6 + i] + units > limit then
          -- lo's leaving is not enough, e's is: at first the newest (the head has it).
          local lo = b.seq
          e = { seq = seq, cum = cum, ts = last }
          while e.seq - lo > 1 do
            local m = at_seq(math.floor((lo + e.seq) / 2))
            if m == nil then
              return redis.error_reply('HLCORRUPT a hole in the log')
            end
            if (cum - m.cum) % MOD + units <= limit then
              e = m
            else
              lo = m.seq
            end
          end
        end
      end
      if H[6 + i] + units > limit then
        local at = e.ts + window
        local index = N[4 * i + 4]
        if at > refusing_at or (at == refusing_at and index < refusing) then
          refusing, refusing_at = index, at
        end
      end
    end
  end
  if refusing >= 0 then
    return { 0, refusing, math.max(refusing_at - now, 1) }
  end
end

-- Trim, every 64 admissions: keep the newest entry outside the longest window (the base
-- of every window from now on, since t never decreases) and everything after it. The log
-- holds at most the longest window's admissions plus 65, and a trim removes about what 64
-- admissions added (never a long pause of the server for a big log).
if seq >= next_trim then
  local base = boundary(longest)
  if base == nil then
    return redis.error_reply('HLCORRUPT the log does not reach back over the window')
  end
  if base.seq > oldest then
    redis.call('LTRIM', log, 0, seq - base.seq)
    oldest = base.seq
  end
  next_trim = seq + 64
end

seq = seq + 1
cum = (cum + charge) % MOD
redis.call('LPUSH', log, struct.pack('>I8I8I4', seq, t, cum))
-- Idle longer than the longest window (plus a second), the whole limiter expires: nothing
-- in it counts then. The expiry is pushed back to twice that only when less than that is
-- left, not at every admission.
local ttl_us = ttl * 1000
if exp < now + ttl_us then
  redis.call('PEXPIRE', log, 2 * ttl)
  redis.call('PEXPIRE', meta, 2 * ttl)
  exp = now + 2 * ttl_us
end
for i = 1, n do
  if N[4 * i + 3] == 1 then
    H[6 + i] = H[6 + i] + 1
  else
    H[6 + i] = H[6 + i] + weight
  end
end
H[7 + n] = nonce
local head = struct.pack(HEAD, seq, cum, t, oldest, exp, next_trim, unpack(H, 7, 7 + n))
if stored then
  redis.call('HSET', meta, field, head)
else
  redis.call('HSET', meta, field, head, 'v', LAYOUT, 'rules', rules_text, 'rates', rates_text)
end
-- One value to parse: the timestamp and the sequence number, 16 bytes.
return struct.pack('>I8I8', t, seq)
