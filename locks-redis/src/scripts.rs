//! The Lua scripts. Every user value reaches Lua through `KEYS`/`ARGV`, never by string
//! concatenation; every script is atomic and idempotent for the same owner token.
//!
//! They run through [`redis::Script`]: `EVALSHA`, and on `NOSCRIPT` (after `SCRIPT FLUSH` or a
//! restart) `SCRIPT LOAD` and `EVALSHA` again.
//!
//! # Arguments are checked first
//!
//! Every script starts with the same checks, before its first write: the number of `KEYS`, a
//! non-empty owner token, every ttl (lease and fence counter) a decimal integer of
//! milliseconds from 1 to [`MAX_PX_MS`] (100 years), a permit count a decimal integer from 1
//! to `u32::MAX`. Anything else (`0`, `-5`, `1.5`, `abc`, `inf`, an empty or missing value, a
//! huge number) is answered with an error reply `ERR locks: <what is wrong>, got '<value>'` and
//! nothing is written: a bad ttl never leaves a lease without expiry, and never gets a false
//! success (`PEXPIRE key 0` would delete the lease and say 1). The scripts then only send the
//! numbers they parsed, re-formatted as integers.
//!
//! # The fence counter
//!
//! A new fence is `max(server TIME in µs, counter + 1)`, stored back in the counter. Its expiry
//! is set by every acquire and every renewal of any lease under the name to at least the fence
//! counter ttl the dispatcher sends (`max(k × ttl, floor)`, see
//! [`FenceCounterTtl`](crate::FenceCounterTtl)), and, when the counter is ahead of `TIME` (the
//! clock stepped back), at least until `TIME` has passed it. It is never shortened. A renewal
//! that finds the counter gone (or below the lease's fence) writes the lease's fence back.
//!
//! # A full server (`OOM`)
//!
//! The scripts carry no flags, so they run on any Redis with `EVALSHA`. A server at `maxmemory`
//! (under `noeviction`) stops such a script with `OOM` at its first command that may need
//! memory (`ZADD`, `SET`, `HSET`, ...) unless the script has already written something (then it
//! lets it finish, as it cannot undo): a refused script has written nothing. `PEXPIRE`, `DEL`,
//! `ZREM`, `HDEL` are never refused, so mutex and writer renewals pass anyway (they `PEXPIRE`
//! the lease before they touch the fence counter); moving a permit's or reader's score
//! (`ZADD XX`) does not.
//!
//! For those, the dispatcher retries an `OOM` refusal once with a variant that starts with the
//! shebang `#!lua flags=allow-oom` (Redis >= 7.0; an older server cannot compile it, and the
//! original `OOM` error stands): [`EXTEND_PERMIT_OOM`], [`EXTEND_RW_OOM`], and, for an acquire
//! of a permit or a read lease, [`REACQUIRE_MEMBER_OOM`], which only renews a member that
//! already exists. None of them adds a member: they only move scores and expiries, so the
//! memory they need on a full server is a few bytes.

use std::sync::LazyLock;

use redis::Script;

use crate::counter::MAX_PX_MS;

