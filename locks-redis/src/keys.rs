//! Where a lock lives in Redis: the one function that maps a [`LockKey`] to Redis names.

use std::io::Write;

use locks_core::LockKey;
use redis::{RedisWrite, ToRedisArgs};

/// The Redis names of one lock, all sharing the hash tag `{name}` so that every script touches
/// a single Redis Cluster slot.
///
/// | what | name (prefix `_lock:`, name `payment:42`) | type |
/// |---|---|---|
/// | lease | `_lock:{payment:42}` | hash `owner` (token), `fence` (decimal), with a `PX` ttl |
/// | fence counter | `_lock:{payment:42}:fence` | string, the last fence handed out (one counter for the lease, permits, readers and writer) |
/// | release channel | `_lock:{payment:42}:released` | pub/sub channel (every kind of release) |
/// | semaphore permits | `_lock:{payment:42}:sem` | sorted set: member = owner token, score = expiry in ms by the server's `TIME` |
/// | permit fences | `_lock:{payment:42}:sem:fences` | hash: owner token → fence |
/// | readers | `_lock:{payment:42}:rw:readers` | sorted set: member = owner token, score = expiry in ms by the server's `TIME` |
/// | reader fences | `_lock:{payment:42}:rw:fences` | hash: owner token → fence |
/// | writer | `_lock:{payment:42}:rw:writer` | hash `owner`, `fence`, with a `PX` ttl |
/// | waiting writer | `_lock:{payment:42}:rw:waiting` | string: the waiting writer's token, with a `PX` ttl |
///
/// The sorted sets and their fence hashes carry a `PEXPIRE` of their longest-living member,
/// so an abandoned semaphore or read-write lock disappears by itself.
///
/// The prefix comes from [`LockKey::prefix`] (it never contains braces), the name from
/// [`LockKey::name`], byte for byte: spaces, colons, braces and any UTF-8 text are kept as they
/// are. Redis Cluster hashes the text between the first `{` and the next `}`; a name that
/// contains `}` therefore has a shorter hash tag, but still one shared by all the names.
/// (A name that *starts* with `}` gives an empty tag, which Redis Cluster ignores: such keys
/// only work on a standalone server.)
///
/// ```
/// use locks_core::LockKey;
/// use locks_redis::RedisKeys;
///
/// let keys = RedisKeys::new(&LockKey::new("_lock:", "payment:42").unwrap());
/// assert_eq!(keys.lease, "_lock:{payment:42}");
/// assert_eq!(keys.fence, "_lock:{payment:42}:fence");
/// assert_eq!(keys.channel, "_lock:{payment:42}:released");
/// assert_eq!(keys.semaphore, "_lock:{payment:42}:sem");
/// assert_eq!(keys.rw_writer, "_lock:{payment:42}:rw:writer");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(not(feature = "layout"), allow(dead_code))]
pub struct RedisKeys {
    /// The lease hash: `{prefix}{{{name}}}`.
    pub lease: String,
    /// The fence counter: the lease key followed by `:fence`.
    pub fence: String,
    /// The pub/sub channel a release is announced on: the lease key followed by `:released`.
    pub channel: String,
    /// The semaphore's permits (sorted set, token scored by expiry in ms): `…:sem`.
    pub semaphore: String,
    /// The fences of the semaphore's permits (hash, token → fence): `…:sem:fences`.
    pub semaphore_fences: String,
    /// The read-write lock's readers (sorted set, token scored by expiry in ms):
    /// `…:rw:readers`.
    pub rw_readers: String,
    /// The fences of the readers (hash, token → fence): `…:rw:fences`.
    pub rw_fences: String,
    /// The read-write lock's writer (hash `owner`, `fence`, with a `PX` ttl): `…:rw:writer`.
    pub rw_writer: String,
    /// The waiting writer's mark (string token, with a `PX` ttl): `…:rw:waiting`.
    pub rw_waiting: String,
}

// The suffix of each name after the lease key `{prefix}{{{name}}}`: the whole layout.

