//! The scripts of the fair mutex ([`LeaseKind::FairMutex`](locks_core::LeaseKind::FairMutex)):
//! a lease hash beside a FIFO queue of waiters, and a release that hands the lease to the head
//! of the queue and publishes `granted:<token>:<fence>` on the release channel. See the
//! [parent module](super) for the rules every script follows.
//!
//! The queue is three names (see [`RedisKeys`](crate::RedisKeys)): `…:fair:queue`, a sorted
//! set of waiter tokens scored by arrival number (the FIFO order); `…:fair:expiry`, the same
//! tokens scored by the ms (server `TIME`) until which each keeps its place; `…:fair:ttl`, a
//! hash of the ttl of the lease each would be granted (the ttl it asked for, at most the
//! waiter ttl: a grant is provisional until its new holder renews it, so a waiter that crashed
//! while queued holds a granted lease for no longer than that) and the fence counter ttl it
//! asked for, `"<grant ttl ms>:<counter ttl ms>"`.
//! Every script that reads the queue first drops the entries whose place lapsed (a waiter that
//! crashed, or gave up without leaving), and every script that adds or refreshes an entry sets
//! the three names' `PEXPIRE` past the latest entry, so an abandoned queue disappears by
//! itself. Taking entries out needs no new expiry: the one the names have is already past every
//! entry left, and Redis deletes a sorted set or hash when its last entry goes.
//!
//! Besides the shared argument checks (`bad_*`), `num`, `now_ms` and `announce`, these scripts
//! use the shared fence helpers (`next_fence`, `keep_counter`) and retired-token helpers
//! (`is_retired`, `retire`, `refuse_retired`), so that the fence counter and the retired set
//! are the very ones of the other kinds of the name. The lease hash and the queue are
//! written by these scripts only.

use std::sync::LazyLock;

use redis::Script;

use super::{Lua, Oom, eval_source, sharded_source};

/// The publish call of a grant (the one use of the publish command in these scripts besides
/// `announce`); [`sharded`] turns it into `SPUBLISH` for a Redis Cluster.
const GRANT_PUBLISH: &str = "redis.pcall('PUBLISH', channel, 'granted:' .. token .. ':' .. fence)";

/// The `EVALSHA` form of a fair script on a Redis Cluster: `announce` and the grant both
/// publish with `SPUBLISH`, on the shard that owns the lock's slot, where waiters listen.
fn sharded(body: &str, oom: Oom) -> String {
    sharded_source(body, oom).replacen(
        GRANT_PUBLISH,
        "redis.pcall('SPUBLISH', channel, 'granted:' .. token .. ':' .. fence)",
        1,
    )
}

