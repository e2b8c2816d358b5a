-- benches/redis.rs: a frozen copy of src/redis/script.lua at key layout 2, the "before"
-- this bench measures against. Not used by the library.
-- hostlimit on Redis: the whole protocol in one script. Key layout version 2.
--
-- KEYS[1]  the log: a sorted set, one member per admission (never per unit of weight).
--          score  = recorded timestamp, microseconds of the server's clock
--          member = "%016d:%d" (sequence number, zero-padded so that members with one score
--                   sort by sequence; cumulative weight of admissions 1..seq, mod 2^32)
-- KEYS[2]  the head and the configuration: a hash.
--          v = layout version, rules = the rates in canonical form (compared),
--          rates = the rates as their owner wrote them (for error messages),
--          h = the head, one field "seq:cum:ts:first:exp:trim:bound_1:...:bound_n":
--            seq, cum, ts = the newest admission (0, 0, 0 before the first),
--            first = the sequence number of the oldest member (the trim moves it),
--            exp = when (server µs) the keys' expiry must next be pushed back,
--            trim = the sequence number from which the next admission trims,
--            bound_i = at least what rate i's window holds, now and from now on (the
--              exact use when it was last searched, plus what was admitted since): while
--              bound_i + units fits, rate i admits without searching the log,
--          denied:<i>, never_fits, timed_out = counters (statistics)
-- Both keys carry the limiter's name in a hash tag, hostlimit:{name}:..., so that they live
-- in one Cluster slot.
--
-- ARGV: mode (acquire | usage | check | count | reset), layout, rules, rates, ttl_ms, now_us
-- ('' = the server's clock), weight (capped at 2^32), charge (weight mod 2^32), then the
-- count of rates and per rate: limit, window_us, requests (1) or weight (0). Mode count
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

if redis.replicate_commands then
  -- Redis 3.2 to 4: replicate the effects (TIME is not deterministic). A no-op since 5.
  redis.replicate_commands()
end

local LAYOUT = '2'
local MOD = 4294967296
local log, meta = KEYS[1], KEYS[2]
local mode = ARGV[1]

local function fmt(n)
  -- Numbers go to Redis as exact integer text: Lua's own conversion keeps only 14 digits.
  return string.format('%.0f', n)
end

local function corrupt(why)
  return redis.error_reply('HLCORRUPT ' .. why)
end

local function integer(text)
  local n = tonumber(text)
  if n == nil or n < 0 or n ~= math.floor(n) or n > 9007199254740992 then
    return nil
  end
  return n
end

if ARGV[2] ~= LAYOUT then
  return redis.error_reply('HLLAYOUT script ' .. LAYOUT .. ' called with ' .. tostring(ARGV[2]))
end
local rules_text, rates_text = ARGV[3], ARGV[4]
local ttl = ARGV[5]

local m = redis.call('HMGET', meta, 'v', 'rules', 'h')
local seq, cum, last, oldest, exp, next_trim = 0, 0, 0, 1, 0, 0
local n = tonumber(ARGV[9])
local bounds = {}
for i = 1, n do
  bounds[i] = 0
end
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
if m[1] then
  if m[3] then
    -- Digits only (so integers, not negative), 6 + n of them, none past 2^53.
    local a, b, c, d, e, f, rest = string.match(m[3], '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)(.*)$')
    local count, length = 0, 0
    if rest then
      for word in string.gmatch(rest, ':(%d+)') do
        count = count + 1
        length = length + #word + 1
        bounds[count] = integer(word)
      end
    end
    if count ~= n or length ~= #rest then
      return corrupt('the head is not ' .. (6 + n) .. ' integers')
    end
    seq, cum, last, oldest, exp, next_trim = integer(a), integer(b), integer(c), integer(d), integer(e), integer(f)
    for i = 1, n do
      if bounds[i] == nil then
        seq = nil
      end
    end
    if seq == nil or cum == nil or last == nil or oldest == nil or exp == nil or next_trim == nil
      or cum >= MOD or oldest < 1 or oldest > seq then
      return corrupt('the head is not ' .. (6 + n) .. ' integers in range')
    end
  end
elseif redis.call('EXISTS', log) == 1 then
  return corrupt('a log without its head')
end

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

local now = integer(ARGV[6])
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
-- The recorded timestamp: never before the last one, and never 0 (before every admission).
local t = math.max(now, last, 1)

local rules = {}
local longest = 0
for i = 1, n do
  local b = 9 + (i - 1) * 3
  local rule = { limit = tonumber(ARGV[b + 1]), window = tonumber(ARGV[b + 2]), requests = ARGV[b + 3] == '1' }
  rules[i] = rule
  longest = math.max(longest, rule.window)
end

local function parse(member, score)
  local s, c = string.match(member or '', '^(%d+):(%d+)$')
  local e = { seq = integer(s), cum = integer(c), ts = integer(score) }
  if e.seq == nil or e.cum == nil or e.ts == nil or e.cum >= MOD or e.seq > seq or e.ts > last then
    return nil
  end
  return e
end

-- The member with sequence number s: ranks start at the oldest (`first` in the head), and
-- sequence numbers are consecutive in the log.
local function at_seq(s)
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

-- The newest admission outside a window of `w` ending at t (ts <= t - w); sequence 0 (the
-- start, before the first admission) if there is none, which holds only while nothing was
-- trimmed: a trim keeps the newest member outside the longest window.
local START = { seq = 0, cum = 0, ts = 0 }
local function boundary(w)
  local r = redis.call('ZREVRANGEBYSCORE', log, fmt(t - w), '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #r == 0 then
    if oldest ~= 1 then
      return nil
    end
    return START
  end
  return parse(r[1], r[2])
end

local function used(rule, b)
  if rule.requests then
    return seq - b.seq
  end
  return (cum - b.cum) % MOD
end

if mode == 'usage' then
  local reply = { t }
  for i, rule in ipairs(rules) do
    local b = boundary(rule.window)
    if b == nil then
      return corrupt('the log does not reach back over the window')
    end
    local u = used(rule, b)
    local next_free = -1
    if seq > b.seq then
      local oldest = at_seq(b.seq + 1)
      if oldest == nil then
        return corrupt('a hole in the log')
      end
      next_free = oldest.ts + rule.window
    end
    reply[2 * i] = u
    reply[2 * i + 1] = next_free
  end
  return reply
end

if mode ~= 'acquire' then
  return redis.error_reply('HLCORRUPT unknown mode ' .. tostring(mode))
end

local weight, charge = tonumber(ARGV[7]), tonumber(ARGV[8])
local anything = false
for i, rule in ipairs(rules) do
  local units = rule.requests and 1 or weight
  if units > rule.limit then
    return { 3, i - 1 }
  end
  anything = anything or units > 0
end
if not anything then
  return { 2 }
end

local refusing, refusing_at = -1, -1
for i, rule in ipairs(rules) do
  local units = rule.requests and 1 or weight
  if units > 0 and bounds[i] + units > rule.limit then
    -- The bound does not show room: search the window's exact use.
    local b = boundary(rule.window)
    if b == nil then
      return corrupt('the log does not reach back over the window')
    end
    bounds[i] = used(rule, b)
    if bounds[i] + units > rule.limit then
      -- The oldest admission x whose leaving (with all before it) makes room: for requests
      -- the limit-th newest; for weight found by bisection on the cumulative sums, so the
      -- cost is the log of the window's admissions, whatever the weight.
      local x
      if rule.requests then
        x = seq + 1 - rule.limit
      else
        local lo, hi = b.seq, seq -- lo's leaving is not enough, hi's (the newest) is
        while hi - lo > 1 do
          local mid = math.floor((lo + hi) / 2)
          local e = at_seq(mid)
          if e == nil then
            return corrupt('a hole in the log')
          end
          if (cum - e.cum) % MOD + units <= rule.limit then
            hi = mid
          else
            lo = mid
          end
        end
        x = hi
      end
      local e = at_seq(x)
      if e == nil then
        return corrupt('a hole in the log')
      end
      local at = e.ts + rule.window
      if at > refusing_at then
        refusing, refusing_at = i - 1, at
      end
    end
  end
end
if refusing >= 0 then
  return { 0, refusing, math.max(refusing_at - now, 1) }
end

-- Trim, every 64 admissions: keep the newest member outside the longest window (the base
-- of every window from now on, since t never decreases) and everything after it. The log
-- holds at most the longest window's admissions plus 65, and a trim removes about what 64
-- admissions added (never a long pause of the server for a big log).
if seq >= next_trim then
  local base = boundary(longest)
  if base == nil then
    return corrupt('the log does not reach back over the window')
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
local head = { seq, cum, t, oldest, exp, next_trim }
for i, rule in ipairs(rules) do
  head[6 + i] = bounds[i] + (rule.requests and 1 or weight)
end
-- One format for the whole head (each string op costs about as much as a command here).
head = string.format('%.0f' .. string.rep(':%.0f', 5 + n), unpack(head))
if m[1] then
  redis.call('HSET', meta, 'h', head)
else
  redis.call('HSET', meta, 'h', head, 'v', LAYOUT, 'rules', rules_text, 'rates', rates_text)
end
return { 1, t, seq }
