//! [`check`]: run a script on a real backend and compare every answer with the [`Model`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use locks_core::backend::{Action, Operation, Outcome};
use locks_core::{AcquireResult, BackendError, Holders, LockBackend, LockKey, OwnerToken};

use super::clock::ModelClock;
use super::ops::{Kind, Op};
use super::reference::{Expected, FenceRule, Model};
use crate::faulty::FaultyBackend;

/// The key prefix [`check`] uses.
pub const KEY_PREFIX: &str = "_lock:";

/// What the backend answered to one step.
enum Observed {
    Acquired(u64),
    Held(Option<Duration>),
    Answer(bool),
    Holders(Holders),
    Error(BackendError),
    Nothing,
}

/// The owner token of owner index `owner`: fixed, so runs are reproducible.
fn owner_token(owner: u8) -> Result<OwnerToken, String> {
    format!("00000000-0000-4000-8000-{:012x}", u64::from(owner) + 1)
        .parse()
        .map_err(|e| format!("owner token for o{owner}: {e}"))
}

/// The owner label (`o1`) of a token, or the token itself if no owner of the script has it.
fn owner_label(token: OwnerToken) -> String {
    (0..=u8::MAX)
        .find(|&o| owner_token(o).is_ok_and(|t| t == token))
        .map_or_else(|| token.to_string(), |o| format!("o{o}"))
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Acquired(fence) => write!(f, "Ok(Acquired(fence {fence}))"),
            Observed::Held(Some(remaining)) => write!(f, "Ok(Held(remaining {remaining:?}))"),
            Observed::Held(None) => write!(f, "Ok(Held(remaining unknown))"),
            Observed::Answer(answer) => write!(f, "Ok({answer})"),
            Observed::Holders(holders) => {
                write!(f, "Ok([")?;
                for (i, info) in holders.leases.iter().enumerate() {
                    write!(
                        f,
                        "{sep}{} {} remaining {:?} fence {}",
                        owner_label(info.owner),
                        info.kind.label(),
                        info.remaining,
                        info.fence,
                        sep = if i == 0 { "" } else { ", " },
                    )?;
                }
                if holders.writer_waiting {
                    write!(f, "; writer waiting")?;
                }
                write!(f, "])")
            }
            Observed::Error(e) => write!(f, "Err({:?}: {e})", e.kind()),
            Observed::Nothing => write!(f, "(no call)"),
        }
    }
}

/// `actual` in `expected - tolerance ..= expected`.
fn close(actual: Duration, expected: Duration, tolerance: Duration) -> bool {
    actual <= expected && actual.saturating_add(tolerance) >= expected
}

fn matches(expected: &Expected, observed: &Observed, tolerance: Duration) -> bool {
    match (expected, observed) {
        (Expected::Acquired(FenceRule::Same(want)), Observed::Acquired(got)) => got == want,
        (Expected::Acquired(FenceRule::Above(last)), Observed::Acquired(got)) => {
            last.is_none_or(|last| *got > last)
        }
        (
            Expected::Held {
                remaining: Some(want),
            },
            Observed::Held(Some(got)),
        ) => close(*got, *want, tolerance),
        (Expected::Held { remaining: None }, Observed::Held(None)) => true,
        (Expected::Answer(want), Observed::Answer(got)) => want == got,
        (Expected::Holders { kind, leases }, Observed::Holders(got)) => {
            !got.writer_waiting
                && got.leases.len() == leases.len()
                && leases.iter().zip(&got.leases).all(|(want, info)| {
                    owner_token(want.owner).is_ok_and(|t| t == info.owner)
                        && Holders::same_side(info.kind, kind.lease_kind())
                        && close(info.remaining, want.remaining, tolerance)
                        && want.fence.is_none_or(|f| f == info.fence)
                })
        }
        (Expected::Transient, Observed::Error(e)) => e.is_transient(),
        (Expected::Retired, Observed::Error(e)) => !e.is_transient(),
        (Expected::Nothing, Observed::Nothing) => true,
        _ => false,
    }
}

/// The run's keys: `_lock:model:<run>:k<i>`, one per key index, shared by both kinds.
struct Names {
    run: String,
}

impl Names {
    fn key(&self, key: u8) -> Result<LockKey, String> {
        LockKey::new(KEY_PREFIX, &format!("model:{}:k{key}", self.run))
            .map_err(|e| format!("key k{key}: {e}"))
    }
}

/// The key and kind of a step that calls the backend; `None` for the others.
fn target(op: &Op) -> Option<(u8, Kind)> {
    match *op {
        Op::TryAcquire { key, kind, .. }
        | Op::Release { key, kind, .. }
        | Op::Extend { key, kind, .. }
        | Op::ForceRelease { key, kind }
        | Op::Holders { key, kind } => Some((key, kind)),
        Op::Advance { .. } | Op::Fault { .. } => None,
    }
}

