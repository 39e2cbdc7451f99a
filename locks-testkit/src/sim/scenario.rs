//! The named scenarios of the simulator and their command-line names.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A named simulation: what the workers do, and which invariant the checker enforces.
///
/// Serialized (JSON) as its [name](Scenario::name): `"double-payment"`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// N workers pick one of K keys at random, hold its lock for a random time and release it;
    /// the checker counts the holders of every key at every instant (a violation: two at once).
    #[default]
    Mutex,
    /// W instances (workers spread over several services, as separate processes) receive the
    /// same stream of K order ids. Under the order's lock a worker checks the shared ledger and,
    /// if the order is unpaid, charges it (the payment provider call takes the hold time) and
    /// marks it paid. Violation: an order charged twice.
    DoublePayment,
    /// K SKUs start with [`SimConfig::stock`](super::SimConfig::stock) units each. Buyers keep
    /// buying until everything is sold out: under the SKU's lock they read the stock, wait the
    /// hold time, and write `stock - 1` if it was above 0. Violation: stock below 0, or units
    /// sold that were never taken out of stock (at the end, sold must equal the initial
    /// stock). Not selling out before the time limit fails the run too.
    Oversell,
    /// J jobs; every worker walks the same job list and claims each job with `try_acquire`
    /// (contended: skip it, someone else is running it). Under the lock a job that is not yet
    /// done runs (hold time) and is marked done. Violation: a job ran twice.
    JobDedup,
    /// N candidates run [`Election::run_until`](locks_core::Election::run_until) on one role,
    /// each through its own service over its own
    /// [`FaultyBackend`](crate::faulty::FaultyBackend). The leader acts every hold time,
    /// stamping each action with its term. Every
    /// [`fault_interval`](super::SimConfig::fault_interval) the current leader is either deployed
    /// away (stopped and restarted) or cut off from the store for two ttls
    /// ([`FaultyBackend::set_unavailable`](crate::faulty::FaultyBackend::set_unavailable)) so
    /// that its lease runs out. Violation: two leaders acting at the same instant, or an action
    /// with a term lower than an earlier action's (a stale leader acting). `keys` and
    /// `ops_per_worker` are not used.
    LeaderFailover,
    /// Holders write to a protected store that rejects writes whose fence is lower than the
    /// highest fence it has seen (Kleppmann's fencing tokens). Normal holders write with
    /// their fence as soon as they get the lock, hold it, write again, release, and do other
    /// work for the hold time. Worker 0 is GC-prone: it takes its locks with auto-renew off,
    /// pauses for 1.5 ttl (its lease runs out, another worker takes the key and writes), then
    /// writes. A write is stale when another holder entered the key after the writer did.
    /// Violation: a stale write accepted. A run that produces no stale write attempt fails too
    /// (the scenario tested nothing); the report counts the stale writes rejected.
    GcPause,
}

impl Scenario {
    /// Every scenario, in the order `--scenario all` runs them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Mutex,
        Scenario::DoublePayment,
        Scenario::Oversell,
        Scenario::JobDedup,
        Scenario::LeaderFailover,
        Scenario::GcPause,
    ];

    /// The scenario's name on the command line (`double-payment`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Mutex => "mutex",
            Scenario::DoublePayment => "double-payment",
            Scenario::Oversell => "oversell",
            Scenario::JobDedup => "job-dedup",
            Scenario::LeaderFailover => "leader-failover",
            Scenario::GcPause => "gc-pause",
        }
    }

    /// One line saying what the scenario simulates.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Mutex => "workers contend for random keys; at most one holder per key",
            Scenario::DoublePayment => {
                "every instance gets the same order stream; each order is charged once"
            }
            Scenario::Oversell => "buyers race for limited stock; never sell what is not there",
            Scenario::JobDedup => "a job fires on every instance; try-lock runs it at most once",
            Scenario::LeaderFailover => {
                "leaders are deployed away or cut off; one leader acts at a time, never a stale one"
            }
            Scenario::GcPause => {
                "a holder pauses past its ttl, then writes; the fenced store rejects the write"
            }
        }
    }

    /// Whether the run ends when its work is done (orders, stock, jobs) rather than when its
    /// time is up; [`SimConfig::duration`](super::SimConfig::duration) is then only a cap.
    pub fn is_finite(self) -> bool {
        matches!(
            self,
            Scenario::DoublePayment | Scenario::Oversell | Scenario::JobDedup
        )
    }

    /// Whether [`SimConfig::ops_per_worker`](super::SimConfig::ops_per_worker) limits this
    /// scenario (`mutex` and `gc-pause`).
    pub fn uses_ops_limit(self) -> bool {
        matches!(self, Scenario::Mutex | Scenario::GcPause)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that [`Scenario::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scenario `{0}` (expected mutex, double-payment, oversell, job-dedup, \
     leader-failover or gc-pause)"
)]
pub struct UnknownScenario(String);

impl UnknownScenario {
    /// The name that was given.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    /// Parses a name of [`Scenario::name`] (ASCII case-insensitive, `_` accepted for `-`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == wanted)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}
