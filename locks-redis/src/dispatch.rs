//! The script dispatcher: every backend operation reaches Redis through [`dispatch`].
//!
//! An [`Operation`] of the backend contract (on a lease of some [`LeaseKind`]) is planned into
//! one script call — which script, which of the lock's names as `KEYS`, which `ARGV` — in
//! [`plan`], the one `match` that knows the scripts. [`dispatch`] first lets the
//! [eviction-policy gate](crate::policy) re-check the server after a reconnection, then runs the
//! call on the command connection with `EVALSHA` (the redis crate loads the script and retries
//! once after `NOSCRIPT`), lets a response timeout retire the connection (see
//! [`connection`](crate::connection)), maps the Redis error to a transient or permanent
//! [`BackendError`], and hands back the raw [`Reply`] for [`replies`](crate::replies) to decode.
//!
//! A call refused with `OOM` (the server is at `maxmemory`) is sent once more with the plan's
//! `allow-oom` fallback, if it has one (see [`scripts`](crate::scripts)): renewals of permits
//! and readers, and acquires of a permit or read lease the caller already holds, succeed on a
//! full server. The normal path stays one round trip; only an `OOM` costs a second one. When
//! the fallback finds nothing to renew (a new lease), or cannot run (Redis < 7.0), the answer
//! is the original `OOM` error: permanent, with a
//! [`RedisBackendError::OutOfMemory`](crate::RedisBackendError::OutOfMemory) source.

use std::sync::Arc;
use std::time::Duration;

use locks_core::backend::{Action, Operation};
use locks_core::{BackendError, LeaseKind, LockKey, OwnerToken};
use redis::{Cmd, ErrorKind, RedisError, RedisWrite, Script, ServerErrorKind, ToRedisArgs, Value};

use crate::connection::Connection;
use crate::counter::{FenceCounterTtl, MAX_PX_MS};
use crate::error::{backend_error, is_oom, is_transient};
use crate::functions::{Calls, read_only};
use crate::keys::{
    CHANNEL, FAIR, FAIR_EXPIRY, FAIR_QUEUE, FAIR_TTLS, FENCE, KeyName, LEASE, RETIRED, RW_FENCES,
    RW_READERS, RW_WAITING, RW_WRITER, SEMAPHORE, SEMAPHORE_FENCES,
};
use crate::policy::PolicyGate;
use crate::replies::Reply;
use crate::scripts::{self, Lua};

/// How long a store remembers a retired owner token (see [`scripts::RELEASE`]): a late acquire
/// with it that arrives within this time after the release is refused. Requests held longer
/// than this in the network (or on a connection the client gave up on) are beyond what the
/// backend protects against; such a request could leave a lease nobody holds, which blocks
/// the key until its ttl ends (exclusion is never at stake: nobody believes they hold it).
pub(crate) const RETIRED_MS: u64 = 120_000;

/// One planned script call.
struct Call<'a> {
    /// The operation's name in errors and logs (the trait method's name).
    name: &'static str,
    script: &'static Lua,
    /// The `allow-oom` script sent with the same keys and arguments after an `OOM` refusal.
    oom_fallback: Option<&'static Lua>,
    key: &'a LockKey,
    /// The suffixes of the lock's names passed as `KEYS`.
    names: &'static [&'static str],
    action: Action,
    kind: LeaseKind,
    /// How long the fence counter is kept after an acquire or renewal.
    counter: FenceCounterTtl,
}

// Keys of the read-write scripts that take, renew or give back a lease.
const RW_ACQUIRE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, FENCE, RETIRED];
const RW_EXTEND: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, FENCE];
const RW_RELEASE: &[&str] = &[
    RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, CHANNEL, RETIRED,
];
const RW_FORCE_RELEASE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, CHANNEL];
const RW_ALL: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING];
// Keys of the fair mutex scripts.
pub(crate) const FAIR_ACQUIRE: &[&str] =
    &[FAIR, FAIR_QUEUE, FAIR_EXPIRY, FAIR_TTLS, FENCE, RETIRED];