/// Lua helpers shared by every script (constant code, no user values; `scripts/helpers.lua`),
/// after `MAX_MS` (the largest ttl in ms, [`MAX_PX_MS`]).
///
/// Argument checks, each `nil` for a good argument, else the error reply to return:
/// - `bad_keys(n)`: `#KEYS` is not `n`.
/// - `bad_token(v)`: not a non-empty string.
/// - `bad_int(v, what, lo, hi)`: not a decimal integer (at most 16 digits) in `[lo, hi]`.
/// - `bad_ms(v, what)`: not a ttl in ms, `[1, MAX_MS]`.
///
/// Time and numbers:
/// - `num(x)`: a number as an exact decimal string (Lua's own conversion keeps 14 digits).
/// - `us(t)` / `now_ms(t)`: the server time of a `TIME` reply in µs / in whole ms (rounded
///   down, as Redis's own expiry clock).
///
/// The fence counter:
/// - `counter_px(counter_ttl, value, now_us)`: how long a counter holding `value` must live:
///   `counter_ttl`, or until `TIME` passes `value` if that is later, at most `MAX_MS`.
/// - `next_fence(counter, counter_ttl, t)`: `max(TIME in µs, counter + 1)`, stored in the
///   counter (shared by every kind of lease) with that expiry or the one it has, if longer;
///   returned as a decimal string.
/// - `keep_counter(counter, counter_ttl, t, fence)`: a renewal of a lease whose fence is
///   `fence`: the counter is raised to `fence` if it is missing or below it, and its expiry
///   lengthened to `counter_px` (never shortened).
///
/// Sorted sets of permits and readers (score = expiry in ms; a member is live while `TIME` in
/// whole ms is `<= score`, exactly as Redis expires a key with `PX`):
/// - `purge(set, fences, now)`: drop members whose expiry is `< now`, and their fences.
/// - `keep_alive(set, fences, now)`: `PEXPIRE` both keys (the set first) until the latest
///   member has expired, at least 2 ms (`PEXPIRE k 1` may delete `k` at once: Redis 7.0 reads
///   its clock twice); an empty set leaves no fence hash behind.
/// - `soonest(set, now)`: ms until the first member expires (at least 1), or `nil` when empty.
/// - `renew(set, fences, token, expires, counter, counter_ttl, t, now)`: if `token` is a
///   member, move its expiry to `expires`, keep the counter, and return its fence (a new one if
///   it had none); else `nil`.
/// - `members(set, fences, now)`: `{token, remaining ms, fence or ''}` for every member, flat.
const HELPERS: &str = include_str!("scripts/helpers.lua");

/// The source of a script: an optional first line (a shebang), `MAX_MS`, the helpers, `body`.
fn source(first_line: &str, body: &str) -> String {
    format!("{first_line}\nlocal MAX_MS = {MAX_PX_MS}\n{HELPERS}{body}")
}

fn with_helpers(body: &str) -> Script {
    Script::new(&source("", body))
}

/// The script with the flag `allow-oom`: a server at `maxmemory` runs all of it (Redis >= 7.0).
fn allow_oom(body: &str) -> Script {
    Script::new(&source("#!lua flags=allow-oom", body))
}

/// `KEYS[1]` lease, `KEYS[2]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms,
/// `ARGV[3]` fence counter ttl in ms.
///
/// Returns `{1, fence}` when the caller holds the lease (a new lease, or its own one, whose ttl
/// is reset, counter kept, and whose fence is returned unchanged), `{0, pttl}` when someone
/// else holds it.
///
/// A new fence is `max(server TIME in microseconds, last fence + 1)`: it keeps increasing even
/// after the counter expired or the server lost its data, unless the server clock steps back.
/// Lua numbers are doubles; microsecond timestamps (~1.8e15) are far below 2^53, so the
/// arithmetic is exact, and the fence is returned as a decimal string (`%.0f`), never through
/// Lua's number-to-integer reply conversion.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(2) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[3], 'the fence counter ttl')
if bad then return bad end
local lease, counter = KEYS[1], KEYS[2]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local owner = redis.call('HGET', lease, 'owner')
if owner == token then
  redis.call('PEXPIRE', lease, num(ttl))
  local fence = redis.call('HGET', lease, 'fence')
  keep_counter(counter, counter_ttl, t, fence)
  return {1, fence}
end
if owner then
  return {0, redis.call('PTTL', lease)}
end
local f = next_fence(counter, counter_ttl, t)
redis.call('HSET', lease, 'owner', token, 'fence', f)
redis.call('PEXPIRE', lease, num(ttl))
return {1, f}
"#,
    )
});

/// `KEYS[1]` lease, `KEYS[2]` release channel; `ARGV[1]` token.
///
/// Compare-and-delete; on success publishes on the channel (with `pcall`, so a user without
/// channel permissions can still release: waiters then poll). Returns 1, or 0 if not the owner.
/// The fence counter is left to expire by itself.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(2) or bad_token(ARGV[1])
if bad then return bad end
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"#,
    )
});

