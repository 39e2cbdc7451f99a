//! The script dispatcher: every backend operation reaches Redis through [`dispatch`].
//!
//! An [`Operation`] of the backend contract (on a lease of some [`LeaseKind`]) is planned into
//! one script call — which script, which of the lock's names as `KEYS`, which `ARGV` — in
//! [`plan`], the one `match` that knows the scripts. [`dispatch`] runs the call on the command connection with
//! `EVALSHA` (the redis crate loads the script and retries once after `NOSCRIPT`), lets a
//! response timeout retire the connection (see [`connection`](crate::connection)), maps the
//! Redis error to a transient or permanent [`BackendError`], and hands back the raw
//! [`Reply`] for [`replies`](crate::replies) to decode.

use std::sync::Arc;
use std::time::Duration;

use locks_core::backend::{Action, Operation};
use locks_core::{BackendError, LeaseKind, OwnerToken};
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

/// One planned script call.
struct Call {
    /// The operation's name in errors and logs (the trait method's name).
    name: &'static str,
    invocation: ScriptInvocation<'static>,
}

// Keys of the read-write scripts that take or give back a lease.
const RW_ACQUIRE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, FENCE];
const RW_RELEASE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, CHANNEL];
const RW_ALL: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING];

/// The script call for `op`. The only place that knows which script serves which operation
/// and kind, with which keys and arguments (documented on each script in [`scripts`]).
fn plan(op: Operation<'_>) -> Result<Call, BackendError> {
    use Action as Op;
    use LeaseKind::{Mutex, Permit, Read, Write};
    let Operation {
        key, kind, action, ..
    } = op;
    let (script, names): (&'static Script, &[&'static str]) = match (action, kind) {
        (Op::TryAcquire { .. }, Mutex) => (&scripts::ACQUIRE, &[LEASE, FENCE]),
        (Op::TryAcquire { .. }, Permit { .. }) => (
            &scripts::ACQUIRE_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, FENCE],
        ),
        (Op::TryAcquire { .. }, Read) => (&scripts::ACQUIRE_READ, RW_ACQUIRE),
        (Op::TryAcquire { .. }, Write) => (&scripts::ACQUIRE_WRITE, RW_ACQUIRE),
        (Op::Extend { .. }, Mutex) => (&scripts::EXTEND, &[LEASE]),
        (Op::Extend { .. }, Permit { .. }) => {
            (&scripts::EXTEND_PERMIT, &[SEMAPHORE, SEMAPHORE_FENCES])
        }
        // One script serves a reader and a writer: a token holds one or the other.
        (Op::Extend { .. }, Read | Write) => {
            (&scripts::EXTEND_RW, &[RW_READERS, RW_FENCES, RW_WRITER])
        }
        (Op::Release { .. }, Mutex) => (&scripts::RELEASE, &[LEASE, CHANNEL]),
        (Op::Release { .. }, Permit { .. }) => (
            &scripts::RELEASE_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, CHANNEL],
        ),
        (Op::Release { .. }, Read | Write) => (&scripts::RELEASE_RW, RW_RELEASE),
        (Op::Holders, Mutex) => (&scripts::INSPECT, &[LEASE]),
        (Op::Holders, Permit { .. }) => (&scripts::PERMIT_HOLDERS, &[SEMAPHORE, SEMAPHORE_FENCES]),
        (Op::Holders, Read | Write) => (&scripts::INSPECT_RW, RW_ALL),
        (Op::ForceRelease, Mutex) => (&scripts::FORCE_RELEASE, &[LEASE, CHANNEL]),
        (Op::ForceRelease, Permit { .. }) => (
            &scripts::FORCE_RELEASE,
            &[SEMAPHORE, SEMAPHORE_FENCES, CHANNEL],
        ),
        (Op::ForceRelease, Read | Write) => (&scripts::FORCE_RELEASE, RW_RELEASE),
        _ => return Err(BackendError::unsupported("redis", kind)),
    };
    let mut invocation = script.prepare_invoke();
    for &suffix in names {
        invocation.key(KeyName { key, suffix });
    }
    match action {
        Op::TryAcquire { token, ttl } => {
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
        _ => {}
    }
    Ok(Call {
        name: op.name(),
        invocation,
    })
}

/// Run `op`: plan the script call, run it on `conn`, and return its raw reply, or the Redis
/// error as a [`BackendError`] (transient or permanent, with the Redis error as its source).
pub(crate) async fn dispatch(
    conn: &Arc<Connection>,
    op: Operation<'_>,
) -> Result<Reply, BackendError> {
    let Call { name, invocation } = plan(op)?;
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
    /// documents.
    #[test]
    fn plans_every_operation_and_kind() {
        use locks_core::LockKey;
        let key = LockKey::new("_lock:", "k").unwrap();
        let (token, ttl) = (OwnerToken::new(), Duration::from_secs(1));
        let kinds = [
            LeaseKind::Mutex,
            LeaseKind::Permit { limit: 3 },
            LeaseKind::Read,
            LeaseKind::Write,
        ];
        let mut planned = Vec::new();
        for kind in kinds {
            let key = &key;
            for action in [
                Action::TryAcquire { token, ttl },
                Action::Extend { token, ttl },
                Action::Release { token },
                Action::Holders,
                Action::ForceRelease,
            ] {
                let op = Operation::new(key, kind, action);
                let call = plan(op).unwrap();
                planned.push((kind, call.name, format!("{:?}", call.invocation)));
            }
        }
        // (keys, args) per operation, for mutex, permit, read, write.
        let expect = [
            [(2, 3), (1, 2), (2, 1), (1, 0), (2, 0)],
            [(3, 4), (2, 2), (3, 1), (2, 0), (3, 0)],
            [(5, 3), (3, 2), (5, 1), (4, 0), (5, 0)],
            [(5, 3), (3, 2), (5, 1), (4, 0), (5, 0)],
        ];
        assert_eq!(planned.len(), 20);
        for ((kind, name, cmd), (keys, args)) in planned.iter().zip(expect.iter().flatten()) {
            assert!(
                cmd.contains(&format!("args: {args}, keys: {keys}")),
                "{kind} {name}: {cmd}"
            );
        }
    }
}
