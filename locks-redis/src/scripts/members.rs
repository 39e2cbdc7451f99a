//! The scripts of semaphore permits and read-write locks (sorted sets of members); see the
//! [parent module](super) for the rules every script follows.

use std::sync::LazyLock;

use redis::Script;

use super::{Lua, Oom, eval_source, sharded_source};

// ---------------------------------------------------------------------------------------------
// Semaphores and read-write locks.
//
// Permits and readers live in a sorted set (member = owner token, score = expiry in ms by the
// server's `TIME`, never the client clock: the member is live while `TIME` in whole ms is
// `<= score`, like a key with `PX`) with a hash of their fences beside it. Every script that
// touches such a set first drops the expired members (and their fences), and every script that
// changes it sets the set's and the hash's `PEXPIRE` to the longest remaining member ttl, so an
// abandoned set disappears by itself.

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` fence counter, `KEYS[4]` retired
/// tokens; `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]` permit count, `ARGV[4]` fence counter
/// ttl in ms.
///
/// A retired token (see [`RELEASE`]) is refused with an error. Expired permits are reclaimed first. Returns `{1, fence}` when the caller holds a permit
/// (a new one, or its own, whose expiry is reset and whose fence is returned unchanged),
/// `{0, ms until the first permit expires}` when all are taken (`-1`: unknown).
pub(crate) static ACQUIRE_PERMIT: Lua = lua!(
    "acquire_permit",
    Refused,
    r#"
local bad = bad_keys(4) or bad_token(ARGV[1]) or bad_ms(ARGV[2], 'the ttl')
  or bad_int(ARGV[3], 'the permit count must be an integer from 1 to 4294967295', 1, 4294967295)
  or bad_ms(ARGV[4], 'the fence counter ttl')
if bad then return bad end
local set, fences, counter = KEYS[1], KEYS[2], KEYS[3]
local token, ttl, permits = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local counter_ttl = tonumber(ARGV[4])
local t = clock()
local now = now_ms(t)
if is_retired(KEYS[4], token, now) then return refuse_retired() end
local own = renew(set, fences, token, ttl, counter, counter_ttl, t, now)
if own then return {1, own} end
if redis.call('ZCARD', set) < permits then
  return {1, add_member(set, fences, token, ttl, counter, counter_ttl, t, now)}
end
return {0, soonest(set, now) or -1}
"#
);

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` release channel, `KEYS[4]` retired
/// tokens; `ARGV[1]` token, `ARGV[2]` how long a retired token is remembered, in ms.
///
/// Removes the caller's live permit and publishes on the release channel. Returns 1, or 0 if
/// the token holds no live permit (and then retires it, as [`RELEASE`] does).
pub(crate) static RELEASE_PERMIT: Lua = lua!(
    "release_permit",
    Keeps,
    r#"
local bad = bad_release_args(4)
if bad then return bad end
local set, fences, channel, token = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local now = now_ms(clock())
purge(set, fences, now)
if redis.call('ZREM', set, token) == 1 then
  redis.call('HDEL', fences, token)
  keep_alive(set, fences, now)
  announce(channel)
  return 1
end
retire(KEYS[4], token, now, tonumber(ARGV[2]))
return 0
"#
);

/// `KEYS[1]` permits, `KEYS[2]` permit fences, `KEYS[3]` fence counter; `ARGV[1]` token,
/// `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl in ms.
///
/// Resets the expiry of the caller's live permit and keeps the fence counter. Returns 1, or 0
/// if it holds none.
pub(crate) static EXTEND_PERMIT: Lua = lua!("extend_permit", Keeps, EXTEND_PERMIT_BODY);

/// [`EXTEND_PERMIT`] with the flag `allow-oom`, for a server at `maxmemory`.
pub(crate) static EXTEND_PERMIT_OOM: Lua = lua!("extend_permit_oom", Allowed, EXTEND_PERMIT_BODY);

const EXTEND_PERMIT_BODY: &str = r#"
local bad = bad_lease_args(3)
if bad then return bad end
local set, fences, counter = KEYS[1], KEYS[2], KEYS[3]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = clock()
local now = now_ms(t)
if renew(set, fences, token, ttl, counter, counter_ttl, t, now) then return 1 end
return 0
"#;

