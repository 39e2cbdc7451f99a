//! Where a lock lives in Redis: the one function that maps a [`LockKey`] to Redis names.

use locks_core::LockKey;

/// The Redis names of one lock, all sharing the hash tag `{name}` so that every script touches
/// a single Redis Cluster slot.
///
/// | what | name (prefix `_lock:`, name `payment:42`) | type |
/// |---|---|---|
/// | lease | `_lock:{payment:42}` | hash `owner` (token), `fence` (decimal), with a `PX` ttl |
/// | fence counter | `_lock:{payment:42}:fence` | string, the last fence handed out |
/// | release channel | `_lock:{payment:42}:released` | pub/sub channel |
///
/// The prefix comes from [`LockKey::prefix`] (it never contains braces), the name from
/// [`LockKey::name`], byte for byte: spaces, colons, braces and any UTF-8 text are kept as they
/// are. Redis Cluster hashes the text between the first `{` and the next `}`; a name that
/// contains `}` therefore has a shorter hash tag, but still one shared by all three names.
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
}

impl RedisKeys {
    /// The Redis names of `key`.
    pub fn new(key: &LockKey) -> Self {
        let prefix = key.prefix();
        let name = key.name();
        let mut lease = String::with_capacity(prefix.len() + name.len() + 2);
        lease.push_str(prefix);
        lease.push('{');
        lease.push_str(name);
        lease.push('}');
        let fence = format!("{lease}:fence");
        let channel = format!("{lease}:released");
        RedisKeys {
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
        }
        let keys = RedisKeys::new(&LockKey::new("", "k").unwrap());
        assert_eq!(keys.lease, "{k}");
    }
}
