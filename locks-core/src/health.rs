//! Health of the lock store: the facts a readiness probe (and the `locks health` command) shows.
//!
//! Which facts a store can report depends on the store, so health is an optional capability
//! beside the [`LockBackend`](crate::LockBackend) contract, not a method of it: a backend crate
//! implements [`HealthCheck`] (Redis: `INFO`, `CONFIG GET maxmemory-policy`, `TIME`; PostgreSQL:
//! `version()`, `now()`, `pg_is_in_recovery()`; memory: trivial facts), and the service is told
//! about it with [`LockServiceBuilder::health_check`](crate::LockServiceBuilder::health_check)
//! (or [`LockService::builder_with_health`](crate::LockService::builder_with_health), for a
//! backend that is both). Without one, [`LockService::health`](crate::LockService::health)
//! still measures a round trip to the store (a `holders` read of a probe key) and reports
//! every other fact as unknown (`None`).
//!
//! Every fact is optional: `None` means "this store does not say", never "bad". Whether the
//! facts are acceptable is [`BackendHealth::problems`]. `Display` prints them one per line
//! (what `locks health` shows); with the crate feature `serde` they serialize (durations as
//! `ping_us` and `clock_offset_us`, in microseconds).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;

/// What a store reports about itself. Built by a [`HealthCheck`]; every field but `backend` and
/// `ping` is `None` when the store cannot tell.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BackendHealth {
    /// The backend's [`name`](crate::LockBackend::name) (`"redis"`, `"memory"`, ...).
    pub backend: &'static str,
    /// Where the store is (an address, without credentials), when it has one.
    pub address: Option<String>,
    /// One round trip to the store (a `PING` or equivalent).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "ping_us", serialize_with = "serialize_micros")
    )]
    pub ping: Duration,
    /// The server's version (`"7.2.4"`).
    pub server_version: Option<String>,
    /// The eviction policy (Redis `maxmemory-policy`).
    pub eviction_policy: Option<String>,
    /// Whether the store may delete a live lease to make room (anything but `noeviction` on
    /// Redis). `Some(false)` is the safe answer.
    pub may_evict: Option<bool>,
    /// Memory in use, in bytes.
    pub used_memory: Option<u64>,
    /// The memory limit in bytes; `Some(0)` means no limit is set.
    pub max_memory: Option<u64>,
    /// The store's clock minus this host's clock (positive: the store is ahead), measured at
    /// the middle of the round trip that read the store's time, so it is accurate to about
    /// half the ping.
    #[cfg_attr(feature = "serde", serde(rename = "clock_offset_us"))]
    pub clock_offset: Option<ClockOffset>,
    /// Replication, when the store reports it.
    pub replication: Option<Replication>,
}

/// A signed clock difference, in microseconds: the store's clock minus this host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct ClockOffset {
    micros: i64,
}

impl ClockOffset {
    /// An offset of `micros` microseconds (positive: the store is ahead).
    pub const fn from_micros(micros: i64) -> Self {
        ClockOffset { micros }
    }

    /// The offset in microseconds (positive: the store is ahead).
    pub const fn as_micros(self) -> i64 {
        self.micros
    }

    /// The size of the offset, whichever clock is ahead.
    pub const fn magnitude(self) -> Duration {
        Duration::from_micros(self.micros.unsigned_abs())
    }

    /// Whether the store's clock is ahead of this host's.
    pub const fn store_ahead(self) -> bool {
        self.micros > 0
    }
}

impl fmt::Display for ClockOffset {
    /// `+1.250ms` (store ahead) or `-0.042ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.micros < 0 { '-' } else { '+' };
        let abs = self.micros.unsigned_abs();
        write!(f, "{sign}{}.{:03}ms", abs / 1000, abs % 1000)
    }
}

