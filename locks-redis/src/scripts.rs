//! The Lua scripts. Every user value reaches Lua through `KEYS`/`ARGV`, never by string
//! concatenation; every script is atomic and idempotent for the same owner token.
//!
//! They run through [`redis::Script`]: `EVALSHA`, and on `NOSCRIPT` (after `SCRIPT FLUSH` or a
//! restart) `SCRIPT LOAD` and `EVALSHA` again.

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

/// `KEYS[1]` lease, `KEYS[2]` release channel.
///
/// Deletes the lease whoever holds it and publishes if there was one. Returns 1 or 0.
pub(crate) static FORCE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('DEL', KEYS[1]) == 1 then
  redis.pcall('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"#,
    )
});