async fn call(
    backend: &FaultyBackend,
    clock: &dyn ModelClock,
    names: &Names,
    op: &Op,
) -> Result<Observed, String> {
    let ttl = Duration::from_millis;
    let action = match *op {
        Op::TryAcquire { owner, ttl_ms, .. } => Action::TryAcquire {
            token: owner_token(owner)?,
            ttl: ttl(ttl_ms),
        },
        Op::Extend { owner, ttl_ms, .. } => Action::Extend {
            token: owner_token(owner)?,
            ttl: ttl(ttl_ms),
        },
        Op::Release { owner, .. } => Action::Release {
            token: owner_token(owner)?,
        },
        Op::ForceRelease { .. } => Action::ForceRelease,
        Op::Holders { .. } => Action::Holders,
        Op::Advance { ms } => {
            clock.advance(ttl(ms))?;
            return Ok(Observed::Nothing);
        }
        Op::Fault { ops } => {
            backend.fail_next(ops);
            return Ok(Observed::Nothing);
        }
    };
    let (key, kind) = target(op).ok_or_else(|| format!("{op:?} calls no backend method"))?;
    let key = names.key(key)?;
    let outcome = Operation::new(&key, kind.lease_kind(), action)
        .send(backend)
        .await;
    Ok(match outcome {
        Ok(Outcome::Acquire(AcquireResult::Acquired(lease))) => Observed::Acquired(lease.fence),
        Ok(Outcome::Acquire(AcquireResult::Held { remaining })) => Observed::Held(remaining),
        Ok(Outcome::Done(answer)) => Observed::Answer(answer),
        Ok(Outcome::Holders(holders)) => Observed::Holders(holders),
        Ok(other) => return Err(format!("{op:?}: unexpected answer {other:?}")),
        Err(e) => Observed::Error(e),
    })
}

/// Run `ops` on `backend` (wrapped in a [`FaultyBackend`] for [`Op::Fault`]), moving time with
/// `clock`, and compare every answer with the [`Model`].
///
/// Owners are fixed owner tokens; keys are `_lock:model:<run>:k<i>` with a `<run>` unique to
/// this call, so runs can share a store (a key's mutex and permits live under the same key).
/// `clock` must be the store's clock (the memory backend's
/// [`ManualClock`](locks_memory::ManualClock)) or [`RealTime`](super::RealTime) for a store
/// with its own clock. The backend must [`support`](LockBackend::supports) the mutex and
/// permits.
///
/// `Err` names the first step whose answer differs from the model's, with both sides and the
/// script up to that step with what the backend answered.
pub async fn check(
    backend: Arc<dyn LockBackend>,
    clock: &dyn ModelClock,
    ops: &[Op],
) -> Result<(), String> {
    let backend = FaultyBackend::from_arc(backend);
    let names = Names {
        run: OwnerToken::new().to_string(),
    };
    let tolerance = clock.tolerance();
    let mut model = Model::new();
    let mut now = Duration::ZERO;
    let mut trace = String::new();
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op, now);
        let observed = call(&backend, clock, &names, op)
            .await
            .map_err(|e| format!("step {step} `{op:?}`: {e}\nscript so far:\n{trace}"))?;
        if !matches(&expected, &observed, tolerance) {
            return Err(format!(
                "step {step} of {len} `{op:?}` on the {name} backend:\n  \
                 backend answered {observed}\n  model expected   {expected}{tol}\n\
                 script so far (with the backend's answers):\n{trace}  {step}: {op:?} -> {observed}   <-- here",
                len = ops.len(),
                name = backend.name(),
                tol = if tolerance.is_zero()
                    || !matches!(expected, Expected::Held { .. } | Expected::Holders { .. })
                {
                    String::new()
                } else {
                    format!(" (remaining times within {tolerance:?})")
                },
            ));
        }
        match (*op, &observed) {
            (
                Op::TryAcquire {
                    owner, key, kind, ..
                },
                Observed::Acquired(fence),
            ) => model.observe_fence(key, kind, owner, *fence),
            (Op::Advance { ms }, _) => now = now.saturating_add(Duration::from_millis(ms)),
            _ => {}
        }
        trace.push_str(&format!("  {step}: {op:?} -> {observed}\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_have_fixed_tokens_and_labels() {
        assert!(owner_token(0).is_ok_and(|t| owner_label(t) == "o0"));
        assert!(owner_token(2).is_ok_and(|t| owner_label(t) == "o2"));
        let stranger = OwnerToken::new();
        assert_eq!(owner_label(stranger), stranger.to_string());
    }

    #[test]
    fn remaining_times_match_within_the_tolerance_below_the_expectation() {
        let ms = Duration::from_millis;
        assert!(close(ms(100), ms(100), Duration::ZERO));
        assert!(!close(ms(99), ms(100), Duration::ZERO));
        assert!(close(ms(96), ms(100), ms(5)));
        assert!(!close(ms(101), ms(100), ms(5)));
    }
}