/// The replication state a store reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Replication {
    /// The role of the server answering: `"master"`/`"primary"`, `"replica"`, `"standby"`.
    pub role: String,
    /// How many replicas are connected (on a primary).
    pub connected_replicas: Option<u32>,
    /// Whether the link to the primary is up (on a replica).
    pub link_up: Option<bool>,
}

impl Replication {
    /// A state with `role` and nothing else known.
    pub fn new(role: impl Into<String>) -> Self {
        Replication {
            role: role.into(),
            ..Replication::default()
        }
    }

    /// Whether the server answering is a read-only copy (a replica or a standby in recovery):
    /// leases cannot be written there.
    pub fn is_replica(&self) -> bool {
        matches!(
            self.role.as_str(),
            "slave" | "replica" | "standby" | "recovery"
        )
    }
}

/// Something in a [`BackendHealth`] that makes the store unsafe or unfit for locks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthProblem {
    /// The store may delete live leases to make room (eviction policy other than `noeviction`).
    MayEvict {
        /// The policy, if known.
        policy: Option<String>,
    },
    /// Memory use is at or above [`HealthLimits::memory_fraction`] of the limit.
    MemoryNearLimit {
        /// Bytes in use.
        used: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// The store's clock differs from this host's by more than [`HealthLimits::clock_offset`].
    ClockOffset(ClockOffset),
    /// The server answering is a replica (writes fail), or a replica whose primary link is down.
    Replica {
        /// Its role.
        role: String,
    },
}

impl fmt::Display for HealthProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthProblem::MayEvict { policy } => write!(
                f,
                "the store may evict live leases (policy {}); use noeviction",
                policy.as_deref().unwrap_or("unknown")
            ),
            HealthProblem::MemoryNearLimit { used, max } => {
                write!(f, "memory use {used} B is near the limit {max} B")
            }
            HealthProblem::ClockOffset(o) => write!(f, "store clock offset {o} to this host"),
            HealthProblem::Replica { role } => {
                write!(
                    f,
                    "the server answering is a {role}: leases cannot be written"
                )
            }
        }
    }
}

/// The thresholds [`BackendHealth::problems`] applies.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HealthLimits {
    /// Memory use at or above this fraction of a set limit is a problem (default 0.9).
    pub memory_fraction: f64,
    /// A larger clock offset is a problem (default 500 ms). Lock expiry uses the store's own
    /// clock; an offset this large usually means a broken time service somewhere.
    pub clock_offset: Duration,
}

impl Default for HealthLimits {
    fn default() -> Self {
        HealthLimits {
            memory_fraction: 0.9,
            clock_offset: Duration::from_millis(500),
        }
    }
}

impl BackendHealth {
    /// Facts of `backend` with a measured `ping` and nothing else known.
    pub fn new(backend: &'static str, ping: Duration) -> Self {
        BackendHealth {
            backend,
            ping,
            ..BackendHealth::default()
        }
    }

    /// What makes these facts unfit for locks under `limits` (empty: healthy). Unknown facts
    /// are not problems.
    ///
    /// ```
    /// use locks_core::health::{BackendHealth, HealthLimits, HealthProblem};
    /// use std::time::Duration;
    ///
    /// let mut facts = BackendHealth::new("redis", Duration::from_micros(180));
    /// assert!(facts.problems(&HealthLimits::default()).is_empty());
    /// facts.eviction_policy = Some("volatile-lru".into());
    /// facts.may_evict = Some(true);
    /// assert!(matches!(
    ///     facts.problems(&HealthLimits::default())[..],
    ///     [HealthProblem::MayEvict { .. }]
    /// ));
    /// ```
    pub fn problems(&self, limits: &HealthLimits) -> Vec<HealthProblem> {
        let mut problems = Vec::new();
        if self.may_evict == Some(true) {
            problems.push(HealthProblem::MayEvict {
                policy: self.eviction_policy.clone(),
            });
        }
        if let (Some(used), Some(max)) = (self.used_memory, self.max_memory)
            && max > 0
            && used as f64 >= max as f64 * limits.memory_fraction
        {
            problems.push(HealthProblem::MemoryNearLimit { used, max });
        }
        if let Some(offset) = self.clock_offset
            && offset.magnitude() > limits.clock_offset
        {
            problems.push(HealthProblem::ClockOffset(offset));
        }
        if let Some(r) = &self.replication
            && r.is_replica()
        {
            problems.push(HealthProblem::Replica {
                role: r.role.clone(),
            });
        }
        problems
    }