/// `KEYS[1]` permits, `KEYS[2]` permit fences.
///
/// Returns the live permits, flat: `{token, remaining ms, fence, ...}`.
pub(crate) static PERMIT_HOLDERS: Lua = lua!(
    "permit_holders",
    Keeps,
    r#"
local bad = bad_keys(2)
if bad then return bad end
local now = now_ms(clock())
purge(KEYS[1], KEYS[2], now)
return members(KEYS[1], KEYS[2], now)
"#
);

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark,
/// `KEYS[5]` fence counter, `KEYS[6]` retired tokens; `ARGV[1]` token, `ARGV[2]` ttl in ms,
/// `ARGV[3]` fence counter ttl.
///
/// A retired token (see [`RELEASE`]) is refused with an error. Returns `{1, fence}` for a
/// (new or own) read lease, `{0, pttl}` while a writer holds the
/// lock or waits for it (its `PTTL`; `-1`: unknown).
pub(crate) static ACQUIRE_READ: Lua = lua!(
    "acquire_read",
    Refused,
    r#"
local bad = bad_lease_args(6)
if bad then return bad end
local readers, fences, writer, waiting, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = clock()
local now = now_ms(t)
if is_retired(KEYS[6], token, now) then return refuse_retired() end
local own = renew(readers, fences, token, ttl, counter, counter_ttl, t, now)
if own then return {1, own} end
-- A writer, or a writer waiting for the readers to go, keeps new readers out.
for _, blocker in ipairs({writer, waiting}) do
  if redis.call('EXISTS', blocker) == 1 then return {0, redis.call('PTTL', blocker)} end
end
return {1, add_member(readers, fences, token, ttl, counter, counter_ttl, t, now)}
"#
);

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark,
/// `KEYS[5]` fence counter, `KEYS[6]` retired tokens; `ARGV[1]` token, `ARGV[2]` ttl in ms,
/// `ARGV[3]` fence counter ttl.
///
/// A retired token (see [`RELEASE`]) is refused with an error, and sets no waiting mark. Own
/// write lease → ttl reset, counter kept, same fence. Another writer → `{0, its pttl}`.
/// Live readers (or another writer's waiting mark) → `{0, ms until the first reader or that
/// mark expires}`, and, unless another writer waits, the caller's waiting mark is set (or
/// refreshed) for `ttl`. Otherwise the mark is cleared and the write lease written with a new
/// fence: `{1, fence}`.
pub(crate) static ACQUIRE_WRITE: Lua = lua!(
    "acquire_write",
    Refused,
    r#"
local bad = bad_lease_args(6)
if bad then return bad end
local readers, fences, writer, waiting, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = clock()
local now = now_ms(t)
if is_retired(KEYS[6], token, now) then return refuse_retired() end
purge(readers, fences, now)
local own, fence = renew_lease(writer, token, ttl, counter, counter_ttl, t)
if own then return {1, fence} end
if redis.call('HGET', writer, 'owner') then
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
return {1, new_lease(writer, token, ttl, counter, counter_ttl, t)}
"#
);

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark,
/// `KEYS[5]` release channel, `KEYS[6]` retired tokens; `ARGV[1]` token, `ARGV[2]` how long a
/// retired token is remembered, in ms.
///
/// Removes the caller's read or write lease and its waiting mark, and publishes when anything
/// was removed. Returns 1 if a lease was removed, else 0 (a removed mark alone returns 0); a 0
/// retires the token, as [`RELEASE`] does.
pub(crate) static RELEASE_RW: Lua = lua!(
    "release_rw",
    Keeps,
    r#"
local bad = bad_release_args(6)
if bad then return bad end
local readers, fences, writer, waiting, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token = ARGV[1]
local now = now_ms(clock())
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
  announce(channel)
end
if had == 0 then retire(KEYS[6], token, now, tonumber(ARGV[2])) end
return had
"#
);

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` fence counter;
/// `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl in ms.
///
/// Resets the expiry of the caller's read or write lease and keeps the fence counter. Returns
/// 1, or 0 if it holds neither.
pub(crate) static EXTEND_RW: Lua = lua!("extend_rw", Keeps, EXTEND_RW_BODY);

/// [`EXTEND_RW`] with the flag `allow-oom`, for a server at `maxmemory`.
pub(crate) static EXTEND_RW_OOM: Lua = lua!("extend_rw_oom", Allowed, EXTEND_RW_BODY);

const EXTEND_RW_BODY: &str = r#"
local bad = bad_lease_args(4)
if bad then return bad end
local readers, fences, writer, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = clock()
local now = now_ms(t)
if renew(readers, fences, token, ttl, counter, counter_ttl, t, now) then return 1 end
if renew_lease(writer, token, num(ttl), counter, counter_ttl, t) then return 1 end
return 0
"#;

/// The fallback of [`ACQUIRE_PERMIT`] and [`ACQUIRE_READ`] on a server at `maxmemory` (flag
/// `allow-oom`), with their keys and arguments: `KEYS[1]` the set (permits or readers),
/// `KEYS[2]` its fences, `KEYS[#KEYS - 1]` the fence counter, `KEYS[#KEYS]` the retired tokens
/// (4 keys for permits, 6 for readers);
/// `ARGV[1]` token, `ARGV[2]` ttl in ms, for permits `ARGV[3]` the count, `ARGV[#ARGV]` fence
/// counter ttl in ms.
///
/// Renews the caller's own live member exactly as the acquire script would (`{1, fence}`), and
/// otherwise writes nothing and returns nil: a new member is never added on a full server. (A
/// retired token is never a member: nothing to check.)
pub(crate) static REACQUIRE_MEMBER_OOM: Lua = lua!(
    "reacquire_member_oom",
    Allowed,
    r#"
if #KEYS ~= 4 and #KEYS ~= 6 then return bad_keys(4) end
-- A permit (4 keys) has its count among the arguments.
local nargs = 3
if #KEYS == 4 then nargs = 4 end
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
local set, fences, counter = KEYS[1], KEYS[2], KEYS[#KEYS - 1]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[#ARGV])
local t = clock()
local now = now_ms(t)
local own = renew(set, fences, token, ttl, counter, counter_ttl, t, now)
if own then return {1, own} end
return false
"#
);

/// `KEYS[1]` readers, `KEYS[2]` reader fences, `KEYS[3]` writer, `KEYS[4]` waiting mark.
///
/// Returns `{readers, writer, waiting}`: the live readers flat as `{token, remaining ms,
/// fence, ...}`, the writer as `{owner, fence, pttl}` or `{}`, and 1 or 0 for the mark.
pub(crate) static INSPECT_RW: Lua = lua!(
    "inspect_rw",
    Keeps,
    r#"
local bad = bad_keys(4)
if bad then return bad end
local readers, fences, writer, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms(clock())
purge(readers, fences, now)
local w = {}
local v = redis.call('HMGET', writer, 'owner', 'fence')
if v[1] then w = {v[1], v[2] or '', redis.call('PTTL', writer)} end
return {members(readers, fences, now), w, redis.call('EXISTS', waiting)}
"#
);
