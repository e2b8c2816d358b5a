-- benches/redis.rs: a frozen copy of src/redis/script.lua at key layout 3, the "before"
-- this bench measures against. Not used by the library.
-- hostlimit on Redis: the whole protocol in one script. Key layout version 3.
--
-- KEYS[1]  the log: a sorted set, one member per admission (never per unit of weight).
--          score  = recorded timestamp, microseconds of the server's clock
--          member = "%016d:%d" (sequence number, zero-padded so that members with one score
--                   sort by sequence; cumulative weight of admissions 1..seq, mod 2^32)
-- KEYS[2]  the head and the configuration: a hash.
--          v = layout version, rules = the rates in canonical form (compared),
--          rates = the rates as their owner wrote them (for error messages),
--          h = the head, one binary field: 6 + n big-endian unsigned 64-bit integers
--            (struct '>I8...', so never negative, fractional nor NaN; each below 2^53),
--            seq, cum, ts, first, exp, trim, bound_1, ..., bound_n:
--            seq, cum, ts = the newest admission (0, 0, 0 before the first),
--            first = the sequence number of the oldest member (the trim moves it),
--            exp = when (server µs) the keys' expiry must next be pushed back,
--            trim = the sequence number from which the next admission trims,
--            bound_i = at least what rate i's window holds, now and from now on (the
--              exact use when it was last searched, plus what was admitted since): while
--              bound_i + units fits, rate i admits without searching the log,
--          denied:<i>, never_fits, timed_out = counters (statistics)
--          (layout 2 had the same head as decimal text "seq:cum:...:bound_n").
-- Both keys carry the limiter's name in a hash tag, hostlimit:{name}:..., so that they live
-- in one Cluster slot.
--
-- ARGV: mode (acquire | usage | check | count | reset), layout, rules, rates, ttl_ms, now_us
-- ('' = the server's clock), weight (capped at 2^32), charge (weight mod 2^32), the count n
-- of rates, then the rates in one binary string: per rate limit, window_us (big-endian
-- doubles) and requests (1) or weight (0) (one byte), struct '>ddB' n times. Mode count
-- takes the rate's counter and a tally ('' for none) in place of the weight and charge.
--
-- Replies (integers):
--   acquire: {1, ts, seq} admitted | {2} nothing to charge | {0, rate, retry_after_us}
--            denied | {3, rate} never fits
--   usage:   {t, used_1, next_free_1, ...} (next_free -1 for an empty window)
--   check:   {seq}            count: {0 or 1}            reset: {1 if a log was dropped}
-- Errors: "HLMISMATCH <stored rates>", "HLLAYOUT <stored version>", "HLCORRUPT <why>".
--
-- Everything read from the keys is checked: garbage gives HLCORRUPT, never a guess.
--
-- The cost: a call far from every limit is four commands (HMGET, TIME, ZADD, HSET) and
-- little Lua: the head is one struct.unpack, the rates one more, no string parsing, and
-- the helpers of the log search are made (closures) only on the calls that search it.

if redis.replicate_commands then
  -- Redis 3.2 to 4: replicate the effects (TIME is not deterministic). A no-op since 5.
  redis.replicate_commands()
end

local LAYOUT = '3'
local MOD = 4294967296
local MAX = 9007199254740992 -- 2^53: past it doubles are no longer exact integers
local log, meta = KEYS[1], KEYS[2]
local mode = ARGV[1]

if ARGV[2] ~= LAYOUT then
  return redis.error_reply('HLLAYOUT script ' .. LAYOUT .. ' called with ' .. tostring(ARGV[2]))
end
local rules_text, rates_text = ARGV[3], ARGV[4]
local ttl = ARGV[5]
local n = tonumber(ARGV[9])
-- R[3i-2], R[3i-1], R[3i]: rate i's limit, window (µs), requests (1) or weight (0).
-- The formats of the rates and of the head (6 + n integers), constants for 1 and 2 rates.
local RATES, HEAD
if n == 1 then
  RATES, HEAD = '>ddB', '>I8I8I8I8I8I8I8'
elseif n == 2 then
  RATES, HEAD = '>ddBddB', '>I8I8I8I8I8I8I8I8'
else
  RATES, HEAD = '>' .. string.rep('ddB', n), '>' .. string.rep('I8', 6 + n)
end
local R = { struct.unpack(RATES, ARGV[10]) }

local m = redis.call('HMGET', meta, 'v', 'rules', 'h')
if m[1] then
  if m[1] ~= LAYOUT then
    return redis.error_reply('HLLAYOUT ' .. tostring(m[1]))
  end
  if m[2] ~= rules_text then
    -- Read only here: the rates as written are for this message.
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
-- H: the head, H[6 + i] rate i's bound.
local H
if m[1] and m[3] then
  -- Exactly 6 + n integers, each below 2^53 (2^53 + 1 would read as 2^53: a guess).
  if #m[3] ~= 8 * (6 + n) then
    return redis.error_reply('HLCORRUPT the head is not ' .. (6 + n) .. ' numbers')
  end
  H = { struct.unpack(HEAD, m[3]) }
  for i = 1, 6 + n do
    if H[i] >= MAX then
      return redis.error_reply('HLCORRUPT the head is not ' .. (6 + n) .. ' integers in range')
    end
  end
  if H[2] >= MOD or H[4] < 1 or H[4] > H[1] then
    return redis.error_reply('HLCORRUPT the head is not ' .. (6 + n) .. ' integers in range')
  end
else
  if not m[1] and redis.call('EXISTS', log) == 1 then
    return redis.error_reply('HLCORRUPT a log without its head')
  end
  H = { 0, 0, 0, 1, 0, 0 }
  for i = 1, n do
    H[6 + i] = 0
  end
end
local seq, cum, last, oldest, exp, next_trim = H[1], H[2], H[3], H[4], H[5], H[6]

if mode == 'check' then
  if not m[1] then
    redis.call('HSET', meta, 'v', LAYOUT, 'rules', rules_text, 'rates', rates_text)
    redis.call('PEXPIRE', meta, ttl)
  end
  return { seq }
end
if mode == 'count' then
  if not m[1] then
    return { 0 }
  end
  redis.call('HINCRBY', meta, ARGV[7], 1)
  if ARGV[8] ~= '' then
    redis.call('HINCRBY', meta, ARGV[8], 1)
  end
  return { 1 }
end

local now
if ARGV[6] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[6])
end
-- The recorded timestamp: never before the last one, and never 0 (before every admission).
local t = math.max(now, last, 1)
local weight, charge = tonumber(ARGV[7]), tonumber(ARGV[8])

