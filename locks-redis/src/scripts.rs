//! The Lua scripts. Every user value reaches Lua through `KEYS`/`ARGV`, never by string
//! concatenation; every script is atomic and idempotent for the same owner token.
//!
//! They run through [`redis::Script`]: `EVALSHA`, and on `NOSCRIPT` (after `SCRIPT FLUSH` or a
//! restart) `SCRIPT LOAD` and `EVALSHA` again.
//!
//! # A full server (`OOM`)
//!
//! The scripts carry no flags, so they run on any Redis with `EVALSHA`. A server at `maxmemory`
//! (under `noeviction`) stops such a script with `OOM` at its first command that may need
//! memory (`ZADD`, `SET`, `HSET`, ...) unless the script has already written something (then it
//! lets it finish, as it cannot undo): a refused script has written nothing. `PEXPIRE`, `DEL`,
//! `ZREM`, `HDEL` are never refused, so mutex and writer renewals pass anyway; moving a permit's
//! or reader's score (`ZADD XX`) does not.
//!
//! For those, the dispatcher retries an `OOM` refusal once with a variant that starts with the
//! shebang `#!lua flags=allow-oom` (Redis >= 7.0; an older server cannot compile it, and the
//! original `OOM` error stands): [`EXTEND_PERMIT_OOM`], [`EXTEND_RW_OOM`], and, for an acquire
//! of a permit or a read lease, [`REACQUIRE_MEMBER_OOM`], which only renews a member that
//! already exists. None of them adds a member: they only move scores and expiries, so the
//! memory they need on a full server is a few bytes.

use std::sync::LazyLock;

use redis::Script;

/// `KEYS[1]` lease, `KEYS[2]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms,
/// `ARGV[3]` fence counter ttl in ms.
///
/// Returns `{1, fence}` when the caller holds the lease (a new lease, or its own one, whose ttl
/// is reset and whose fence is returned unchanged), `{0, pttl}` when someone else holds it.
///
/// A new fence is `max(server TIME in microseconds, last fence + 1)`: it keeps increasing even
/// after the counter expired or the server lost its data, unless the server clock steps back.
/// Lua numbers are doubles; microsecond timestamps (~1.8e15) are far below 2^53, so the
/// arithmetic is exact, and the fence is returned as a decimal string (`%.0f`), never through
/// Lua's number-to-integer reply conversion.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.replicate_commands then redis.replicate_commands() end
local lease, counter = KEYS[1], KEYS[2]
local token, ttl, counter_ttl = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('HGET', lease, 'owner')
if owner == token then
  redis.call('PEXPIRE', lease, ttl)
  return {1, redis.call('HGET', lease, 'fence')}
end
if owner then
  return {0, redis.call('PTTL', lease)}
end
local now = redis.call('TIME')
local fence = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = redis.call('GET', counter)
if last then
  last = tonumber(last)
  if last and last >= fence then fence = last + 1 end
end
local f = string.format('%.0f', fence)
redis.call('SET', counter, f, 'PX', counter_ttl)
redis.call('HSET', lease, 'owner', token, 'fence', f)
redis.call('PEXPIRE', lease, ttl)
return {1, f}
"#,
    )
});

/// `KEYS[1]` lease, `KEYS[2]` release channel; `ARGV[1]` token.
///
/// Compare-and-delete; on success publishes on the channel (with `pcall`, so a user without
/// channel permissions can still release: waiters then poll). Returns 1, or 0 if not the owner.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"#,
    )
});

/// `KEYS[1]` lease; `ARGV[1]` token, `ARGV[2]` ttl in ms.
///
/// Compare-and-`PEXPIRE`. Returns 1, or 0 if not the owner.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// `KEYS[1]` lease.
///
/// Returns nil when there is no lease, else `{owner, fence, pttl}`, read atomically.
pub(crate) static INSPECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if not v[1] then return false end
return {v[1], v[2], redis.call('PTTL', KEYS[1])}
"#,
    )
});

/// `KEYS[1..n-1]` every name of one lock kind (the mutex lease; or the semaphore's set and
/// fences; or the read-write lock's readers, fences, writer and waiting mark), `KEYS[n]` the
/// release channel. The fence counter is not among them: fences keep increasing.
///
/// Deletes them whoever holds them and publishes if anything was there. Returns 1 or 0.
pub(crate) static FORCE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local deleted = 0
for i = 1, #KEYS - 1 do
  deleted = deleted + redis.call('DEL', KEYS[i])