    /// Whether [`problems`](Self::problems) under the default [`HealthLimits`] is empty.
    pub fn is_healthy(&self) -> bool {
        self.problems(&HealthLimits::default()).is_empty()
    }
}

#[cfg(feature = "serde")]
fn serialize_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Facts one per line, unknown ones as `unknown`:
///
/// ```text
/// backend          redis
/// address          127.0.0.1:6379
/// ping             0.150ms
/// server version   7.0.15
/// eviction policy  noeviction
/// memory           1003.0 KiB used of 64.0 MiB (1.5 %)
/// clock offset     -0.017ms (store minus this host)
/// replication      master, 0 replicas connected
/// ```
impl fmt::Display for BackendHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNKNOWN: &str = "unknown";
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            writeln!(f, "{name:<16} {value}")
        };
        row(f, "backend", &self.backend)?;
        row(f, "address", &self.address.as_deref().unwrap_or(UNKNOWN))?;
        let ping = self.ping.as_micros();
        row(
            f,
            "ping",
            &format_args!("{}.{:03}ms", ping / 1000, ping % 1000),
        )?;
        row(
            f,
            "server version",
            &self.server_version.as_deref().unwrap_or(UNKNOWN),
        )?;
        let policy = match (&self.eviction_policy, self.may_evict) {
            (Some(p), Some(true)) => format!("{p} (may evict live leases)"),
            (Some(p), _) => p.clone(),
            (None, Some(false)) => "never evicts".to_owned(),
            (None, Some(true)) => "may evict live leases".to_owned(),
            (None, None) => UNKNOWN.to_owned(),
        };
        row(f, "eviction policy", &policy)?;
        let memory = match (self.used_memory, self.max_memory) {
            (Some(used), Some(0)) => format!("{} used, no limit", bytes(used)),
            (Some(used), Some(max)) => format!(
                "{} used of {} ({:.1} %)",
                bytes(used),
                bytes(max),
                used as f64 * 100.0 / max as f64
            ),
            (Some(used), None) => format!("{} used", bytes(used)),
            (None, _) => UNKNOWN.to_owned(),
        };
        row(f, "memory", &memory)?;
        match self.clock_offset {
            Some(o) => row(
                f,
                "clock offset",
                &format_args!("{o} (store minus this host)"),
            )?,
            None => row(f, "clock offset", &UNKNOWN)?,
        }
        let replication = match &self.replication {
            None => UNKNOWN.to_owned(),
            Some(r) => {
                let mut text = r.role.clone();
                if let Some(n) = r.connected_replicas {
                    text.push_str(&format!(", {n} replicas connected"));
                }
                if let Some(up) = r.link_up {
                    text.push_str(if up {
                        ", link to primary up"
                    } else {
                        ", link to primary DOWN"
                    });
                }
                text
            }
        };
        row(f, "replication", &replication)
    }
}

/// `bytes` in B, KiB, MiB or GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The clock offset of a store whose time `store_micros` (microseconds since the Unix epoch)
/// was read by a request sent at `sent` and answered at `received` (both this host's
/// [`SystemTime`](std::time::SystemTime)): the store's time minus the middle of the round trip.
pub fn clock_offset(
    store_micros: i64,
    sent: std::time::SystemTime,
    received: std::time::SystemTime,
) -> Option<ClockOffset> {
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_micros()).ok())
    };
    let (sent, received) = (epoch(sent)?, epoch(received)?);
    let middle = sent + (received - sent) / 2;
    Some(ClockOffset::from_micros(store_micros.checked_sub(middle)?))
}