/// The queue helpers, at the top of the acquire and release bodies (local to each).
///
/// - `fair_purge(queue, expiry, ttls, now)`: drop the entries whose place lapsed (`< now`).
/// - `fair_leave(queue, expiry, ttls, token)`: take `token` out; `true` if it was queued.
/// - `fair_keep_alive(queue, expiry, ttls, now)`: `PEXPIRE` the three names past the latest
///   entry (at least 2 ms), or delete them when the queue is empty.
/// - `fair_grant(channel, token, fence)`: publish the grant (with `pcall`, as `announce`).
macro_rules! fair_helpers {
    () => {
        r#"
local function fair_purge(queue, expiry, ttls, now)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', '(' .. num(now))
  if #gone > 0 then
    for i = 1, #gone do
      redis.call('ZREM', queue, gone[i])
      redis.call('HDEL', ttls, gone[i])
    end
    redis.call('ZREMRANGEBYSCORE', expiry, '-inf', '(' .. num(now))
  end
end
local function fair_leave(queue, expiry, ttls, token)
  redis.call('ZREM', expiry, token)
  redis.call('HDEL', ttls, token)
  return redis.call('ZREM', queue, token) == 1
end
local function fair_keep_alive(queue, expiry, ttls, now)
  local last = redis.call('ZRANGE', expiry, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', queue, expiry, ttls)
    return
  end
  local px = tonumber(last[2]) - now + 1
  if px < 2 then px = 2 end
  px = num(px)
  redis.call('PEXPIRE', queue, px)
  redis.call('PEXPIRE', expiry, px)
  redis.call('PEXPIRE', ttls, px)
end
local function fair_grant(channel, token, fence)
  redis.pcall('PUBLISH', channel, 'granted:' .. token .. ':' .. fence)
end
"#
    };
}

/// `KEYS[1]` lease, `KEYS[2]` queue, `KEYS[3]` waiter expiry, `KEYS[4]` waiter ttls,
/// `KEYS[5]` fence counter, `KEYS[6]` retired tokens; `ARGV[1]` token, `ARGV[2]` ttl in ms,
/// `ARGV[3]` fence counter ttl in ms, `ARGV[4]` how long a waiter keeps its place, in ms.
///
/// A retired token is refused with an error. Lapsed queue entries are dropped first. Returns
/// `{1, fence}` when the caller holds the lease: its own (ttl reset, counter kept, same fence;
/// this is how a waiter claims a lease granted to it), or a new one when the lease is free and
/// nobody is queued ahead of the caller (it then leaves the queue). Otherwise the caller is
/// queued at the tail (or keeps its place), its place kept for `ARGV[4]` ms and the ttls
/// of its grant remembered (`min(ARGV[2], ARGV[4])` and `ARGV[3]`), and the reply is `{0, ms}`: the lease's `PTTL`, or, when the lease is free but
/// the head has not claimed it, the ms until the head's place lapses.
pub(crate) static ACQUIRE_FAIR: Lua = lua!(
    "acquire_fair",
    Refused,
    concat!(
        fair_helpers!(),
        r#"
local bad = bad_lease_args(6) or bad_ms(ARGV[4], 'the waiter ttl')
if bad then return bad end
local lease, queue, expiry, ttls, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, ttl, counter_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local waiter_ttl = tonumber(ARGV[4])
local t = clock()
local now = now_ms(t)
if is_retired(KEYS[6], token, now) then return refuse_retired() end
local owner = redis.call('HGET', lease, 'owner')
if owner == token then
  redis.call('PEXPIRE', lease, ARGV[2])
  local fence = redis.call('HGET', lease, 'fence')
  keep_counter(counter, counter_ttl, t, fence)
  return {1, fence}
end
fair_purge(queue, expiry, ttls, now)
local head = redis.call('ZRANGE', queue, 0, 0)[1]
if not owner and (not head or head == token) then
  local fence = next_fence(counter, counter_ttl, t)
  redis.call('HSET', lease, 'owner', token, 'fence', fence)
  redis.call('PEXPIRE', lease, ARGV[2])
  if head then fair_leave(queue, expiry, ttls, token) end
  return {1, fence}
end
if not redis.call('ZSCORE', queue, token) then
  local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')
  local arrival = 1
  if #last > 0 then arrival = tonumber(last[2]) + 1 end
  redis.call('ZADD', queue, num(arrival), token)
end
redis.call('ZADD', expiry, num(now + waiter_ttl), token)
-- The checked texts of the ttls (no number formatting).
local grant_ttl = ARGV[2]
if waiter_ttl < ttl then grant_ttl = ARGV[4] end
redis.call('HSET', ttls, token, grant_ttl .. ':' .. ARGV[3])
fair_keep_alive(queue, expiry, ttls, now)
if owner then return {0, redis.call('PTTL', lease)} end
local left = tonumber(redis.call('ZSCORE', expiry, head)) - now
if left < 1 then left = 1 end
return {0, left}
"#
    ),
    sharded = sharded
);

/// `KEYS[1]` lease, `KEYS[2]` queue, `KEYS[3]` waiter expiry, `KEYS[4]` waiter ttls,
/// `KEYS[5]` fence counter, `KEYS[6]` release channel, `KEYS[7]` retired tokens; `ARGV[1]`
/// token, `ARGV[2]` how long a retired token is remembered, in ms.
///
/// The owner's release deletes the lease, drops lapsed queue entries, and, if a waiter is
/// queued, writes a new lease for the head (a new fence, the ttl it asked for but at most the
/// waiter ttl: provisional until the new holder renews it), takes it out
/// of the queue and publishes `granted:<token>:<fence>`; with nobody queued it publishes
/// `released`. Returns 1. Anyone else leaves the queue (a waiter that gave up; if it was the
/// head of a queue behind a free lease, `released` is published so the next one takes it),
/// is retired as by the mutex release, and 0 is returned.
pub(crate) static RELEASE_FAIR: Lua = lua!(
    "release_fair",
    Keeps,
    concat!(
        fair_helpers!(),
        r#"
local bad = bad_release_args(7)
if bad then return bad end
local lease, queue, expiry, ttls, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, token = KEYS[6], ARGV[1]
local t = clock()
local now = now_ms(t)
if redis.call('HGET', lease, 'owner') == token then
  redis.call('DEL', lease)
  fair_purge(queue, expiry, ttls, now)
  local head = redis.call('ZRANGE', queue, 0, 0)[1]
  while head do
    local ttl, counter_ttl = string.match(redis.call('HGET', ttls, head) or '', '^(%d+):(%d+)$')
    fair_leave(queue, expiry, ttls, head)
    if ttl then
      local fence = next_fence(counter, tonumber(counter_ttl), t)
      redis.call('HSET', lease, 'owner', head, 'fence', fence)
      redis.call('PEXPIRE', lease, ttl)
      fair_grant(channel, head, fence)
      return 1
    end
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
  announce(channel)
  return 1
end
fair_purge(queue, expiry, ttls, now)
local was_head = redis.call('ZRANGE', queue, 0, 0)[1] == token
if fair_leave(queue, expiry, ttls, token) then
  if was_head and redis.call('EXISTS', lease) == 0 and redis.call('ZCARD', queue) > 0 then
    announce(channel)
  end
end
retire(KEYS[7], token, now, tonumber(ARGV[2]))
return 0
"#
    ),
    sharded = sharded
);

/// `KEYS[1]` lease, `KEYS[2]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms, `ARGV[3]`
/// fence counter ttl in ms.
///
/// Compare-and-`PEXPIRE` of the fair lease, then keeps the fence counter. Returns 1, or 0 if
/// not the owner.
pub(crate) static EXTEND_FAIR: Lua = lua!(
    "extend_fair",
    Keeps,
    r#"
local bad = bad_lease_args(2)
if bad then return bad end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local t = clock()
redis.call('PEXPIRE', KEYS[1], ARGV[2])
keep_counter(KEYS[2], tonumber(ARGV[3]), t, redis.call('HGET', KEYS[1], 'fence'))
return 1
"#,
    sharded = sharded
);

/// `KEYS[1]` lease.
///
/// Returns nil when there is no fair lease, else `{owner, fence, pttl}`, read atomically.
pub(crate) static INSPECT_FAIR: Lua = lua!(
    "inspect_fair",
    ReadOnly,
    r#"
local bad = bad_keys(1)
if bad then return bad end
local v = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if not v[1] then return false end
return {v[1], v[2], redis.call('PTTL', KEYS[1])}
"#,
    sharded = sharded
);

#[cfg(test)]
mod tests {
    use locks_core::LockKey;
    use locks_testkit::redis_server::{RedisServer, RedisServerConfig};
    use redis::aio::MultiplexedConnection;
    use redis::{RedisResult, Value};

    use super::*;
    use crate::dispatch::{FAIR_ACQUIRE as ACQUIRE_KEYS, FAIR_RELEASE as RELEASE_KEYS};
    use crate::keys::{FAIR, FENCE, name};

    const TOKEN: &str = "3f1c0b5e-8f6c-4a59-9b71-0d3e0c3e7a11";

    async fn run(
        conn: &mut MultiplexedConnection,
        script: &Lua,
        keys: &[&str],
        args: &[&str],
    ) -> RedisResult<Value> {
        let key = LockKey::new("_lock:", "fair-args").unwrap_or_else(|e| panic!("{e}"));
        let mut invocation = script.eval().prepare_invoke();
        for suffix in keys {
            invocation.key(name(&key, suffix));
        }
        for arg in args {
            invocation.arg(*arg);
        }
        invocation.invoke_async(conn).await
    }

    async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
        redis::cmd("DBSIZE")
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("DBSIZE: {e}"))
    }

    /// Every fair script refuses a bad argument with `ERR locks: ...` before it writes
    /// anything; a release that finds nothing retires the token, whose acquire is then
    /// refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fair_scripts_check_their_arguments_and_retire_tokens() {
        let server = RedisServer::start_with(RedisServerConfig::new().local_only())
            .await
            .unwrap_or_else(|e| panic!("redis fixture: {e}"));
        let mut conn = server
            .connection()
            .await
            .unwrap_or_else(|e| panic!("raw connection: {e}"));
        let acquire = [TOKEN, "60000", "120000", "3000"];
        // (script, keys, good arguments, positions of the ttls in ms)
        type Call<'a> = (&'a Lua, &'a [&'a str], &'a [&'a str], &'a [usize]);
        let calls: [Call<'_>; 3] = [
            (&ACQUIRE_FAIR, ACQUIRE_KEYS, &acquire, &[1, 2, 3]),
            (&EXTEND_FAIR, &[FAIR, FENCE], &acquire[..3], &[1, 2]),
            (&RELEASE_FAIR, RELEASE_KEYS, &[TOKEN, "120000"], &[1]),
        ];
        for (script, keys, args, ms) in calls {
            let mut bad: Vec<Vec<&str>> = Vec::new();
            for &at in ms {
                for value in ["0", "-5", "1.5", "abc", "", "99999999999999999999"] {
                    let mut a = args.to_vec();
                    a[at] = value;
                    bad.push(a);
                }
            }
            let mut no_token = args.to_vec();
            no_token[0] = "";
            bad.push(no_token);
            for args in bad {
                let reply = run(&mut conn, script, keys, &args).await;
                assert!(
                    matches!(&reply, Err(e) if e.detail().is_some_and(|d| d.starts_with("locks:"))),
                    "{} {args:?}: {reply:?}",
                    script.name
                );
                assert_eq!(dbsize(&mut conn).await, 0, "{} {args:?} wrote", script.name);
            }
            let reply = run(&mut conn, script, &keys[1..], args).await;
            assert!(reply.is_err(), "{}: a missing key", script.name);
        }
        let released = run(&mut conn, &RELEASE_FAIR, RELEASE_KEYS, &[TOKEN, "120000"]).await;
        assert_eq!(released.ok(), Some(Value::Int(0)));
        let late = run(&mut conn, &ACQUIRE_FAIR, ACQUIRE_KEYS, &acquire).await;
        assert!(
            matches!(&late, Err(e) if e.detail().is_some_and(|d| d.starts_with("locks-retired"))),
            "{late:?}"
        );
    }

    /// The cluster form publishes both the release and the grant with `SPUBLISH`: fails if
    /// the grant's publish call is reworded without [`GRANT_PUBLISH`] following.
    #[test]
    fn the_sharded_fair_scripts_spublish_grants() {
        let plain = eval_source(RELEASE_FAIR.body, Oom::Keeps);
        let sharded = sharded(RELEASE_FAIR.body, Oom::Keeps);
        assert!(plain.contains(GRANT_PUBLISH));
        assert!(sharded.contains("redis.pcall('SPUBLISH', channel, 'granted:'"));
        assert!(!sharded.contains("'PUBLISH'"));
    }
}