pub(crate) const FAIR_RELEASE: &[&str] = &[
    FAIR,
    FAIR_QUEUE,
    FAIR_EXPIRY,
    FAIR_TTLS,
    FENCE,
    CHANNEL,
    RETIRED,
];
const FAIR_FORCE_RELEASE: &[&str] = &[FAIR, FAIR_QUEUE, FAIR_EXPIRY, FAIR_TTLS, CHANNEL];

/// How long a queued fair waiter keeps its place ([`locks_core::FAIR_WAITER_TTL`]), in ms.
const FAIR_WAITER_MS: u64 = locks_core::FAIR_WAITER_TTL.as_millis() as u64;

/// The script call for `op`, with fence counters kept as `counter` says. The only place that
/// knows which script serves which operation and kind, with which keys and arguments
/// (documented on each script in [`scripts`]).
fn plan(op: Operation<'_>, counter: FenceCounterTtl) -> Result<Call<'_>, BackendError> {
    use Action as Op;
    use LeaseKind::{FairMutex, Mutex, Permit, Read, Write};
    let Operation {
        key, kind, action, ..
    } = op;
    let (script, names): (&'static Lua, &'static [&'static str]) = match (action, kind) {
        (Op::TryAcquire { .. }, Mutex) => (&scripts::ACQUIRE, &[LEASE, FENCE, RETIRED]),
        (Op::TryAcquire { .. }, Permit { .. }) => (
            &scripts::ACQUIRE_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, FENCE, RETIRED],
        ),
        (Op::TryAcquire { .. }, Read) => (&scripts::ACQUIRE_READ, RW_ACQUIRE),
        (Op::TryAcquire { .. }, Write) => (&scripts::ACQUIRE_WRITE, RW_ACQUIRE),
        // Renewals refresh the fence counter too, so it outlives every live lease.
        (Op::Extend { .. }, Mutex) => (&scripts::EXTEND, &[LEASE, FENCE]),
        (Op::Extend { .. }, Permit { .. }) => (
            &scripts::EXTEND_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, FENCE],
        ),
        // One script serves a reader and a writer: a token holds one or the other.
        (Op::Extend { .. }, Read | Write) => (&scripts::EXTEND_RW, RW_EXTEND),
        (Op::Release { .. }, Mutex) => (&scripts::RELEASE, &[LEASE, CHANNEL, RETIRED]),
        (Op::Release { .. }, Permit { .. }) => (
            &scripts::RELEASE_PERMIT,
            &[SEMAPHORE, SEMAPHORE_FENCES, CHANNEL, RETIRED],
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
        (Op::ForceRelease, Read | Write) => (&scripts::FORCE_RELEASE, RW_FORCE_RELEASE),
        (Op::TryAcquire { .. }, FairMutex) => (&scripts::ACQUIRE_FAIR, FAIR_ACQUIRE),
        (Op::Extend { .. }, FairMutex) => (&scripts::EXTEND_FAIR, &[FAIR, FENCE]),
        (Op::Release { .. }, FairMutex) => (&scripts::RELEASE_FAIR, FAIR_RELEASE),
        (Op::Holders, FairMutex) => (&scripts::INSPECT_FAIR, &[FAIR]),
        (Op::ForceRelease, FairMutex) => (&scripts::FORCE_RELEASE, FAIR_FORCE_RELEASE),
        _ => return Err(BackendError::unsupported("redis", kind)),
    };
    // Only the scripts a full server refuses for an existing lease (they move a member's score
    // with `ZADD XX`) have one; the mutex and writer paths use `PEXPIRE`, which is never
    // refused, and releases only delete.
    let oom_fallback: Option<&'static Lua> = match (action, kind) {
        (Op::TryAcquire { .. }, Permit { .. } | Read) => Some(&scripts::REACQUIRE_MEMBER_OOM),
        (Op::Extend { .. }, Permit { .. }) => Some(&scripts::EXTEND_PERMIT_OOM),
        (Op::Extend { .. }, Read | Write) => Some(&scripts::EXTEND_RW_OOM),
        _ => None,
    };
    Ok(Call {
        name: op.name(),
        script,
        oom_fallback,
        key,
        names,
        action,
        kind,
        counter,
    })
}