/// `KEYS[1]` lease, `KEYS[2]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]`
/// fence counter ttl in ms.
///
/// Compare-and-`PEXPIRE`, then keeps the fence counter. Returns 1, or 0 if not the owner.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(2) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[3], 'the fence counter ttl')
if bad then return bad end
local lease, counter = KEYS[1], KEYS[2]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('HGET', lease, 'owner') ~= token then return 0 end
redis.call('PEXPIRE', lease, num(ttl))
keep_counter(counter, counter_ttl, redis.call('TIME'), redis.call('HGET', lease, 'fence'))
return 1
"#,
    )
});

/// `KEYS[1]` lease.
///
/// Returns nil when there is no lease, else `{owner, fence, pttl}`, read atomically.
pub(crate) static INSPECT: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(1)
if bad then return bad end
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
    with_helpers(
        r#"
if #KEYS < 2 then return bad_keys(2) end
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
// server's `TIME`, never the client clock: the member is live while `TIME` in whole ms is
// `<= score`, like a key with `PX`) with a hash of their fences beside it. Every script that
// touches such a set first drops the expired members (and their fences), and every script that
// changes it sets the set's and the hash's `PEXPIRE` to the longest remaining member ttl, so an
// abandoned set disappears by itself.

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` fence counter; `ARGV[1]` token,
/// `ARGV[2]` ttl in ms, `ARGV[3]` permit count, `ARGV[4]` fence counter ttl in ms.
///
/// Expired permits are reclaimed first. Returns `{1, fence}` when the caller holds a permit
/// (a new one, or its own, whose expiry is reset and whose fence is returned unchanged),
/// `{0, ms until the first permit expires}` when all are taken (`-1`: unknown).
pub(crate) static ACQUIRE_PERMIT: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(3) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_int(ARGV[3], 'the permit count must be an integer from 1 to 4294967295', 1, 4294967295)
  or bad_ms(ARGV[4], 'the fence counter ttl')
if bad then return bad end
local set, fences, counter = KEYS[1], KEYS[2], KEYS[3]
local token, ttl, permits = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local counter_ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = now_ms(t)
purge(set, fences, now)
local expires = num(now + ttl)
local own = renew(set, fences, token, expires, counter, counter_ttl, t, now)
if own then return {1, own} end
local live = redis.call('ZCARD', set)
if live >= permits then
  return {0, soonest(set, now) or -1}
end
local fence = next_fence(counter, counter_ttl, t)
-- Fences left by a set that expired a moment before its hash (after the first write, so that
-- a full server has refused the script by now if it does).
if live == 0 then redis.call('DEL', fences) end
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
local bad = bad_keys(3) or bad_token(ARGV[1])
if bad then return bad end
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

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` fence counter; `ARGV[1]` token,
/// `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl in ms.
///
/// Resets the expiry of the caller's live permit and keeps the fence counter. Returns 1, or 0
/// if it holds none.
pub(crate) static EXTEND_PERMIT: LazyLock<Script> =
    LazyLock::new(|| with_helpers(EXTEND_PERMIT_BODY));

/// [`EXTEND_PERMIT`] with the flag `allow-oom`, for a server at `maxmemory`.
pub(crate) static EXTEND_PERMIT_OOM: LazyLock<Script> =
    LazyLock::new(|| allow_oom(EXTEND_PERMIT_BODY));

const EXTEND_PERMIT_BODY: &str = r#"
local bad = bad_keys(3) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[3], 'the fence counter ttl')
if bad then return bad end
local set, fences, counter = KEYS[1], KEYS[2], KEYS[3]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = now_ms(t)
purge(set, fences, now)
if renew(set, fences, token, num(now + ttl), counter, counter_ttl, t, now) then return 1 end
return 0
"#;