end
if deleted > 0 then
  redis.pcall('PUBLISH', KEYS[#KEYS], 'released')
  return 1
end
return 0
"#,
    )
});

// ---------------------------------------------------------------------------------------------
// Semaphores and read-write locks.
//
// Permits and readers live in a sorted set (member = owner token, score = expiry in ms by the
// server's `TIME`, never the client clock) with a hash of their fences beside it. Every script
// that touches such a set first drops the expired members (and their fences), and every script
// that changes it sets the set's and the hash's `PEXPIRE` to the longest remaining member ttl,
// so an abandoned set disappears by itself.

/// Lua helpers shared by the semaphore and read-write scripts (constant code, no user values).
///
/// - `now_ms(t)`: the server time of a `TIME` reply in whole milliseconds.
/// - `num(x)`: a number as an exact decimal string (Lua's own conversion keeps 14 digits).
/// - `purge(set, fences, now)`: drop members whose expiry is `<= now`, and their fences.
/// - `keep_alive(set, fences, now)`: `PEXPIRE` both keys to the latest member expiry; an empty
///   set leaves no fence hash behind.
/// - `soonest(set, now)`: ms until the first member expires, or `nil` for an empty set.
/// - `next_fence(counter, counter_ttl, t)`: `max(TIME in µs, counter + 1)`, stored in the
///   counter (shared with the mutex lease) with a long expiry; returned as a decimal string.
/// - `renew(set, fences, token, expires, counter, counter_ttl, t, now)`: if `token` is a
///   member, move its expiry to `expires` and return its fence (a new one if it had none);
///   else `nil`.
/// - `members(set, fences, now)`: `{token, remaining ms, fence or ''}` for every member, flat.
const HELPERS: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local function num(x) return string.format('%.0f', x) end
local function now_ms(t) return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function purge(set, fences, now)
  local gone = redis.call('ZRANGEBYSCORE', set, '-inf', num(now))
  if #gone > 0 then
    for i = 1, #gone do redis.call('HDEL', fences, gone[i]) end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', num(now))
  end
end
local function keep_alive(set, fences, now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', fences)
    return
  end
  local px = tonumber(last[2]) - now
  if px < 1 then px = 1 end
  redis.call('PEXPIRE', set, num(px))
  redis.call('PEXPIRE', fences, num(px))
end
local function soonest(set, now)
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  return tonumber(first[2]) - now
end
local function next_fence(counter, counter_ttl, t)
  local fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = redis.call('GET', counter)
  if last then
    last = tonumber(last)
    if last and last >= fence then fence = last + 1 end
  end
  local f = num(fence)
  redis.call('SET', counter, f, 'PX', counter_ttl)
  return f
end
local function renew(set, fences, token, expires, counter, counter_ttl, t, now)
  if not redis.call('ZSCORE', set, token) then return nil end
  redis.call('ZADD', set, 'XX', expires, token)
  local fence = redis.call('HGET', fences, token)
  if not fence then
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
"#;

fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{HELPERS}{body}"))
}

/// The script with the flag `allow-oom`: a server at `maxmemory` runs all of it (Redis >= 7.0).
fn allow_oom(body: &str) -> Script {
    Script::new(&format!("#!lua flags=allow-oom{HELPERS}{body}"))
}

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` fence counter; `ARGV[1]` token,
/// `ARGV[2]` ttl in ms, `ARGV[3]` permit count, `ARGV[4]` fence counter ttl in ms.
///
/// Expired permits are reclaimed first. Returns `{1, fence}` when the caller holds a permit
/// (a new one, or its own, whose expiry is reset and whose fence is returned unchanged),
/// `{0, ms until the first permit expires}` when all are taken (`-1`: unknown).
pub(crate) static ACQUIRE_PERMIT: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local set, fences, counter = KEYS[1], KEYS[2], KEYS[3]
local token, ttl, permits, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = now_ms(t)
purge(set, fences, now)
local expires = num(now + ttl)
local own = renew(set, fences, token, expires, counter, counter_ttl, t, now)
if own then return {1, own} end
if redis.call('ZCARD', set) >= permits then
  return {0, soonest(set, now) or -1}
end
local fence = next_fence(counter, counter_ttl, t)
redis.call('ZADD', set, expires, token)
redis.call('HSET', fences, token, fence)
keep_alive(set, fences, now)
return {1, fence}
"#,
    )
});

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` release channel; `ARGV[1]` token.
///
/// Removes the caller's live permit and publishes on the release channel. Returns 1, or 0 if
/// the token holds no live permit.
pub(crate) static RELEASE_PERMIT: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local set, fences, channel, token = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local now = now_ms(redis.call('TIME'))
purge(set, fences, now)
if redis.call('ZREM', set, token) == 1 then
  redis.call('HDEL', fences, token)
  keep_alive(set, fences, now)
  redis.pcall('PUBLISH', channel, 'released')
  return 1