/// A script call, ready to send in one of the two forms.
enum Ready {
    /// `EVALSHA` of `script`, loaded with `SCRIPT LOAD` and sent again after `NOSCRIPT`.
    Eval {
        cmd: Cmd,
        script: &'static Script,
    },
    Fcall(Cmd),
}

/// Room for the command name, the script's hash or function name and the key count, every
/// key and argument: one allocation for the arguments' bytes and one for their ends in the
/// common case (the keys of a long lock name may need one more).
fn command(name: &str, arg_count: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(arg_count + 3, 384);
    cmd.arg(name);
    cmd
}

impl Call<'_> {
    /// Write this call's keys and arguments into `out`.
    fn fill(&self, out: &mut Cmd) {
        use Action as Op;
        for &suffix in self.names {
            out.arg(KeyName {
                key: self.key,
                suffix,
            });
        }
        match self.action {
            Op::TryAcquire { token, ttl } => {
                let ttl_ms = px(ttl);
                out.arg(TokenArg(token));
                out.arg(ttl_ms);
                if let LeaseKind::Permit { limit } = self.kind {
                    out.arg(limit);
                }
                out.arg(self.counter.px(ttl_ms));
                if self.kind == LeaseKind::FairMutex {
                    out.arg(FAIR_WAITER_MS);
                }
            }
            Op::Extend { token, ttl } => {
                let ttl_ms = px(ttl);
                out.arg(TokenArg(token));
                out.arg(ttl_ms);
                out.arg(self.counter.px(ttl_ms));
            }
            Op::Release { token } => {
                out.arg(TokenArg(token));
                out.arg(RETIRED_MS);
            }
            _ => {}
        }
    }

    /// `script` with this call's keys and arguments, as `calls` says, written straight into
    /// one command (a `ScriptInvocation` would copy every key and argument into a vector of
    /// its own first).
    fn ready(&self, script: &'static Lua, calls: Calls) -> Ready {
        let args = self.names.len() + 4;
        let evalsha = |script: &'static Script| {
            let mut cmd = command("EVALSHA", args);
            cmd.arg(script.get_hash()).arg(self.names.len());
            self.fill(&mut cmd);
            Ready::Eval { cmd, script }
        };
        match calls {
            Calls::Eval => evalsha(script.eval()),
            // Redis Cluster (issue 12): releases announced with `SPUBLISH`.
            Calls::EvalSharded => evalsha(script.eval_sharded()),
            Calls::Functions => {
                let mut cmd = command(
                    if read_only(script) {
                        "FCALL_RO"
                    } else {
                        "FCALL"
                    },
                    args,
                );
                cmd.arg(script.function).arg(self.names.len());
                self.fill(&mut cmd);
                Ready::Fcall(cmd)
            }
        }
    }
}

/// Run one script call on `conn`: an `EVALSHA` whose script the server does not have
/// (`NOSCRIPT`: restarted, `SCRIPT FLUSH`, a failover to a fresh replica) is loaded and sent
/// again once.
async fn run(conn: &Arc<Connection>, ready: Ready) -> Result<Value, RedisError> {
    conn.run(|mut c| async move {
        match ready {
            Ready::Eval { cmd, script } => match cmd.query_async(&mut c).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load_async(&mut c).await?;
                    cmd.query_async(&mut c).await
                }
                other => other,
            },
            Ready::Fcall(cmd) => cmd.query_async(&mut c).await,
        }
    })
    .await
}

