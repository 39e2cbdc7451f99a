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
//! milliseconds from 1 to [`MAX_PX_MS`] (100 years) without leading zeros, a permit count a
//! decimal integer from 1 to `u32::MAX`. Anything else (`0`, `007`, `-5`, `1.5`, `abc`, `inf`,
//! an empty or missing value, a huge number) is answered with an error reply
//! `ERR locks: <what is wrong>, got '<value>'` and nothing is written: a bad ttl never leaves a
//! lease without expiry, and never gets a false success (`PEXPIRE key 0` would delete the lease
//! and say 1). A ttl is checked as text (digits, then length and order against `MAX_MS_TEXT`),
//! with no number conversion, so the checked text is what the scripts send to Redis; numbers
//! they compute are formatted as integers.
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
//! # Two forms: `EVALSHA` scripts and a `FUNCTION` library
//!
//! Each script is one [`Lua`] value: a name, a body and how it treats a full server ([`Oom`]).
//! The same bodies make the `EVALSHA` scripts ([`eval_source`]) and the function library that
//! an operator installs for the least-privilege mode ([`functions`](crate::functions)): one
//! source of the logic for both.
//!
//! # A full server (`OOM`)
//!
//! The scripts (but the `allow-oom` fallbacks) carry no flags, so they run on any Redis with
//! `EVALSHA`. A server at `maxmemory`
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
/// after `MAX_MS` (the largest ttl in ms, [`MAX_PX_MS`]) and `MAX_MS_TEXT` (the same as text).
///
/// Argument checks, each `nil` for a good argument, else the error reply to return:
/// - `bad_keys(n)`: `#KEYS` is not `n`.
/// - `bad_token(v)`: not a non-empty string.
/// - `bad_int(v, what, lo, hi)`: not a positive decimal integer (at most 16 digits, no leading
///   zero) in `[lo, hi]`.
/// - `bad_ms(v, what)`: not a ttl in ms, `[1, MAX_MS]`, written without leading zeros
///   (checked as text against `MAX_MS_TEXT`, the same number as a string).
/// - `bad_lease_args(n)`: the checks of an acquire or a renewal: `n` keys, `ARGV[1]` the
///   token, `ARGV[2]` the ttl, `ARGV[3]` the fence counter ttl.
/// - `bad_release_args(n)`: the checks of a release: `n` keys, `ARGV[1]` the token,
///   `ARGV[2]` the retired token ttl.
///
/// Time and numbers:
/// - `num(x)`: a number as an exact decimal string (Lua's own conversion keeps 14 digits).
/// - `clock()`: the server's `TIME`, its two parts parsed once (every script reads the time
///   this way).
/// - `us(t)` / `now_ms(t)`: the server time of a `clock()` reading in µs / in whole ms
///   (rounded down, as Redis's own expiry clock).
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
/// - `renew_lease(lease, token, px, counter, counter_ttl, t)`: if `token` owns the lease hash
///   (`owner`, `fence`: the read-write lock's writer; the mutex lease is a string, see
///   `lease_parts`), `PEXPIRE` it by `px` (a decimal string), keep the counter, and return
///   `true, fence`; else `false`, writing nothing.
/// - `new_lease(lease, token, px, counter, counter_ttl, t)`: write a new writer hash for
///   `token` with the next fence, expiring in `px` ms (a decimal string); return the fence.
///
/// The mutex lease (one string, `"<fence> <token>"`):
/// - `lease_parts(v)`: the owner token and the fence of a lease value (`nil` if it is not one).
/// - `lease_owner(v)`: only the owner token (whatever follows the first space; `nil` if there is
///   none), for a compare-and-act that needs no fence: no number conversion.
/// - `not_a_lease(key)`: the error reply for a lease key that holds something else.
///
/// Sorted sets of permits and readers (score = expiry in ms; a member is live while `TIME` in
/// whole ms is `<= score`, exactly as Redis expires a key with `PX`):
/// - `purge(set, fences, now)`: drop members whose expiry is `< now`, and their fences.
/// - `keep_alive(set, fences, now)`: `PEXPIRE` both keys (the set first) until the latest
///   member has expired, at least 2 ms (`PEXPIRE k 1` may delete `k` at once: Redis 7.0 reads
///   its clock twice); an empty set leaves no fence hash behind.
/// - `soonest(set, now)`: ms until the first member expires (at least 1), or `nil` when empty.
/// - `renew(set, fences, token, ttl, counter, counter_ttl, t, now)`: `purge`, then if `token`
///   is a member, move its expiry to `now + ttl`, keep the counter, and return its fence (a new one if
///   it had none); else `nil`.
/// - `add_member(set, fences, token, ttl, counter, counter_ttl, t, now)`: add `token` until
///   `now + ttl` with a new fence (dropping fences left by an expired set first), keep the keys alive, and
///   return the fence.
/// - `members(set, fences, now)`: `{token, remaining ms, fence or ''}` for every member, flat.
///
/// Releases and retired tokens:
/// - `announce(channel)`: publish a release notification (with `pcall`: a user without channel
///   permissions can still release). The one place that names the publish command.
/// - `is_retired(retired, token, now)`: the token is in the retired set and not yet expired.
/// - `retire(retired, token, now, for_ms)`: remember the token for `for_ms` (then expired
///   entries are dropped; the set expires with its last member). The entry is written with
///   `pcall`, first: a full server refuses it (unless the script already wrote) and it is
///   skipped.
/// - `refuse_retired()`: the error reply of an acquire with a retired token.
pub(crate) const HELPERS: &str = include_str!("scripts/helpers.lua");