/// `KEYS[1]` permits, `KEYS[2]` permit fences.
///
/// Returns the live permits, flat: `{token, remaining ms, fence, ...}`.
pub(crate) static PERMIT_HOLDERS: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(2)
if bad then return bad end
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
local bad = bad_keys(5) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[3], 'the fence counter ttl')
if bad then return bad end
local readers, fences, writer, waiting, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
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
if redis.call('ZCARD', readers) == 0 then redis.call('DEL', fences) end
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
/// Own write lease → ttl reset, counter kept, same fence. Another writer → `{0, its pttl}`.
/// Live readers (or another writer's waiting mark) → `{0, ms until the first reader or that
/// mark expires}`, and, unless another writer waits, the caller's waiting mark is set (or
/// refreshed) for `ttl`. Otherwise the mark is cleared and the write lease written with a new
/// fence: `{1, fence}`.
pub(crate) static ACQUIRE_WRITE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r#"
local bad = bad_keys(5) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[3], 'the fence counter ttl')
if bad then return bad end
local readers, fences, writer, waiting, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], num(tonumber(ARGV[2])), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = now_ms(t)
purge(readers, fences, now)
local owner = redis.call('HGET', writer, 'owner')
if owner == token then
  redis.call('PEXPIRE', writer, ttl)
  local fence = redis.call('HGET', writer, 'fence')
  keep_counter(counter, counter_ttl, t, fence)
  return {1, fence}
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
local bad = bad_keys(5) or bad_token(ARGV[1])
if bad then return bad end
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

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` fence counter;
/// `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl in ms.
///
/// Resets the expiry of the caller's read or write lease and keeps the fence counter. Returns
/// 1, or 0 if it holds neither.
pub(crate) static EXTEND_RW: LazyLock<Script> = LazyLock::new(|| with_helpers(EXTEND_RW_BODY));

/// [`EXTEND_RW`] with the flag `allow-oom`, for a server at `maxmemory`.
pub(crate) static EXTEND_RW_OOM: LazyLock<Script> = LazyLock::new(|| allow_oom(EXTEND_RW_BODY));

const EXTEND_RW_BODY: &str = r#"
local bad = bad_keys(4) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[3], 'the fence counter ttl')
if bad then return bad end
local readers, fences, writer, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = now_ms(t)
purge(readers, fences, now)
if renew(readers, fences, token, num(now + ttl), counter, counter_ttl, t, now) then return 1 end
if redis.call('HGET', writer, 'owner') == token then
  redis.call('PEXPIRE', writer, num(ttl))
  keep_counter(counter, counter_ttl, t, redis.call('HGET', writer, 'fence'))
  return 1
end
return 0
"#;

/// The fallback of [`ACQUIRE_PERMIT`] and [`ACQUIRE_READ`] on a server at `maxmemory` (flag
/// `allow-oom`), with their keys and arguments: `KEYS[1]` the set (permits or readers),
/// `KEYS[2]` its fences, `KEYS[#KEYS]` the fence counter (3 keys for permits, 5 for readers);
/// `ARGV[1]` token, `ARGV[2]` ttl in ms, for permits `ARGV[3]` the count, `ARGV[#ARGV]` fence
/// counter ttl in ms.
///
/// Renews the caller's own live member exactly as the acquire script would (`{1, fence}`), and
/// otherwise writes nothing and returns nil: a new member is never added on a full server.
pub(crate) static REACQUIRE_MEMBER_OOM: LazyLock<Script> = LazyLock::new(|| {
    allow_oom(
        r#"
if #KEYS ~= 3 and #KEYS ~= 5 then return bad_keys(3) end
-- A permit (3 keys) has its count among the arguments.
local nargs = 3
if #KEYS == 3 then nargs = 4 end
if #ARGV ~= nargs then
  return redis.error_reply('ERR locks: expected ' .. nargs .. ' arguments, got ' .. #ARGV)
end
local bad = bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_ms(ARGV[nargs], 'the fence counter ttl')
if nargs == 4 then
  bad = bad or bad_int(ARGV[3], 'the permit count must be an integer from 1 to 4294967295', 1,
    4294967295)
end
if bad then return bad end
local set, fences, counter = KEYS[1], KEYS[2], KEYS[#KEYS]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[#ARGV])
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
local bad = bad_keys(4)
if bad then return bad end
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

#[cfg(test)]
mod tests;
