//! Where a lock lives in Redis: the one function that maps a [`LockKey`] to Redis names.

use locks_core::LockKey;

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

/// Suffix of the fence counter after the lease key.
pub(crate) const FENCE_SUFFIX: &str = ":fence";
/// Suffix of the release channel after the lease key.
pub(crate) const CHANNEL_SUFFIX: &str = ":released";

/// `{prefix}{{{name}}}` followed by `suffix`, with room for nothing more.
fn lease_name(key: &LockKey, suffix: &str) -> String {
    let prefix = key.prefix();
    let name = key.name();
    let mut lease = String::with_capacity(prefix.len() + name.len() + 2 + suffix.len());
    lease.push_str(prefix);
    lease.push('{');
    lease.push_str(name);
    lease.push('}');
    lease.push_str(suffix);
    lease
}

/// The lease key and one suffixed name (fence counter or release channel) of a mutex in a
/// single allocation, for the hot paths that need no other name. Same names as
/// [`RedisKeys::new`].
pub(crate) struct LeaseKeys {
    name: String,
    lease_len: usize,
}

impl LeaseKeys {
    /// The lease key of `key`, followed by `suffix` ([`FENCE_SUFFIX`], [`CHANNEL_SUFFIX`] or
    /// `""`).
    pub(crate) fn new(key: &LockKey, suffix: &str) -> Self {
        let name = lease_name(key, suffix);
        let lease_len = name.len() - suffix.len();
        LeaseKeys { name, lease_len }
    }

    /// The lease key.
    pub(crate) fn lease(&self) -> &str {
        &self.name[..self.lease_len]
    }

    /// The lease key followed by the suffix.
    pub(crate) fn suffixed(&self) -> &str {
        &self.name
    }

    /// The lease key followed by the suffix, owned.
    pub(crate) fn into_suffixed(self) -> String {
        self.name
    }
}

impl RedisKeys {
    /// The Redis names of `key`.
    pub fn new(key: &LockKey) -> Self {
        let lease = lease_name(key, "");
        let fence = format!("{lease}{FENCE_SUFFIX}");
        let channel = format!("{lease}{CHANNEL_SUFFIX}");
        RedisKeys {
            semaphore: format!("{lease}:sem"),
            semaphore_fences: format!("{lease}:sem:fences"),
            rw_readers: format!("{lease}:rw:readers"),
            rw_fences: format!("{lease}:rw:fences"),
            rw_writer: format!("{lease}:rw:writer"),
            rw_waiting: format!("{lease}:rw:waiting"),
            lease,
            fence,
            channel,
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
    fn lease_keys_match_the_layout() {
        for name in ["a b", "{tag}", "x:y:z", "zahlung-übersicht-支付", "}{"] {
            let key = LockKey::new("_lock:", name).unwrap();
            let keys = RedisKeys::new(&key);
            let fence = LeaseKeys::new(&key, FENCE_SUFFIX);
            assert_eq!(fence.lease(), keys.lease);
            assert_eq!(fence.suffixed(), keys.fence);
            let channel = LeaseKeys::new(&key, CHANNEL_SUFFIX);
            assert_eq!(channel.lease(), keys.lease);
            assert_eq!(channel.into_suffixed(), keys.channel);
            assert_eq!(LeaseKeys::new(&key, "").suffixed(), keys.lease);
        }
    }
}