/// How a script treats a server at `maxmemory`, and so how it is flagged in each form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Oom {
    /// It writes something new (a lease, a member, a fence counter): refused on a full server.
    /// As a script: no flags (Redis checks each command that may need memory, and refuses the
    /// first one unless the script already wrote). As a function: no flags (refused before it
    /// starts).
    Refused,
    /// It renews, releases or cleans up what exists. As a script: no flags (its first write
    /// never needs memory, or the dispatcher's fallback carries `allow-oom`). As a function:
    /// flag `allow-oom`.
    Keeps,
    /// Flag `allow-oom` in both forms (needs Redis >= 7.0).
    Allowed,
    /// It only reads. As a function: flag `no-writes`, called with `FCALL_RO`.
    ReadOnly,
}

/// One script: its name (in the function library, `locks_v2_<name>`), its body, how it
/// treats a full server, and its `EVALSHA` form, compiled on first use.
pub(crate) struct Lua {
    /// The script's name (in tests and logs).
    pub(crate) name: &'static str,
    /// Its name in the function library: `locks_v2_<name>` (the library's version is part of
    /// every function's name, so two versions can be installed side by side during an upgrade).
    pub(crate) function: &'static str,
    /// The body, run after `MAX_MS` and the helpers (`KEYS`/`ARGV` are the call's).
    pub(crate) body: &'static str,
    /// How it treats a full server (and its flags).
    pub(crate) oom: Oom,
    eval: LazyLock<Script>,
    /// Hook for Redis Cluster (issue 12, helper D): the `EVALSHA` form whose `announce`
    /// publishes with `SPUBLISH` (sharded pub/sub), see [`sharded_source`].
    sharded: LazyLock<Script>,
}

impl Lua {
    /// The script as run by `EVALSHA`.
    pub(crate) fn eval(&self) -> &Script {
        &self.eval
    }

    /// The script as run by `EVALSHA` on a Redis Cluster: releases are announced with
    /// `SPUBLISH` on the shard that owns the lock's slot.
    pub(crate) fn eval_sharded(&self) -> &Script {
        &self.sharded
    }
}

/// A [`Lua`] script: name, [`Oom`] variant, body (a constant).
macro_rules! lua {
    ($name:literal, $oom:ident, $body:expr) => {
        lua!($name, $oom, $body, sharded = sharded_source)
    };
    // With the function that makes its cluster form (default: `sharded_source`).
    ($name:literal, $oom:ident, $body:expr, sharded = $sharded:path) => {
        Lua {
            name: $name,
            function: concat!("locks_v2_", $name),
            body: $body,
            oom: Oom::$oom,
            eval: LazyLock::new(|| Script::new(&eval_source($body, Oom::$oom))),
            sharded: LazyLock::new(|| Script::new(&$sharded($body, Oom::$oom))),
        }
    };
}

/// The text of a script for `EVAL`: a shebang for [`Oom::Allowed`], then the prelude (`MAX_MS`,
/// effects replication on servers older than 5.0), the helpers `body` uses (see
/// [`helpers_for`]), `body`.
pub(crate) fn eval_source(body: &str, oom: Oom) -> String {
    let first_line = if oom == Oom::Allowed {
        "#!lua flags=allow-oom"
    } else {
        ""
    };
    let helpers = helpers_for(body);
    format!(
        "{first_line}\nlocal MAX_MS, MAX_MS_TEXT = {MAX_PX_MS}, '{MAX_PX_MS}'\n\
         if redis.replicate_commands then redis.replicate_commands() end\n{helpers}{body}"
    )
}