/// Run `op`: let `gate` re-check the eviction policy if the connection may have been replaced,
/// plan the script call (fence counters kept as `counter` says), run it on `conn` (and its
/// `allow-oom` fallback after an `OOM`), and return its raw reply, or the Redis error as a
/// [`BackendError`] (transient or permanent, with the Redis error as its source).
pub(crate) async fn dispatch(
    conn: &Arc<Connection>,
    gate: &PolicyGate,
    counter: FenceCounterTtl,
    op: Operation<'_>,
) -> Result<Reply, BackendError> {
    let call = plan(op, counter)?;
    let name = call.name;
    gate.ensure(conn, name).await?;
    let calls = gate.calls();
    let refused = match run(conn, call.ready(call.script, calls)).await {
        Ok(value) => return Ok(Reply::new(name, value)),
        Err(e) if is_oom(&e) => e,
        Err(e) => return Err(backend_error(name, e)),
    };
    let Some(fallback) = call.oom_fallback else {
        return Err(backend_error(name, refused));
    };
    match run(conn, call.ready(fallback, calls)).await {
        // Nothing of the caller's to renew: a new lease, refused.
        Ok(Value::Nil) => Err(backend_error(name, refused)),
        Ok(value) => Ok(Reply::new(name, value)),
        // It may or may not have run: say so, like any dropped connection.
        Err(e) if is_transient(&e) => Err(backend_error(name, e)),
        Err(e) => {
            tracing::warn!(
                operation = name,
                error = %e,
                "the allow-oom fallback script failed (it needs Redis >= 7.0)"
            );
            Err(backend_error(name, refused))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of `call` sent as `form`: the command, the script's hash or the function's
    /// name, the key count, the keys, the arguments.
    fn parts(call: &Call<'_>, script: &'static Lua, form: Calls) -> Vec<Vec<u8>> {
        let (Ready::Eval { cmd, .. } | Ready::Fcall(cmd)) = call.ready(script, form);
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(px(Duration::from_micros(1)), 1);
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_millis(300)), 300);
        assert_eq!(px(Duration::from_micros(300_001)), 301);
        assert_eq!(px(Duration::MAX), MAX_PX_MS);
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
            LeaseKind::FairMutex,
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
                let call = plan(op, FenceCounterTtl::DEFAULT).unwrap();
                let eval = parts(&call, call.script, Calls::Eval);
                assert_eq!(eval[0], b"EVALSHA");
                assert_eq!(eval[1], call.script.eval().get_hash().as_bytes());
                let keys: usize = String::from_utf8_lossy(&eval[2]).parse().unwrap();
                assert_eq!(keys, call.names.len());
                planned.push((kind, call.name, (keys, eval.len() - 3 - keys)));
                if let Some(fallback) = call.oom_fallback {
                    // Same keys and arguments.
                    assert_eq!(parts(&call, fallback, Calls::Eval)[2..], eval[2..]);
                }
                // As a function call: name, key count, the same keys and arguments.
                let fcall = parts(&call, call.script, Calls::Functions);
                assert!(fcall[0] == b"FCALL" || fcall[0] == b"FCALL_RO");
                assert_eq!(fcall[1], call.script.function.as_bytes());
                assert_eq!(fcall[2..], eval[2..]);
                // The cluster form: another script, the same keys and arguments.
                let sharded = parts(&call, call.script, Calls::EvalSharded);
                assert_eq!(sharded[1], call.script.eval_sharded().get_hash().as_bytes());
                assert_eq!(sharded[2..], eval[2..]);
            }
        }
        // (keys, args) per operation, for mutex, permit, read, write, fair mutex.
        let expect = [
            [(3, 3), (2, 3), (3, 2), (1, 0), (2, 0)],
            [(4, 4), (3, 3), (4, 2), (2, 0), (3, 0)],
            [(6, 3), (4, 3), (6, 2), (4, 0), (5, 0)],
            [(6, 3), (4, 3), (6, 2), (4, 0), (5, 0)],
            [(6, 4), (2, 3), (7, 2), (1, 0), (5, 0)],
        ];
        assert_eq!(planned.len(), 25);
        for ((kind, name, shape), expected) in planned.iter().zip(expect.iter().flatten()) {
            assert_eq!(shape, expected, "{kind} {name}: (keys, args)");
        }
    }
}