end
return 0
"#,
    )
});

/// `KEYS[1]` permits, `KEYS[2]` permit fences; `ARGV[1]` token, `ARGV[2]` ttl in ms.
///
/// Resets the expiry of the caller's live permit. Returns 1, or 0 if it holds none.
pub(crate) static EXTEND_PERMIT: LazyLock<Script> =
    LazyLock::new(|| with_helpers(EXTEND_PERMIT_BODY));

/// [`EXTEND_PERMIT`] with the flag `allow-oom`, for a server at `maxmemory`.
pub(crate) static EXTEND_PERMIT_OOM: LazyLock<Script> =
    LazyLock::new(|| allow_oom(EXTEND_PERMIT_BODY));

const EXTEND_PERMIT_BODY: &str = r#"
local set, fences, token, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local now = now_ms(redis.call('TIME'))
purge(set, fences, now)
if redis.call('ZSCORE', set, token) then
  redis.call('ZADD', set, 'XX', num(now + ttl), token)
  keep_alive(set, fences, now)
  return 1
end
return 0
"#;

/// `KEYS[1]` permits, `KEYS[2]` permit fences.
///
/// Returns the live permits, flat: `{token, remaining ms, fence, ...}`.
pub(crate) static PERMIT_HOLDERS: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local now = now_ms(redis.call('TIME'))
purge(KEYS[1], KEYS[2], now)
return members(KEYS[1], KEYS[2], now)
"#,
    )
});

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark,
/// `KEYS[5]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl.
///
/// Returns `{1, fence}` for a (new or own) read lease, `{0, pttl}` while a writer holds the
/// lock or waits for it (its `PTTL`; `-1`: unknown).
pub(crate) static ACQUIRE_READ: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local readers, fences, writer, waiting, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = now_ms(t)
purge(readers, fences, now)
local expires = num(now + ttl)
local own = renew(readers, fences, token, expires, counter, counter_ttl, t, now)
if own then return {1, own} end
if redis.call('EXISTS', writer) == 1 then
  return {0, redis.call('PTTL', writer)}
end
if redis.call('EXISTS', waiting) == 1 then
  return {0, redis.call('PTTL', waiting)}
end
local fence = next_fence(counter, counter_ttl, t)
redis.call('ZADD', readers, expires, token)
redis.call('HSET', fences, token, fence)
keep_alive(readers, fences, now)
return {1, fence}
"#,
    )
});

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark,
/// `KEYS[5]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl.
///
/// Own write lease → ttl reset, same fence. Another writer → `{0, its pttl}`. Live readers (or
/// another writer's waiting mark) → `{0, ms until the first reader or that mark expires}`,
/// and, unless another writer waits, the caller's waiting mark is set (or refreshed) for `ttl`.
/// Otherwise the mark is cleared and the write lease written with a new fence: `{1, fence}`.
pub(crate) static ACQUIRE_WRITE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local readers, fences, writer, waiting, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = now_ms(t)
purge(readers, fences, now)
local owner = redis.call('HGET', writer, 'owner')
if owner == token then
  redis.call('PEXPIRE', writer, ttl)
  return {1, redis.call('HGET', writer, 'fence')}
end
if owner then
  return {0, redis.call('PTTL', writer)}
end
local other = nil
local mark = redis.call('GET', waiting)
if mark and mark ~= token then
  other = redis.call('PTTL', waiting)
  if other < 0 then other = nil end
end
local first = soonest(readers, now)
if first or (mark and mark ~= token) then
  if not (mark and mark ~= token) then
    redis.call('SET', waiting, token, 'PX', ttl)
  end
  local remaining = first
  if other and (not remaining or other < remaining) then remaining = other end
  return {0, remaining or -1}
