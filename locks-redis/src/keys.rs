//! Where a lock lives in Redis: the one function that maps a [`LockKey`] to Redis names.

use std::io::Write;

use locks_core::LockKey;
use redis::{RedisWrite, ToRedisArgs};

/// The Redis names of one lock, all sharing the hash tag `{name}` so that every script touches
/// a single Redis Cluster slot.
///
/// | what | name (prefix `_lock:`, name `payment:42`) | type |
/// |---|---|---|
/// | mutex lease | `_lock:{payment:42}` | string `"<fence> <owner token>"`, with a `PX` ttl |
/// | fence counter | `_lock:{payment:42}:fence` | string, the last fence handed out (one counter for the lease, permits, readers and writer) |
/// | release channel | `_lock:{payment:42}:released` | pub/sub channel (every kind of release) |
/// | semaphore permits | `_lock:{payment:42}:sem` | sorted set: member = owner token, score = expiry in ms by the server's `TIME` |
/// | permit fences | `_lock:{payment:42}:sem:fences` | hash: owner token → fence |
/// | readers | `_lock:{payment:42}:rw:readers` | sorted set: member = owner token, score = expiry in ms by the server's `TIME` |
/// | reader fences | `_lock:{payment:42}:rw:fences` | hash: owner token → fence |
/// | writer | `_lock:{payment:42}:rw:writer` | hash `owner`, `fence`, with a `PX` ttl |
/// | waiting writer | `_lock:{payment:42}:rw:waiting` | string: the waiting writer's token, with a `PX` ttl |
/// | retired tokens | `_lock:{payment:42}:retired` | sorted set: owner token → until when (ms, server `TIME`) a late acquire with it is refused (every kind) |
/// | fair mutex lease | `_lock:{payment:42}:fair` | hash `owner`, `fence`, with a `PX` ttl |
/// | fair mutex queue | `_lock:{payment:42}:fair:queue` | sorted set: waiter token → arrival number (FIFO) |
/// | fair waiter expiry | `_lock:{payment:42}:fair:expiry` | sorted set: waiter token → until when (ms, server `TIME`) its place is kept |
/// | fair waiter ttls | `_lock:{payment:42}:fair:ttl` | hash: waiter token → `<lease ttl ms>:<fence counter ttl ms>` it asked for |
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
    /// The mutex lease: `{prefix}{{{name}}}`, a string `"<fence> <owner token>"` with a `PX`
    /// ttl.
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
    /// Owner tokens released while they held nothing (sorted set, token scored by the end of
    /// its retirement in ms), whose late acquires are refused: `…:retired`.
    pub retired: String,
    /// The fair mutex's lease (hash `owner`, `fence`, with a `PX` ttl): `…:fair`.
    pub fair: String,
    /// The fair mutex's queue (sorted set, token scored by arrival): `…:fair:queue`.
    pub fair_queue: String,
    /// When each queued fair waiter's place lapses (sorted set, token scored by ms):
    /// `…:fair:expiry`.
    pub fair_expiry: String,
    /// The lease and fence counter ttls each queued fair waiter asked for (hash):
    /// `…:fair:ttl`.
    pub fair_ttls: String,
}

// The suffix of each name after the lease key `{prefix}{{{name}}}`: the whole layout.

/// The mutex lease itself (a string `"<fence> <owner token>"`).
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
/// Retired owner tokens.
pub(crate) const RETIRED: &str = ":retired";
/// The fair mutex's lease.
pub(crate) const FAIR: &str = ":fair";
/// The fair mutex's queue.
pub(crate) const FAIR_QUEUE: &str = ":fair:queue";
/// When each fair waiter's place lapses.
pub(crate) const FAIR_EXPIRY: &str = ":fair:expiry";
/// The ttls each fair waiter asked for.
pub(crate) const FAIR_TTLS: &str = ":fair:ttl";

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

/// Every suffix of the layout, longest first (how [`parse`] tells them apart).
const SUFFIXES: [&str; 14] = [
    FAIR_EXPIRY,
    FAIR_QUEUE,
    SEMAPHORE_FENCES,
    RW_READERS,
    RW_WAITING,
    RW_WRITER,
    RW_FENCES,
    CHANNEL,
    FAIR_TTLS,
    RETIRED,
    FENCE,
    FAIR,
    SEMAPHORE,
    LEASE,
];

/// Read a Redis name written by [`name`] back: the lock's name and the suffix, or `None` if
/// `redis_name` is not a name of this layout under `prefix`. Unambiguous: the lease key is the
/// only name that ends with `}`, and every other suffix ends with a letter.
pub(crate) fn parse<'a>(prefix: &str, redis_name: &'a str) -> Option<(&'a str, &'static str)> {
    let rest = redis_name.strip_prefix(prefix)?.strip_prefix('{')?;
    SUFFIXES.into_iter().find_map(|suffix| {
        let name = rest.strip_suffix(suffix)?.strip_suffix('}')?;
        (!name.is_empty()).then_some((name, suffix))
    })
}

/// The `SCAN ... MATCH` pattern of every name of every lock under `prefix` whose name starts
/// with `name_prefix` (glob characters escaped).
pub(crate) fn scan_pattern(prefix: &str, name_prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + name_prefix.len() + 8);
    for part in [prefix, "{", name_prefix] {
        for c in part.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('*');
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
            retired: name(key, RETIRED),
            fair: name(key, FAIR),
            fair_queue: name(key, FAIR_QUEUE),
            fair_expiry: name(key, FAIR_EXPIRY),
            fair_ttls: name(key, FAIR_TTLS),
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
            assert_eq!(keys.retired, format!("_lock:{{{name}}}:retired"));
            assert_eq!(keys.fair, format!("_lock:{{{name}}}:fair"));
            assert_eq!(keys.fair_queue, format!("_lock:{{{name}}}:fair:queue"));
            assert_eq!(keys.fair_expiry, format!("_lock:{{{name}}}:fair:expiry"));
            assert_eq!(keys.fair_ttls, format!("_lock:{{{name}}}:fair:ttl"));
        }
        let keys = RedisKeys::new(&LockKey::new("", "k").unwrap());
        assert_eq!(keys.lease, "{k}");
    }

    #[test]
    fn names_read_back_through_the_layout() {
        for name in [
            "a b",
            "{tag}",
            "x:y:z",
            "zahlung-übersicht-支付",
            "}{",
            "a}:sem",
            "k}",
        ] {
            let key = LockKey::new("_lock:", name).unwrap();
            for suffix in SUFFIXES {
                let redis_name = super::name(&key, suffix);
                assert_eq!(
                    parse("_lock:", &redis_name),
                    Some((name, suffix)),
                    "{redis_name}"
                );
                assert_eq!(parse("other:", &redis_name), None);
            }
        }
        assert_eq!(parse("_lock:", "_lock:{}"), None);
        assert_eq!(parse("_lock:", "_lock:plain"), None);
        assert_eq!(
            scan_pattern("_lock:", "pay*[1]?"),
            "_lock:{pay\\*\\[1\\]\\?*"
        );
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
