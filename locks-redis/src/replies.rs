//! Decoding script replies: a [`Reply`] is what the [dispatcher](crate::dispatch) got back for
//! one operation, and each method turns it into what the [`LockBackend`](locks_core::LockBackend)
//! method returns. A reply the scripts never produce (the store holds something this backend
//! did not write) is a permanent "malformed reply" error naming the operation.

use std::time::Duration;

use locks_core::{AcquireResult, BackendError, Holders, Lease, LeaseInfo, LeaseKind, OwnerToken};
use redis::Value;

use crate::error::malformed;

/// The raw reply of one script call, with the operation's name for error messages.
#[derive(Debug)]
pub(crate) struct Reply {
    op: &'static str,
    value: Value,
}

impl Reply {
    pub(crate) fn new(op: &'static str, value: Value) -> Self {
        Reply { op, value }
    }

    /// An acquire script's `{status, value}`: `{1, fence}`, or `{0, remaining ms}` (a negative
    /// remaining time means "unknown").
    pub(crate) fn acquired(self) -> Result<AcquireResult, BackendError> {
        let op = self.op;
        let [status, value] = pair(op, self.value)?;
        match status {
            Value::Int(1) => Ok(AcquireResult::Acquired(Lease::new(parse_fence(
                op, &value,
            )?))),
            Value::Int(0) => match value {
                Value::Int(ms) => Ok(AcquireResult::Held {
                    remaining: u64::try_from(ms).ok().map(Duration::from_millis),
                }),
                other => Err(malformed(op, format_args!("pttl {other:?}"))),
            },
            other => Err(malformed(op, format_args!("status {other:?}"))),
        }
    }

    /// A compare-and-act script's `1` (done) or `0` (not the owner, or nothing there).
    pub(crate) fn done(self) -> Result<bool, BackendError> {
        match self.value {
            Value::Int(n) => Ok(n == 1),
            other => Err(malformed(self.op, format_args!("{other:?}"))),
        }
    }

    /// The holders of `kind`: the `INSPECT` (`INSPECT_FAIR`) script's nil or
    /// `{owner, fence, pttl}` for a mutex (a fair mutex); the flat `{token, remaining ms, fence, ...}` members for permits; the
    /// `INSPECT_RW` script's `{readers, {owner, fence, pttl} or {}, 0|1}` for a read-write lock.
    pub(crate) fn holders(self, kind: LeaseKind) -> Result<Holders, BackendError> {
        let op = self.op;
        match kind {
            LeaseKind::Mutex | LeaseKind::FairMutex => match self.value {
                Value::Nil => Ok(Holders::default()),
                Value::Array(parts) => match parts.as_slice() {
                    [owner, fence, pttl] => Ok(Holders::new(vec![lease_info(
                        op, kind, owner, fence, pttl,
                    )?])),
                    _ => Err(malformed(op, format_args!("{} parts", parts.len()))),
                },
                other => Err(malformed(op, format_args!("{other:?}"))),
            },
            LeaseKind::Permit { .. } => Ok(Holders::new(parse_members(op, kind, &self.value)?)),
            _ => self.rw(),
        }
    }

    fn rw(self) -> Result<Holders, BackendError> {
        let op = self.op;
        let Value::Array(parts) = &self.value else {
            return Err(malformed(op, format_args!("{:?}", self.value)));
        };
        let [readers, writer, waiting] = parts.as_slice() else {
            return Err(malformed(op, format_args!("{} parts", parts.len())));
        };
        let mut leases = parse_members(op, LeaseKind::Read, readers)?;
        match writer {
            Value::Array(w) => match w.as_slice() {
                [] => {}
                [owner, fence, pttl] => {
                    leases.push(lease_info(op, LeaseKind::Write, owner, fence, pttl)?);
                }
                _ => return Err(malformed(op, format_args!("writer {writer:?}"))),
            },
            other => return Err(malformed(op, format_args!("writer {other:?}"))),
        }
        let waiting = match waiting {
            Value::Int(n) => *n != 0,
            other => return Err(malformed(op, format_args!("waiting {other:?}"))),
        };
        Ok(Holders::new(leases).with_writer_waiting(waiting))
    }
}

/// A two-element array reply.
fn pair(op: &'static str, value: Value) -> Result<[Value; 2], BackendError> {
    match value {
        Value::Array(parts) => <[Value; 2]>::try_from(parts)
            .map_err(|parts| malformed(op, format_args!("{} parts", parts.len()))),
        other => Err(malformed(op, format_args!("{other:?}"))),
    }
}

fn lease_info(
    op: &'static str,
    kind: LeaseKind,
    owner: &Value,
    fence: &Value,
    pttl: &Value,
) -> Result<LeaseInfo, BackendError> {
    Ok(LeaseInfo::new(
        kind,
        parse_token(op, owner)?,
        parse_remaining(op, pttl)?,
        parse_fence(op, fence)?,
    ))
}

