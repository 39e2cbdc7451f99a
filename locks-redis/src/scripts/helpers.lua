-- The helpers at the top of every locks-redis script and of the function library (constant
-- code, no user values); each is documented on `HELPERS` in src/scripts.rs. `MAX_MS` is defined
-- before this text (and, in the library, `KEYS` and `ARGV` as locals each function sets).
local function num(x) return string.format('%.0f', x) end
local function refuse(what, v)
  local got = 'nothing'
  if type(v) == 'string' then got = "'" .. string.sub(v, 1, 32) .. "'" end
  return redis.error_reply('ERR locks: ' .. what .. ', got ' .. got)
end
local function bad_keys(n)
  if #KEYS ~= n then
    return redis.error_reply('ERR locks: expected ' .. n .. ' keys, got ' .. #KEYS)
  end
end
local function bad_token(v)
  if type(v) ~= 'string' or #v == 0 then
    return refuse('the owner token must be a non-empty string', v)
  end
end
local function bad_int(v, what, lo, hi)
  local n = type(v) == 'string' and #v <= 16 and string.find(v, '^[1-9]%d*$') and tonumber(v)
  if not n or n < lo or n > hi then return refuse(what, v) end
end
local function bad_ms(v, what)
  -- Digits without a leading zero, compared with MAX_MS as text (same length: same order):
  -- no number conversion, and the checked text can be sent to Redis as it is.
  local max = MAX_MS_TEXT
  if not (type(v) == 'string' and string.find(v, '^[1-9]%d*$')
      and (#v < #max or (#v == #max and v <= max))) then
    return refuse(what .. ' must be an integer number of ms from 1 to ' .. max
      .. ' without leading zeros', v)
  end
end
local function bad_lease_args(n)
  return bad_keys(n) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
    or bad_ms(ARGV[3], 'the fence counter ttl')
end
local function bad_release_args(n)
  return bad_keys(n) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the retired token ttl')
end
local function clock()
  local t = redis.call('TIME')
  t[1], t[2] = tonumber(t[1]), tonumber(t[2])
  return t
end
local function us(t) return t[1] * 1000000 + t[2] end
local function now_ms(t) return t[1] * 1000 + math.floor(t[2] / 1000) end
local function counter_px(counter_ttl, value, now_us)
  local px = counter_ttl
  if value > now_us then
    local catch_up = math.ceil((value - now_us) / 1000) + 1
    if catch_up > px then px = catch_up end
  end
  if px > MAX_MS then px = MAX_MS end
  return px
end
local function next_fence(counter, counter_ttl, t)
  local now = us(t)
  local fence = now
  local last = tonumber(redis.call('GET', counter))
  if last and last >= fence then fence = last + 1 end
  local px = counter_px(counter_ttl, fence, now)
  local left = redis.call('PTTL', counter)
  if left > px then px = left end
  local f = num(fence)
  redis.call('SET', counter, f, 'PX', num(px))
  return f
end
local function keep_counter(counter, counter_ttl, t, fence)
  local value = tonumber(redis.call('GET', counter))
  local want = value
  fence = tonumber(fence)
  if fence and (not want or want < fence) then want = fence end
  if not want then return end
  local px = counter_px(counter_ttl, want, us(t))
  local left = redis.call('PTTL', counter)
  if want ~= value then
    if left > px then px = left end
    redis.call('SET', counter, num(want), 'PX', num(px))
  elseif left >= 0 and left < px then
    redis.call('PEXPIRE', counter, num(px))
  end
end
local function renew_lease(lease, token, px, counter, counter_ttl, t)
  if redis.call('HGET', lease, 'owner') ~= token then return false end
  redis.call('PEXPIRE', lease, px)
  local fence = redis.call('HGET', lease, 'fence')
  keep_counter(counter, counter_ttl, t, fence)
  return true, fence
end
local function new_lease(lease, token, px, counter, counter_ttl, t)
  local fence = next_fence(counter, counter_ttl, t)
  redis.call('HSET', lease, 'owner', token, 'fence', fence)
  redis.call('PEXPIRE', lease, px)
  return fence
end
local function lease_owner(v)
  local sp = string.find(v, ' ', 1, true)
  return sp and string.sub(v, sp + 1)
end
local function lease_parts(v)
  local sp = string.find(v, ' ', 1, true)
  if not sp then return nil end
  local fence = string.sub(v, 1, sp - 1)
  if not tonumber(fence) then return nil end
  return string.sub(v, sp + 1), fence
end
local function not_a_lease(key)
  return redis.error_reply('ERR locks: ' .. key .. ' holds a value that is not a mutex lease')
end
local function purge(set, fences, now)
  local gone = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. num(now))
  if #gone > 0 then
    for i = 1, #gone do redis.call('HDEL', fences, gone[i]) end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. num(now))
  end
end
local function keep_alive(set, fences, now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', fences)
    return
  end
  -- Until the last member's expiry has passed (it is live through that ms), and at least 2 ms:
  -- Redis deletes a key at once when the clock ticks between computing `PEXPIRE k 1` and
  -- checking it.
  local px = tonumber(last[2]) - now + 1
  if px < 2 then px = 2 end
  px = num(px)
  redis.call('PEXPIRE', set, px)
  redis.call('PEXPIRE', fences, px)
end
local function soonest(set, now)
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  local left = tonumber(first[2]) - now
  if left < 1 then left = 1 end
  return left
end
local function renew(set, fences, token, ttl, counter, counter_ttl, t, now)
  purge(set, fences, now)
  if not redis.call('ZSCORE', set, token) then return nil end
  redis.call('ZADD', set, 'XX', num(now + ttl), token)
  local fence = redis.call('HGET', fences, token)
  if fence then
    keep_counter(counter, counter_ttl, t, fence)
  else
    fence = next_fence(counter, counter_ttl, t)
    redis.call('HSET', fences, token, fence)
  end
  keep_alive(set, fences, now)
  return fence
end
local function add_member(set, fences, token, ttl, counter, counter_ttl, t, now)
  local fence = next_fence(counter, counter_ttl, t)
  -- Fences left by a set that expired a moment before its hash (after the first write, so that
  -- a full server has refused the script by now if it does).
  if redis.call('ZCARD', set) == 0 then redis.call('DEL', fences) end
  redis.call('ZADD', set, num(now + ttl), token)
  redis.call('HSET', fences, token, fence)
  keep_alive(set, fences, now)
  return fence
end
local function members(set, fences, now)
  local out = {}
  local all = redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    out[#out + 1] = all[i]
    out[#out + 1] = tonumber(all[i + 1]) - now
    out[#out + 1] = redis.call('HGET', fences, all[i]) or ''
  end
  return out
end
local function announce(channel)
  redis.pcall('PUBLISH', channel, 'released')
end
local function is_retired(retired, token, now)
  local until_ms = redis.call('ZSCORE', retired, token)
  return until_ms and tonumber(until_ms) >= now
end
local function retire(retired, token, now, for_ms)
  -- The entry first: on a full server it is the script's first write, refused (and skipped).
  local added = redis.pcall('ZADD', retired, num(now + for_ms), token)
  if type(added) == 'table' and added.err then return end
  redis.call('ZREMRANGEBYSCORE', retired, '-inf', '(' .. num(now))
  if redis.call('PTTL', retired) <= for_ms then
    redis.call('PEXPIRE', retired, num(for_ms + 1))
  end
end
local function refuse_retired()
  return redis.error_reply('ERR locks-retired: this owner token was released; an acquire with it is refused')
end
