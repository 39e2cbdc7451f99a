//! What the commands print: a lock as a table row or as JSON.

use std::time::Duration;

use locks_core::backend::ListedLock;
use serde::Serialize;

/// How many characters of an owner token the table shows.
pub const OWNER_PREFIX: usize = 8;

/// One lock, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct LockView {
    /// The name, without the prefix.
    pub name: String,
    /// The key prefix.
    pub prefix: String,
    /// `mutex`, `semaphore` or `rwlock`.
    pub kind: &'static str,
    /// The live leases.
    pub holders: Vec<HolderView>,
    /// Read-write locks: a writer waits for the readers to leave.
    pub writer_waiting: bool,
}

/// One live lease.
#[derive(Debug, Serialize)]
pub struct HolderView {
    /// `mutex`, `permit`, `read` or `write`.
    pub lease: &'static str,
    /// The holder's owner token.
    pub owner: String,
    /// The fencing token.
    pub fence: u64,
    /// Milliseconds until the store expires the lease.
    pub ttl_ms: u64,
}

impl From<&ListedLock> for LockView {
    fn from(lock: &ListedLock) -> Self {
        LockView {
            name: lock.key.name().to_owned(),
            prefix: lock.key.prefix().to_owned(),
            kind: lock.kind.label(),
            holders: lock
                .holders
                .leases
                .iter()
                .map(|l| HolderView {
                    lease: l.kind.label(),
                    owner: l.owner.to_hyphenated(),
                    fence: l.fence,
                    ttl_ms: u64::try_from(l.remaining.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
            writer_waiting: lock.holders.writer_waiting,
        }
    }
}

/// The columns of `ls`, `show` and `watch`.
const HEADER: [&str; 7] = [
    "NAME", "KIND", "HOLDERS", "OWNER", "FENCE", "TTL", "WAITING",
];

/// The table of `locks`: a header and one row per lock (several holders: the first owner and
/// `+n`, the highest fence, the shortest ttl).
pub fn table(locks: &[LockView]) -> String {
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_owned)];
    for lock in locks {
        let owner = match lock.holders.as_slice() {
            [] => "-".to_owned(),
            [one] => short(&one.owner),
            [first, rest @ ..] => format!("{} +{}", short(&first.owner), rest.len()),
        };
        let fence = lock.holders.iter().map(|h| h.fence).max();
        let ttl = lock.holders.iter().map(|h| h.ttl_ms).min();
        let waiting = match (lock.kind, lock.writer_waiting) {
            ("rwlock", true) => "writer",
            _ => "-",
        };
        rows.push([
            lock.name.clone(),
            lock.kind.to_owned(),
            lock.holders.len().to_string(),
            owner,
            fence.map_or("-".into(), |f| f.to_string()),
            ttl.map_or("-".into(), |ms| seconds(Duration::from_millis(ms))),
            waiting.to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The first characters of an owner token.
pub fn short(owner: &str) -> String {
    owner.chars().take(OWNER_PREFIX).collect()
}

/// `12.3s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_the_first_owner_the_highest_fence_and_the_shortest_ttl() {
        let holder = |owner: &str, fence, ttl_ms| HolderView {
            lease: "permit",
            owner: owner.into(),
            fence,
            ttl_ms,
        };
        let locks = [LockView {
            name: "pool".into(),
            prefix: "_lock:".into(),
            kind: "semaphore",
            holders: vec![
                holder("aaaaaaaa-1111", 7, 9000),
                holder("bbbbbbbb-2222", 9, 1500),
            ],
            writer_waiting: false,
        }];
        let text = table(&locks);
        let row = text.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["pool", "semaphore", "2", "aaaaaaaa", "+1", "9", "1.5s", "-"]
        );
    }
}