/// The lease hash itself.
pub(crate) const LEASE: &str = "";
/// The fence counter.
pub(crate) const FENCE: &str = ":fence";
/// The release channel.
pub(crate) const CHANNEL: &str = ":released";
/// The semaphore's permits.
pub(crate) const SEMAPHORE: &str = ":sem";
/// The fences of the permits.
pub(crate) const SEMAPHORE_FENCES: &str = ":sem:fences";
/// The read-write lock's readers.
pub(crate) const RW_READERS: &str = ":rw:readers";
/// The fences of the readers.
pub(crate) const RW_FENCES: &str = ":rw:fences";
/// The read-write lock's writer.
pub(crate) const RW_WRITER: &str = ":rw:writer";
/// The waiting writer's mark.
pub(crate) const RW_WAITING: &str = ":rw:waiting";

/// `{prefix}{{{name}}}` followed by `suffix`.
pub(crate) fn name(key: &LockKey, suffix: &str) -> String {
    let (prefix, name) = (key.prefix(), key.name());
    let mut out = String::with_capacity(prefix.len() + name.len() + 2 + suffix.len());
    out.push_str(prefix);
    out.push('{');
    out.push_str(name);
    out.push('}');
    out.push_str(suffix);
    out
}

/// One Redis name of a lock (the lease key followed by `suffix`) as a command argument,
/// written straight into the command's buffer: the hot paths build no `String` per name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyName<'a> {
    pub(crate) key: &'a LockKey,
    pub(crate) suffix: &'static str,
}

impl ToRedisArgs for KeyName<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut arg = out.writer_for_next_arg();
        for part in [self.key.prefix(), "{", self.key.name(), "}", self.suffix] {
            // The writer appends to an in-memory buffer: it cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

#[cfg_attr(not(feature = "layout"), allow(dead_code))]
impl RedisKeys {
    /// The Redis names of `key`.
    pub fn new(key: &LockKey) -> Self {
        RedisKeys {
            lease: name(key, LEASE),
            fence: name(key, FENCE),
            channel: name(key, CHANNEL),
            semaphore: name(key, SEMAPHORE),
            semaphore_fences: name(key, SEMAPHORE_FENCES),
            rw_readers: name(key, RW_READERS),
            rw_fences: name(key, RW_FENCES),
            rw_writer: name(key, RW_WRITER),
            rw_waiting: name(key, RW_WAITING),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_the_name_byte_for_byte() {
        for name in ["a b", "{tag}", "x:y:z", "zahlung-übersicht-支付", "}{"] {
            let keys = RedisKeys::new(&LockKey::new("_lock:", name).unwrap());
            assert_eq!(keys.lease, format!("_lock:{{{name}}}"));
            assert_eq!(keys.fence, format!("_lock:{{{name}}}:fence"));
            assert_eq!(keys.channel, format!("_lock:{{{name}}}:released"));
            assert_eq!(keys.semaphore, format!("_lock:{{{name}}}:sem"));
            assert_eq!(
                keys.semaphore_fences,
                format!("_lock:{{{name}}}:sem:fences")
            );
            assert_eq!(keys.rw_readers, format!("_lock:{{{name}}}:rw:readers"));
            assert_eq!(keys.rw_fences, format!("_lock:{{{name}}}:rw:fences"));
            assert_eq!(keys.rw_writer, format!("_lock:{{{name}}}:rw:writer"));
            assert_eq!(keys.rw_waiting, format!("_lock:{{{name}}}:rw:waiting"));
        }
        let keys = RedisKeys::new(&LockKey::new("", "k").unwrap());
        assert_eq!(keys.lease, "{k}");
    }

    #[test]
    fn key_name_arguments_match_the_layout() {
        for name in ["a b", "{tag}", "x:y:z", "zahlung-übersicht-支付", "}{"] {
            let key = LockKey::new("_lock:", name).unwrap();
            let keys = RedisKeys::new(&key);
            let arg = |suffix| KeyName { key: &key, suffix }.to_redis_args();
            assert_eq!(arg(LEASE), vec![keys.lease.into_bytes()]);
            assert_eq!(arg(FENCE), vec![keys.fence.into_bytes()]);
            assert_eq!(arg(CHANNEL), vec![keys.channel.into_bytes()]);
            assert_eq!(arg(RW_WAITING), vec![keys.rw_waiting.into_bytes()]);
        }
    }
}