end
-- Only when there is a mark: a write that frees memory must not come first, or a server at
-- maxmemory would let the script half-run before refusing the first write that needs memory.
if mark then redis.call('DEL', waiting) end
local fence = next_fence(counter, counter_ttl, t)
redis.call('HSET', writer, 'owner', token, 'fence', fence)
redis.call('PEXPIRE', writer, ttl)
return {1, fence}
"#,
    )
});

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark,
/// `KEYS[5]` release channel; `ARGV[1]` token.
///
/// Removes the caller's read or write lease and its waiting mark, and publishes when anything
/// was removed. Returns 1 if a lease was removed, else 0 (a removed mark alone returns 0).
pub(crate) static RELEASE_RW: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local readers, fences, writer, waiting, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token = ARGV[1]
local now = now_ms(redis.call('TIME'))
purge(readers, fences, now)
local had = 0
if redis.call('ZREM', readers, token) == 1 then
  redis.call('HDEL', fences, token)
  keep_alive(readers, fences, now)
  had = 1
end
if redis.call('HGET', writer, 'owner') == token then
  redis.call('DEL', writer)
  had = 1
end
local was_waiting = redis.call('GET', waiting) == token
if was_waiting then redis.call('DEL', waiting) end
if had == 1 or was_waiting then
  redis.pcall('PUBLISH', channel, 'released')
end
return had
"#,
    )
});

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer; `ARGV[1]` token, `ARGV[2]`
/// ttl in ms.
///
/// Resets the expiry of the caller's read or write lease. Returns 1, or 0 if it holds neither.
pub(crate) static EXTEND_RW: LazyLock<Script> = LazyLock::new(|| with_helpers(EXTEND_RW_BODY));

/// [`EXTEND_RW`] with the flag `allow-oom`, for a server at `maxmemory`.
pub(crate) static EXTEND_RW_OOM: LazyLock<Script> = LazyLock::new(|| allow_oom(EXTEND_RW_BODY));

const EXTEND_RW_BODY: &str = r#"
local readers, fences, writer, token, ttl = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local now = now_ms(redis.call('TIME'))
purge(readers, fences, now)
if redis.call('ZSCORE', readers, token) then
  redis.call('ZADD', readers, 'XX', num(now + tonumber(ttl)), token)
  keep_alive(readers, fences, now)
  return 1
end
if redis.call('HGET', writer, 'owner') == token then
  redis.call('PEXPIRE', writer, ttl)
  return 1
end
return 0
"#;

/// The fallback of [`ACQUIRE_PERMIT`] and [`ACQUIRE_READ`] on a server at `maxmemory` (flag
/// `allow-oom`), with their keys and arguments: `KEYS[1]` the set (permits or readers),
/// `KEYS[2]` its fences, `KEYS[#KEYS]` the fence counter; `ARGV[1]` token, `ARGV[2]` ttl in
/// ms, `ARGV[#ARGV]` fence counter ttl in ms.
///
/// Renews the caller's own live member exactly as the acquire script would (`{1, fence}`), and
/// otherwise writes nothing and returns nil: a new member is never added on a full server.
pub(crate) static REACQUIRE_MEMBER_OOM: LazyLock<Script> = LazyLock::new(|| {
    allow_oom(
        r#"
local set, fences, counter = KEYS[1], KEYS[2], KEYS[#KEYS]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[#ARGV]
local t = redis.call('TIME')
local now = now_ms(t)
purge(set, fences, now)
local own = renew(set, fences, token, num(now + ttl), counter, counter_ttl, t, now)
if own then return {1, own} end
return false
"#,
    )
});

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark.
///
/// Returns `{readers, writer, waiting}`: the live readers flat as `{token, remaining ms,
/// fence, ...}`, the writer as `{owner, fence, pttl}` or `{}`, and 1 or 0 for the mark.
pub(crate) static INSPECT_RW: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local readers, fences, writer, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms(redis.call('TIME'))
purge(readers, fences, now)
local w = {}
local v = redis.call('HMGET', writer, 'owner', 'fence')
if v[1] then w = {v[1], v[2] or '', redis.call('PTTL', writer)} end
return {members(readers, fences, now), w, redis.call('EXISTS', waiting)}
"#,
    )
});