if mode ~= 'acquire' and mode ~= 'usage' then
  return redis.error_reply('HLCORRUPT unknown mode ' .. tostring(mode))
end

-- Acquire: never fits, nothing to charge, and whether some rate's bound shows no room
-- (then the log is searched).
local room, longest = true, 0
if mode == 'acquire' then
  local anything = false
  for i = 1, n do
    local limit = R[3 * i - 2]
    local units = weight
    if R[3 * i] == 1 then
      units = 1
    end
    if units > limit then
      return { 3, i - 1 }
    end
    if units > 0 then
      anything = true
      if H[6 + i] + units > limit then
        room = false
      end
    end
    if R[3 * i - 1] > longest then
      longest = R[3 * i - 1]
    end
  end
  if not anything then
    return { 2 }
  end
end

-- The log search, made only on the calls that read the log (usage, a bound without room,
-- a trim): a call far from every limit creates no closure.
local fmt, parse, at_seq, boundary
if mode == 'usage' or not room or seq >= next_trim then
  fmt = function(v)
    -- Numbers go to Redis as exact integer text: Lua's own conversion keeps only 14 digits.
    return string.format('%.0f', v)
  end
  local function integer(text)
    local v = tonumber(text)
    if v == nil or v < 0 or v ~= math.floor(v) or v > MAX then
      return nil
    end
    return v
  end
  parse = function(member, score)
    local s, c = string.match(member or '', '^(%d+):(%d+)$')
    local e = { seq = integer(s), cum = integer(c), ts = integer(score) }
    if e.seq == nil or e.cum == nil or e.ts == nil or e.cum >= MOD or e.seq > seq or e.ts > last then
      return nil
    end
    return e
  end
  -- The member with sequence number s: ranks start at the oldest (`first` in the head),
  -- and sequence numbers are consecutive in the log.
  at_seq = function(s)
    if s < oldest or s > seq then
      return nil
    end
    local r = redis.call('ZRANGE', log, fmt(s - oldest), fmt(s - oldest), 'WITHSCORES')
    local e = parse(r[1], r[2])
    if e == nil or e.seq ~= s then
      return nil
    end
    return e
  end
  -- The newest admission outside a window of `w` ending at t (ts <= t - w); sequence 0
  -- (the start, before the first admission) if there is none, which holds only while
  -- nothing was trimmed: a trim keeps the newest member outside the longest window.
  boundary = function(w)
    local r = redis.call('ZREVRANGEBYSCORE', log, fmt(t - w), '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #r == 0 then
      if oldest ~= 1 then
        return nil
      end
      return { seq = 0, cum = 0, ts = 0 }
    end
    return parse(r[1], r[2])
  end
end

if mode == 'usage' then
  local reply = { t }
  for i = 1, n do
    local window = R[3 * i - 1]
    local b = boundary(window)
    if b == nil then
      return redis.error_reply('HLCORRUPT the log does not reach back over the window')
    end
    local u
    if R[3 * i] == 1 then
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
    local limit, window, requests = R[3 * i - 2], R[3 * i - 1], R[3 * i] == 1
    local units = requests and 1 or weight
    if units > 0 and H[6 + i] + units > limit then
      -- The bound does not show room: search the window's exact use.
      local b = boundary(window)
      if b == nil then
        return redis.error_reply('HLCORRUPT the log does not reach back over the window')
      end
      if requests then
        H[6 + i] = seq - b.seq
      else
        H[6 + i] = (cum - b.cum) % MOD
      end
      if H[6 + i] + units > limit then
        -- The oldest admission x whose leaving (with all before it) makes room: for
        -- requests the limit-th newest; for weight found by bisection on the cumulative
        -- sums, so the cost is the log of the window's admissions, whatever the weight.
        local x
        if requests then
          x = seq + 1 - limit
        else
          local lo, hi = b.seq, seq -- lo's leaving is not enough, hi's (the newest) is
          while hi - lo > 1 do
            local mid = math.floor((lo + hi) / 2)
            local e = at_seq(mid)
            if e == nil then
              return redis.error_reply('HLCORRUPT a hole in the log')
            end
            if (cum - e.cum) % MOD + units <= limit then
              hi = mid
            else
              lo = mid
            end
          end
          x = hi
        end
        local e = at_seq(x)
        if e == nil then
          return redis.error_reply('HLCORRUPT a hole in the log')
        end
        local at = e.ts + window
        if at > refusing_at then
          refusing, refusing_at = i - 1, at
        end
      end
    end
  end
  if refusing >= 0 then
    return { 0, refusing, math.max(refusing_at - now, 1) }
  end
end

-- Trim, every 64 admissions: keep the newest member outside the longest window (the base
-- of every window from now on, since t never decreases) and everything after it. The log
-- holds at most the longest window's admissions plus 65, and a trim removes about what 64
-- admissions added (never a long pause of the server for a big log).
if seq >= next_trim then
  local base = boundary(longest)
  if base == nil then
    return redis.error_reply('HLCORRUPT the log does not reach back over the window')
  end
  if base.seq > oldest then
    oldest = oldest + redis.call('ZREMRANGEBYSCORE', log, '-inf', '(' .. fmt(base.ts))
  end
  next_trim = seq + 64
end

seq = seq + 1
cum = (cum + charge) % MOD
-- The score as a number: Redis writes it with 17 significant digits, exact below 2^53.
redis.call('ZADD', log, t, string.format('%016d:%d', seq, cum))
-- Idle longer than the longest window (plus a second), the whole limiter expires: nothing
-- in it counts then. The expiry is pushed back to twice that only when less than that is
-- left, not at every admission.
local ttl_us = tonumber(ttl) * 1000
if exp < now + ttl_us then
  redis.call('PEXPIRE', log, 2 * tonumber(ttl))
  redis.call('PEXPIRE', meta, 2 * tonumber(ttl))
  exp = now + 2 * ttl_us
end
for i = 1, n do
  if R[3 * i] == 1 then
    H[6 + i] = H[6 + i] + 1
  else
    H[6 + i] = H[6 + i] + weight
  end
end
local head = struct.pack(HEAD, seq, cum, t, oldest, exp, next_trim, unpack(H, 7, 6 + n))
if m[1] then
  redis.call('HSET', meta, 'h', head)
else
  redis.call('HSET', meta, 'h', head, 'v', LAYOUT, 'rules', rules_text, 'rates', rates_text)
end
return { 1, t, seq }