/// The helpers of [`HELPERS`] that `body` calls, directly or through other helpers, in their
/// order in `helpers.lua` (each is defined before its first use there).
///
/// An `EVALSHA` script runs its whole text on every call, so every `local function` it defines
/// is a closure the server builds each time: defining all of them cost about as much as the
/// work of an acquire. The function library defines them once, when it is loaded, and keeps
/// them all.
pub(crate) fn helpers_for(body: &str) -> String {
    let chunks = helper_chunks(HELPERS);
    let mut used = vec![false; chunks.len()];
    let mut pending = vec![body];
    while let Some(text) = pending.pop() {
        for (i, (name, chunk)) in chunks.iter().enumerate() {
            if !used[i] && calls(text, name) {
                used[i] = true;
                pending.push(chunk);
            }
        }
    }
    chunks
        .iter()
        .zip(used)
        .filter_map(|((_, chunk), used)| used.then_some(*chunk))
        .collect()
}

/// `helpers` cut at every top-level `local function NAME(`: each helper's name and text (up to
/// the next one). Text before the first helper (the file's comment) is dropped.
fn helper_chunks(helpers: &str) -> Vec<(&str, &str)> {
    const START: &str = "local function ";
    let starts: Vec<usize> = helpers
        .match_indices(START)
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || helpers.as_bytes()[i - 1] == b'\n')
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied().unwrap_or(helpers.len());
            let text = &helpers[start..end];
            let name = text[START.len()..]
                .split('(')
                .next()
                .unwrap_or_default()
                .trim();
            (name, text)
        })
        .collect()
}

/// Whether `text` calls `name(`: the name, not the end of a longer identifier, then `(`.
fn calls(text: &str, name: &str) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    text.match_indices(name).any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| text.as_bytes()[j]);
        let after = text.as_bytes().get(i + name.len()).copied();
        !before.is_some_and(ident) && after == Some(b'(')
    })
}

/// The publish call of the helper `announce` (its one use of the publish command).
const PUBLISH_CALL: &str = "redis.pcall('PUBLISH', channel, 'released')";

/// [`eval_source`] for a Redis Cluster (issue 12): `announce` publishes with `SPUBLISH`, so the
/// message stays on the shard that owns the channel's slot (the lock's), where waiters
/// `SSUBSCRIBE` (Redis >= 7).
pub(crate) fn sharded_source(body: &str, oom: Oom) -> String {
    eval_source(body, oom).replacen(
        PUBLISH_CALL,
        "redis.pcall('SPUBLISH', channel, 'released')",
        1,
    )
}

/// Every script, in the order of the function library.
pub(crate) static ALL: [&Lua; 21] = [
    &ACQUIRE,
    &RELEASE,
    &EXTEND,
    &INSPECT,
    &FORCE_RELEASE,
    &ACQUIRE_PERMIT,
    &RELEASE_PERMIT,
    &EXTEND_PERMIT,
    &EXTEND_PERMIT_OOM,
    &PERMIT_HOLDERS,
    &ACQUIRE_READ,
    &ACQUIRE_WRITE,
    &RELEASE_RW,
    &EXTEND_RW,
    &EXTEND_RW_OOM,
    &REACQUIRE_MEMBER_OOM,
    &INSPECT_RW,
    &ACQUIRE_FAIR,
    &RELEASE_FAIR,
    &EXTEND_FAIR,
    &INSPECT_FAIR,
];

/// `KEYS[1]` lease, `KEYS[2]` fence counter, `KEYS[3]` retired tokens; `ARGV[1]` token,
/// `ARGV[2]` ttl in ms, `ARGV[3]` fence counter ttl in ms.
///
/// **A mutex lease is one string**, `"<fence> <token>"`, with the lease's `PX`: one `GET`
/// tells whether it is held, by whom and with which fence.
///
/// A retired token (see [`RELEASE`]) is refused with an error, before anything is written.
/// Returns `{1, fence}` when the caller holds the lease (a new lease, or its own one, whose
/// ttl is reset, counter kept, and whose fence is returned unchanged), `{0, pttl}` when someone
/// else holds it.
///
/// A new fence is `max(server TIME in microseconds, last fence + 1)`: it keeps increasing even
/// after the counter expired or the server lost its data, unless the server clock steps back.
/// Lua numbers are doubles; microsecond timestamps (~1.8e15) are far below 2^53, so the
/// arithmetic is exact, and the fence is returned as a decimal string (`%.0f`), never through
/// Lua's number-to-integer reply conversion.
pub(crate) static ACQUIRE: Lua = lua!(
    "acquire",
    Refused,
    r#"
local bad = bad_lease_args(3)
if bad then return bad end
local lease, counter, token = KEYS[1], KEYS[2], ARGV[1]
local px, counter_ttl = ARGV[2], tonumber(ARGV[3])
local t = clock()
if is_retired(KEYS[3], token, now_ms(t)) then return refuse_retired() end
local v = redis.call('GET', lease)
if v then
  local owner, fence = lease_parts(v)
  if not owner then return not_a_lease(lease) end
  if owner ~= token then return {0, redis.call('PTTL', lease)} end
  redis.call('PEXPIRE', lease, px)
  keep_counter(counter, counter_ttl, t, fence)
  return {1, fence}
end
local fence = next_fence(counter, counter_ttl, t)
redis.call('SET', lease, fence .. ' ' .. token, 'PX', px)
return {1, fence}
"#
);

