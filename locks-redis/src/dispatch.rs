//! The script dispatcher: every backend operation reaches Redis through [`dispatch`].
//!
//! An operation ([`Op`]) on a lease of some kind ([`Kind`]) is planned into one script call —
//! which script, which of the lock's names as `KEYS`, which `ARGV` — in [`plan`], the one
//! `match` that knows the scripts. [`dispatch`] runs the call on the command connection with
//! `EVALSHA` (the redis crate loads the script and retries once after `NOSCRIPT`), lets a
//! response timeout retire the connection (see [`connection`](crate::connection)), maps the
//! Redis error to a transient or permanent [`BackendError`], and hands back the raw
//! [`Reply`] for [`replies`](crate::replies) to decode.
//!
//! [`Kind`] mirrors the `LeaseKind` the kind-parameterised `LockBackend` will take; when the
//! trait gets it, each trait method passes its `kind` through and nothing here changes.

use std::sync::Arc;
use std::time::Duration;

use locks_core::{BackendError, LockKey, OwnerToken};
use redis::{RedisWrite, Script, ScriptInvocation, ToRedisArgs, Value};

use crate::connection::Connection;
use crate::error::backend_error;
use crate::keys::{
    CHANNEL, FENCE, KeyName, LEASE, RW_FENCES, RW_READERS, RW_WAITING, RW_WRITER, SEMAPHORE,
    SEMAPHORE_FENCES,
};
use crate::replies::Reply;
use crate::scripts;

/// The shortest time the fence counter of a key is kept after its last new lease.
pub const MIN_FENCE_COUNTER_TTL: Duration = Duration::from_secs(86_400);

/// Longest expiry sent to Redis, in milliseconds (about 100 years); longer ttls are capped.
const MAX_PX_MS: u64 = 100 * 365 * 86_400 * 1000;

/// The kind of lease an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One holder.
    Mutex,
    /// At most `limit` holders (a semaphore).
    Permit { limit: u32 },
    /// A reader of a read-write lock.
    Read,
    /// The writer of a read-write lock.
    Write,
}

/// What an operation does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Take (or re-take, resetting its ttl) a lease for `token`.
    Acquire { token: OwnerToken, ttl: Duration },
    /// Reset the ttl of `token`'s lease.
    Extend { token: OwnerToken, ttl: Duration },
    /// Give back `token`'s lease and publish a release.
    Release { token: OwnerToken },
    /// Read the current holders.
    Holders,
    /// Delete the lease whoever holds it and publish a release.
    ForceRelease,
}

/// One planned script call.
struct Call {
    /// The operation's name in errors and logs (the trait method's name).
    name: &'static str,
    invocation: ScriptInvocation<'static>,
}

// Keys of the read-write scripts that take or give back a lease.
const RW_ACQUIRE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, FENCE];
const RW_RELEASE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, CHANNEL];

/// The script call for `op` on a lease of `kind` at `key`. The only place that knows which
/// script serves which operation and kind, with which keys and arguments (documented on each
/// script in [`scripts`]).
fn plan(op: Op, kind: Kind, key: &LockKey) -> Result<Call, BackendError> {
    use Kind::{Mutex, Permit, Read, Write};
    let (name, script, names): (_, &'static Script, &[&'static str]) = match (op, kind) {
        (Op::Acquire { .. }, Mutex) => ("acquire", &scripts::ACQUIRE, &[LEASE, FENCE]),
        (Op::Acquire { .. }, Permit { .. }) => (
            "try_acquire_permit",
            &scripts::ACQUIRE_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, FENCE],
        ),
        (Op::Acquire { .. }, Read) => ("try_acquire_read", &scripts::ACQUIRE_READ, RW_ACQUIRE),
        (Op::Acquire { .. }, Write) => ("try_acquire_write", &scripts::ACQUIRE_WRITE, RW_ACQUIRE),
        (Op::Extend { .. }, Mutex) => ("extend", &scripts::EXTEND, &[LEASE]),
        (Op::Extend { .. }, Permit { .. }) => (
            "extend_permit",
            &scripts::EXTEND_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES],
        ),
        (Op::Extend { .. }, Read | Write) => (
            "extend_rw",
            &scripts::EXTEND_RW,
            &[RW_READERS, RW_FENCES, RW_WRITER],
        ),
        (Op::Release { .. }, Mutex) => ("release", &scripts::RELEASE, &[LEASE, CHANNEL]),
        (Op::Release { .. }, Permit { .. }) => (
            "release_permit",
            &scripts::RELEASE_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, CHANNEL],
        ),
        (Op::Release { .. }, Read | Write) => ("release_rw", &scripts::RELEASE_RW, RW_RELEASE),
        (Op::Holders, Mutex) => ("inspect", &scripts::INSPECT, &[LEASE]),
        (Op::Holders, Permit { .. }) => (
            "permit_holders",
            &scripts::PERMIT_HOLDERS,
            &[SEMAPHORE, SEMAPHORE_FENCES],
        ),
        (Op::Holders, Read | Write) => (
            "inspect_rw",
            &scripts::INSPECT_RW,
            &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING],
        ),
        (Op::ForceRelease, Mutex) => ("force_release", &scripts::FORCE_RELEASE, &[LEASE, CHANNEL]),
        (Op::ForceRelease, Permit { .. } | Read | Write) => {
            return Err(BackendError::permanent(format!(
                "the redis backend cannot force-release a {kind:?} lease"
            )));
        }
    };
    let mut invocation = script.prepare_invoke();
    for &suffix in names {
        invocation.key(KeyName { key, suffix });
    }
    match op {
        Op::Acquire { token, ttl } => {
            let ttl_ms = px(ttl);
            invocation.arg(TokenArg(token)).arg(ttl_ms);
            if let Permit { limit } = kind {
                invocation.arg(limit);
            }
            invocation.arg(counter_px(ttl_ms));
        }
        Op::Extend { token, ttl } => {
            invocation.arg(TokenArg(token)).arg(px(ttl));
        }
        Op::Release { token } => {
            invocation.arg(TokenArg(token));
        }
        Op::Holders | Op::ForceRelease => {}
    }
    Ok(Call { name, invocation })
}

