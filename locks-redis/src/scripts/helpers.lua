-- The helpers at the top of every locks-redis script (constant code, no user values); each is
-- documented on `HELPERS` in src/scripts.rs. `MAX_MS` is defined before this text.
if redis.replicate_commands then redis.replicate_commands() end
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
  if type(v) ~= 'string' or #v > 16 or not string.match(v, '^%d+$') then
    return refuse(what, v)
  end
  local n = tonumber(v)
  if n < lo or n > hi then return refuse(what, v) end
end
local function bad_ms(v, what)
  return bad_int(v, what .. ' must be an integer number of ms from 1 to ' .. num(MAX_MS), 1,
    MAX_MS)
end
local function us(t) return tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local function now_ms(t) return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
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
  redis.call('PEXPIRE', set, num(px))
  redis.call('PEXPIRE', fences, num(px))
end
local function soonest(set, now)
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  local left = tonumber(first[2]) - now
  if left < 1 then left = 1 end
  return left
end
local function renew(set, fences, token, expires, counter, counter_ttl, t, now)
  if not redis.call('ZSCORE', set, token) then return nil end
  redis.call('ZADD', set, 'XX', expires, token)
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