/// A non-negative integer sent as a decimal string (fences: `%.0f` in Lua) or an integer.
fn parse_u64(v: &Value) -> Option<u64> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn parse_fence(op: &'static str, v: &Value) -> Result<u64, BackendError> {
    parse_u64(v).ok_or_else(|| malformed(op, format_args!("fence {v:?}")))
}

fn parse_token(op: &'static str, v: &Value) -> Result<OwnerToken, BackendError> {
    let text = match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        _ => None,
    };
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| malformed(op, format_args!("owner {v:?}")))
}

/// A remaining time in ms as a script computed it (`score - TIME`, or a `PTTL`): `-1` (no
/// expiry: something outside this backend persisted the key) is "forever".
fn parse_remaining(op: &'static str, v: &Value) -> Result<Duration, BackendError> {
    match v {
        Value::Int(-1) => Ok(Duration::MAX),
        Value::Int(ms) => Ok(Duration::from_millis(u64::try_from(*ms).unwrap_or(0))),
        other => Err(malformed(op, format_args!("remaining {other:?}"))),
    }
}

fn parse_members(
    op: &'static str,
    kind: LeaseKind,
    v: &Value,
) -> Result<Vec<LeaseInfo>, BackendError> {
    let Value::Array(items) = v else {
        return Err(malformed(op, format_args!("members {v:?}")));
    };
    if items.len() % 3 != 0 {
        return Err(malformed(
            op,
            format_args!("{} values for token/remaining/fence triples", items.len()),
        ));
    }
    let mut out = items
        .chunks_exact(3)
        .map(|m| lease_info(op, kind, &m[0], &m[2], &m[1]))
        .collect::<Result<Vec<_>, BackendError>>()?;
    out.sort_by_key(|i| i.fence);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bulk-string reply (for the crate's reply-decoding tests).
    pub(crate) fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_fences() {
        assert_eq!(
            parse_u64(&bulk("1734000000000123")),
            Some(1_734_000_000_000_123)
        );
        assert_eq!(parse_u64(&Value::Int(7)), Some(7));
        assert_eq!(parse_u64(&Value::Int(-7)), None);
        assert_eq!(parse_u64(&Value::Nil), None);
        assert_eq!(parse_u64(&bulk("1.5e15")), None);
    }

    #[test]
    fn decodes_acquire_replies() {
        let reply = |v| Reply::new("acquire", Value::Array(v));
        assert_eq!(
            reply(vec![Value::Int(1), bulk("42")]).acquired().ok(),
            Some(AcquireResult::Acquired(Lease::new(42)))
        );
        assert_eq!(
            reply(vec![Value::Int(0), Value::Int(1500)]).acquired().ok(),
            Some(AcquireResult::Held {
                remaining: Some(Duration::from_millis(1500))
            })
        );
        assert_eq!(
            reply(vec![Value::Int(0), Value::Int(-1)]).acquired().ok(),
            Some(AcquireResult::Held { remaining: None })
        );
        for bad in [
            vec![Value::Int(2), bulk("42")],
            vec![Value::Int(1), bulk("x")],
            vec![Value::Int(1)],
        ] {
            let e = reply(bad).acquired().err();
            assert!(e.is_some_and(|e| !e.is_transient()));
        }
    }

    #[test]
    fn decodes_holders_of_every_kind() {
        let token = OwnerToken::new();
        let t = bulk(&token.to_hyphenated());
        let mutex = Reply::new(
            "holders",
            Value::Array(vec![t.clone(), bulk("9"), Value::Int(-1)]),
        );
        assert_eq!(
            mutex.holders(LeaseKind::Mutex).ok(),
            Some(Holders::new(vec![LeaseInfo::new(
                LeaseKind::Mutex,
                token,
                Duration::MAX,
                9
            )]))
        );
        let none = Reply::new("holders", Value::Nil).holders(LeaseKind::Mutex);
        assert_eq!(none.ok(), Some(Holders::default()));

        let other = OwnerToken::new();
        let members = Value::Array(vec![
            t.clone(),
            Value::Int(100),
            bulk("8"),
            bulk(&other.to_hyphenated()),
            Value::Int(200),
            bulk("3"),
        ]);
        let permit = LeaseKind::Permit { limit: 2 };
        let got = Reply::new("holders", members.clone()).holders(permit).ok();
        assert_eq!(
            got,
            Some(Holders::new(vec![
                LeaseInfo::new(permit, other, Duration::from_millis(200), 3),
                LeaseInfo::new(permit, token, Duration::from_millis(100), 8),
            ]))
        );

        let rw = Value::Array(vec![members, Value::Array(vec![]), Value::Int(1)]);
        let info = Reply::new("holders", rw).holders(LeaseKind::Read).ok();
        assert!(info.is_some_and(|h| h.leases.len() == 2
            && h.leases.iter().all(|l| l.kind == LeaseKind::Read)
            && h.writer_waiting));

        assert_eq!(Reply::new("release", Value::Int(1)).done().ok(), Some(true));
        assert_eq!(
            Reply::new("release", Value::Int(0)).done().ok(),
            Some(false)
        );
        assert!(Reply::new("release", Value::Nil).done().is_err());
    }
}