/// Run `op` on the lease of `kind` at `key`: plan the script call, run it on `conn`, and
/// return its raw reply, or the Redis error as a [`BackendError`] (transient or permanent,
/// with the Redis error as its source).
pub(crate) async fn dispatch(
    conn: &Arc<Connection>,
    op: Op,
    kind: Kind,
    key: &LockKey,
) -> Result<Reply, BackendError> {
    let Call { name, invocation } = plan(op, kind, key)?;
    let value: Value = conn
        .run(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await
        .map_err(|e| backend_error(name, e))?;
    Ok(Reply::new(name, value))
}

/// An owner token as its hyphenated text (as [`OwnerToken::to_hyphenated`] writes it), written
/// into the command without an intermediate `String`.
struct TokenArg(OwnerToken);

impl ToRedisArgs for TokenArg {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut buf = [0u8; TOKEN_LEN];
        out.write_arg(
            self.0
                .as_uuid()
                .hyphenated()
                .encode_lower(&mut buf)
                .as_bytes(),
        );
    }
}

/// Length of an owner token in its hyphenated form.
const TOKEN_LEN: usize = 36;

/// A ttl in whole milliseconds, rounded up, at least 1, at most [`MAX_PX_MS`].
fn px(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).clamp(1, MAX_PX_MS)
}

/// How long the fence counter outlives the last new lease: `max(10 × ttl, 1 day)`.
fn counter_px(ttl_ms: u64) -> u64 {
    let floor = u64::try_from(MIN_FENCE_COUNTER_TTL.as_millis()).unwrap_or(MAX_PX_MS);
    ttl_ms.saturating_mul(10).max(floor).min(MAX_PX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(px(Duration::from_micros(1)), 1);
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_millis(300)), 300);
        assert_eq!(px(Duration::from_micros(300_001)), 301);
        assert_eq!(px(Duration::MAX), MAX_PX_MS);
        assert_eq!(counter_px(300), 86_400_000);
        assert_eq!(counter_px(10_000_000), 100_000_000);
        assert_eq!(counter_px(u64::MAX), MAX_PX_MS);
    }

    #[test]
    fn token_args_are_hyphenated_tokens() {
        let token = OwnerToken::new();
        assert_eq!(
            TokenArg(token).to_redis_args(),
            vec![token.to_hyphenated().into_bytes()]
        );
    }

    /// Every (operation, kind) pair is planned, with as many keys and arguments as its script
    /// documents; force-releasing anything but a mutex is refused.
    #[test]
    fn plans_every_operation_and_kind() {
        let key = LockKey::new("_lock:", "k").unwrap();
        let (token, ttl) = (OwnerToken::new(), Duration::from_secs(1));
        let kinds = [
            Kind::Mutex,
            Kind::Permit { limit: 3 },
            Kind::Read,
            Kind::Write,
        ];
        let ops = [
            Op::Acquire { token, ttl },
            Op::Extend { token, ttl },
            Op::Release { token },
            Op::Holders,
            Op::ForceRelease,
        ];
        let mut planned = Vec::new();
        for op in ops {
            for kind in kinds {
                match plan(op, kind, &key) {
                    Ok(call) => {
                        let cmd = format!("{:?}", call.invocation);
                        planned.push((call.name, cmd));
                    }
                    Err(e) => {
                        assert!(matches!(op, Op::ForceRelease) && kind != Kind::Mutex, "{e}");
                    }
                }
            }
        }
        let expect = [
            ("acquire", 2, 3),
            ("try_acquire_permit", 3, 4),
            ("try_acquire_read", 5, 3),
            ("try_acquire_write", 5, 3),
            ("extend", 1, 2),
            ("extend_permit", 2, 2),
            ("extend_rw", 3, 2),
            ("extend_rw", 3, 2),
            ("release", 2, 1),
            ("release_permit", 3, 1),
            ("release_rw", 5, 1),
            ("release_rw", 5, 1),
            ("inspect", 1, 0),
            ("permit_holders", 2, 0),
            ("inspect_rw", 4, 0),
            ("inspect_rw", 4, 0),
            ("force_release", 2, 0),
        ];
        assert_eq!(planned.len(), expect.len());
        for ((name, cmd), (want, keys, args)) in planned.iter().zip(expect) {
            assert_eq!(*name, want);
            assert!(
                cmd.contains(&format!("args: {args}, keys: {keys}")),
                "{name}: {cmd}"
            );
        }
    }
}
