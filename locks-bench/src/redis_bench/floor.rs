//! The floor of any fenced lock on Redis: the least a lock that hands out fencing tokens and
//! checks ownership on release must ask of the server. The acquire is one script, `SET NX PX`
//! then `INCR` of a counter (atomic: the fence belongs to the grant); the release is the
//! compare-and-delete script. No argument checks, no counter lifetime, no notification, no
//! retired tokens: nothing this project's scripts do beyond that. Its figures bound from
//! above what any script-based design with fences can reach against the plain commands.

use locks_redis::redis::aio::ConnectionManager;
use locks_redis::redis::{self, Script};

use super::{RAW_TOKEN, TTL};
use crate::Result;

/// `KEYS[1]` lock, `KEYS[2]` fence counter; `ARGV[1]` token, `ARGV[2]` ttl in ms. The fence,
/// or 0 when the lock is taken.
const FENCED_ACQUIRE: &str = "if redis.call('SET',KEYS[1],ARGV[1],'NX','PX',ARGV[2]) then \
     return redis.call('INCR',KEYS[2]) end return 0";

/// Compare-and-delete: 1 when it deleted.
pub(super) const CAD: &str =
    "if redis.call('GET',KEYS[1])==ARGV[1] then return redis.call('DEL',KEYS[1]) else return 0 end";

/// The two scripts of the minimal fenced lock.
#[derive(Clone)]
pub(super) struct Floor {
    acquire: Script,
    release: Script,
}

impl Floor {
    pub(super) fn new() -> Self {
        Floor {
            acquire: Script::new(FENCED_ACQUIRE),
            release: Script::new(CAD),
        }
    }

    /// One acquire (which must get a fence) and release (which must delete) on `name`.
    pub(super) async fn cycle(&self, conn: &mut ConnectionManager, name: &str) -> Result<()> {
        let (key, counter) = (format!("{{{name}}}"), format!("{{{name}}}:fence"));
        let fence: u64 = self
            .acquire
            .key(&key)
            .key(&counter)
            .arg(RAW_TOKEN)
            .arg(TTL.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        if fence == 0 {
            return Err(format!("floor acquire found {key} taken").into());
        }
        let deleted: i64 = self
            .release
            .key(&key)
            .arg(RAW_TOKEN)
            .invoke_async(conn)
            .await?;
        if deleted != 1 {
            return Err(format!("floor release of {key}: not owner").into());
        }
        Ok(())
    }
}

/// Removes the floor's fence counters under `prefix` (a `SCAN`, for a server others use).
pub(super) async fn clean(conn: &mut ConnectionManager, prefix: &str) -> Result<()> {
    let pattern = format!("{{{prefix}*:fence");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