/// The optional capability of a store to describe its health. Implemented by backend crates
/// (beside [`LockBackend`](crate::LockBackend)) and registered on the service builder with
/// [`health_check`](crate::LockServiceBuilder::health_check).
///
/// A failure to reach the store is an error (its `is_transient` says so); a fact the store
/// refuses to give (an ACL, a managed service without `CONFIG`) is `None`, not an error.
#[async_trait]
pub trait HealthCheck: fmt::Debug + Send + Sync + 'static {
    /// Ask the store for its facts.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    async fn health(&self) -> Result<BackendHealth, BackendError>;
}

#[async_trait]
impl<T: HealthCheck + ?Sized> HealthCheck for std::sync::Arc<T> {
    async fn health(&self) -> Result<BackendHealth, BackendError> {
        (**self).health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prints_every_fact_or_unknown() {
        let mut h = BackendHealth::new("redis", Duration::from_micros(150));
        h.address = Some("127.0.0.1:6379".into());
        h.server_version = Some("7.0.15".into());
        h.eviction_policy = Some("noeviction".into());
        h.may_evict = Some(false);
        h.used_memory = Some(1_027_056);
        h.max_memory = Some(64 * 1024 * 1024);
        h.clock_offset = Some(ClockOffset::from_micros(-17));
        h.replication = Some(Replication {
            role: "master".into(),
            connected_replicas: Some(0),
            link_up: None,
        });
        let text = h.to_string();
        let expected = "\
backend          redis
address          127.0.0.1:6379
ping             0.150ms
server version   7.0.15
eviction policy  noeviction
memory           1003.0 KiB used of 64.0 MiB (1.5 %)
clock offset     -0.017ms (store minus this host)
replication      master, 0 replicas connected
";
        assert_eq!(text, expected);
        let bare = BackendHealth::new("memory", Duration::ZERO).to_string();
        assert_eq!(bare.matches("unknown").count(), 6, "{bare}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serializes_durations_as_micros() {
        let mut h = BackendHealth::new("redis", Duration::from_micros(150));
        h.clock_offset = Some(ClockOffset::from_micros(-17));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["ping_us"], 150);
        assert_eq!(json["clock_offset_us"], -17);
        assert_eq!(json["backend"], "redis");
        assert!(json["replication"].is_null());
    }

    #[test]
    fn offsets_print_with_their_sign() {
        assert_eq!(ClockOffset::from_micros(1250).to_string(), "+1.250ms");
        assert_eq!(ClockOffset::from_micros(-42).to_string(), "-0.042ms");
        assert_eq!(
            ClockOffset::from_micros(-42).magnitude(),
            Duration::from_micros(42)
        );
    }

    #[test]
    fn offset_is_taken_at_the_middle_of_the_round_trip() {
        let sent = std::time::UNIX_EPOCH + Duration::from_micros(1_000_000);
        let received = sent + Duration::from_micros(400);
        let offset = clock_offset(1_000_700, sent, received);
        assert_eq!(offset, Some(ClockOffset::from_micros(500)));
    }

    #[test]
    fn every_problem_is_found_and_unknown_facts_are_fine() {
        let mut h = BackendHealth::new("redis", Duration::from_millis(1));
        assert!(h.is_healthy());
        h.used_memory = Some(95);
        h.max_memory = Some(100);
        h.clock_offset = Some(ClockOffset::from_micros(-600_000));
        h.replication = Some(Replication::new("slave"));
        h.may_evict = Some(true);
        let found = h.problems(&HealthLimits::default());
        assert_eq!(found.len(), 4, "{found:?}");
        h.max_memory = Some(0);
        assert_eq!(h.problems(&HealthLimits::default()).len(), 3);
    }
}