/// `KEYS[1]` lease, `KEYS[2]` release channel, `KEYS[3]` retired tokens; `ARGV[1]` token,
/// `ARGV[2]` how long a retired token is remembered, in ms.
///
/// Compare-and-delete; on success publishes on the channel (with `pcall`, so a user without
/// channel permissions can still release: waiters then poll). Returns 1, or 0 if not the owner.
/// The fence counter is left to expire by itself.
///
/// **Retired tokens.** A release that finds nothing held by the token *retires* it: the token
/// goes into the retired set (sorted set, token → until when in ms by `TIME`, the set expiring
/// with its last member) for `ARGV[2]` ms, and every acquire script refuses it meanwhile. The
/// service releases every token whose acquire attempt had an unknown outcome and never uses it
/// again, so an acquire held in the network and applied after that release (a "ghost" that
/// would block the key for a ttl with nobody holding it) is refused. Writing the entry is a
/// `pcall`: a full server under an old Redis skips it rather than fail the release.
pub(crate) static RELEASE: Lua = lua!(
    "release",
    Keeps,
    r#"
local bad = bad_release_args(3)
if bad then return bad end
local v = redis.call('GET', KEYS[1])
if v and lease_owner(v) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  announce(KEYS[2])
  return 1
end
retire(KEYS[3], ARGV[1], now_ms(clock()), tonumber(ARGV[2]))
return 0
"#
);

/// `KEYS[1]` lease, `KEYS[2]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]`
/// fence counter ttl in ms.
///
/// Compare-and-`PEXPIRE`, then keeps the fence counter. Returns 1, or 0 if not the owner.
pub(crate) static EXTEND: Lua = lua!(
    "extend",
    Keeps,
    r#"
local bad = bad_lease_args(2)
if bad then return bad end
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local owner, fence = lease_parts(v)
if owner ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
keep_counter(KEYS[2], tonumber(ARGV[3]), clock(), fence)
return 1
"#
);

/// `KEYS[1]` lease.
///
/// Returns nil when there is no lease, else `{owner, fence, pttl}`, read atomically.
pub(crate) static INSPECT: Lua = lua!(
    "inspect",
    ReadOnly,
    r#"
local bad = bad_keys(1)
if bad then return bad end
local v = redis.call('GET', KEYS[1])
if not v then return false end
local owner, fence = lease_parts(v)
if not owner then return not_a_lease(KEYS[1]) end
return {owner, fence, redis.call('PTTL', KEYS[1])}
"#
);

/// `KEYS[1..n-1]` every name of one lock kind (the mutex lease; or the semaphore's set and
/// fences; or the read-write lock's readers, fences, writer and waiting mark), `KEYS[n]` the
/// release channel. The fence counter is not among them: fences keep increasing.
///
/// Deletes them whoever holds them and publishes if anything was there. Returns 1 or 0.
pub(crate) static FORCE_RELEASE: Lua = lua!(
    "force_release",
    Keeps,
    r#"
if #KEYS < 2 then return bad_keys(2) end
local deleted = 0
for i = 1, #KEYS - 1 do
  deleted = deleted + redis.call('DEL', KEYS[i])
end
if deleted > 0 then
  announce(KEYS[#KEYS])
  return 1
end
return 0
"#
);

mod fair;
mod members;

pub(crate) use fair::{ACQUIRE_FAIR, EXTEND_FAIR, INSPECT_FAIR, RELEASE_FAIR};

pub(crate) use members::{
    ACQUIRE_PERMIT, ACQUIRE_READ, ACQUIRE_WRITE, EXTEND_PERMIT, EXTEND_PERMIT_OOM, EXTEND_RW,
    EXTEND_RW_OOM, INSPECT_RW, PERMIT_HOLDERS, REACQUIRE_MEMBER_OOM, RELEASE_PERMIT, RELEASE_RW,
};

#[cfg(test)]
mod tests;
