//! [`FaultProxy`]: a TCP proxy on the loopback interface that sits between a client and a
//! server (a test's `redis-server`) and breaks the network on command.
//!
//! The test points the client at [`FaultProxy::url`] (or [`FaultProxy::addr`]) instead of the
//! server, then, at any moment:
//!
//! | call | effect |
//! |---|---|
//! | [`set_latency`](FaultProxy::set_latency)`(dir, d)` | every chunk read from now on in `dir` is delivered `d` later (order kept) |
//! | [`stall`](FaultProxy::stall)`(dir)` / [`resume`](FaultProxy::resume)`(dir)` | bytes are read and *held* until resumed, then delivered in order |
//! | [`stall_open`](FaultProxy::stall_open)`(dir)` | the same, only on the connections accepted so far (a request held on a connection the client gives up on, while its new connections work) |
//! | [`blackhole`](FaultProxy::blackhole)`(dir, true)` | bytes are read and *discarded*: the connection stays open, nothing arrives |
//! | [`drop_connections`](FaultProxy::drop_connections)`()` | every open connection is reset (RST) now, held bytes are lost |
//! | [`refuse_new`](FaultProxy::refuse_new)`(true)` | new connections are reset as soon as they are accepted |
//! | [`heal`](FaultProxy::heal)`()` | no latency, nothing stalled or blackholed, new connections accepted |
//!
//! A [`Direction`] is [`ClientToServer`](Direction::ClientToServer) (requests),
//! [`ServerToClient`](Direction::ServerToClient) (replies, pub/sub messages) or
//! [`Both`](Direction::Both).
//!
//! Every fault applies to the bytes the proxy reads *after* the call returns, on every
//! connection, old and new (but `stall_open`: old ones only). Bytes held on a connection whose
//! client has closed it are still delivered to the server when resumed, as a network may
//! deliver a request after the client gave up on it. The counters ([`held_bytes`](FaultProxy::held_bytes),
//! [`forwarded_bytes`](FaultProxy::forwarded_bytes), [`connections`](FaultProxy::connections),
//! ...) let a test wait for a precise moment instead of sleeping: "a request is held in the
//! proxy now" is `held_bytes(ClientToServer) > 0`.
//!
//! The proxy listens on `127.0.0.1` on a free port and only forwards to a loopback address. It
//! runs on the tokio runtime it was started in: one task accepts, one task per connection pair
//! carries both directions. Dropping the [`FaultProxy`] stops it and closes every connection.
//!
//! ```no_run
//! use std::time::Duration;
//! use locks_testkit::proxy::{Direction, FaultProxy};
//! use locks_testkit::redis_server::{RedisServer, RedisServerConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = RedisServer::start_with(RedisServerConfig::new().local_only()).await?;
//! let proxy = FaultProxy::for_server(&server).await?;
//! let url = proxy.url(); // give this to the client under test
//!
//! proxy.set_latency(Direction::ServerToClient, Duration::from_millis(50));
//! proxy.blackhole(Direction::Both, true); // a partition: the connection stays up, silent
//! proxy.heal();
//! proxy.stall(Direction::ClientToServer); // requests wait in the proxy...
//! let dropped = proxy.drop_connections().await; // ...and are lost with the connection
//! # let _ = (url, dropped);
//! # Ok(()) }
//! ```

// The public handle and the fault switches are here; `pump.rs` carries the bytes (the accept
// loop, one task per connection pair, one pump per direction).

mod pump;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use pump::accept_loop;

use crate::redis_server::{RedisServer, host_and_port};

/// Which way the bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server: requests.
    ClientToServer,
    /// From the server to the client: replies and pub/sub messages.
    ServerToClient,
    /// Both ways.
    Both,
}

impl Direction {
    /// The per-direction slots this direction covers (0: client → server, 1: server → client).
    fn slots(self) -> &'static [usize] {
        match self {
            Direction::ClientToServer => &[0],
            Direction::ServerToClient => &[1],
            Direction::Both => &[0, 1],
        }
    }

    /// The slot of a single direction; `Both` reads as the client → server slot.
    fn slot(self) -> usize {
        match self {
            Direction::ServerToClient => 1,
            Direction::ClientToServer | Direction::Both => 0,
        }
    }
}

/// The faults in force; every connection watches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Faults {
    latency: [Duration; 2],
    stalled: [bool; 2],
    /// Connections numbered up to this (in accept order, from 1) are stalled too.
    stalled_upto: [u64; 2],
    blackhole: [bool; 2],
    refuse: bool,
    /// Bumped by `drop_connections`: a pair accepted under an older epoch resets itself.
    epoch: u64,
}

#[derive(Debug, Default)]
struct DirStats {
    held: AtomicUsize,
    forwarded: AtomicU64,
    discarded: AtomicU64,
}

struct Shared {
    faults: watch::Sender<Faults>,
    /// Open connection pairs: (epoch they were accepted in, task).
    pairs: Mutex<Vec<(u64, JoinHandle<()>)>>,
    live: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    stats: [DirStats; 2],
}

impl Shared {
    fn pairs(&self) -> MutexGuard<'_, Vec<(u64, JoinHandle<()>)>> {
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fault-injecting TCP proxy on `127.0.0.1`: see the [module docs](self).
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("faults", &*self.shared.faults.borrow())
            .field("connections", &self.connections())
            .finish()
    }
}

impl FaultProxy {
    /// Start a proxy on a free port of `127.0.0.1` that forwards to `upstream`, which must be
    /// a loopback address (`InvalidInput` otherwise). Must be called inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the fault proxy only forwards to loopback addresses, not {upstream}"),
            ));
        }
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            faults: watch::Sender::new(Faults::default()),
            pairs: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stats: Default::default(),
        });
        let acceptor = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        Ok(FaultProxy {
            addr,
            upstream,
            shared,
            acceptor,
        })
    }

    /// A proxy in front of a test server: a private server of the fixture, or an external one
    /// on `127.0.0.1`/`localhost` (`InvalidInput` for any other host).
    pub async fn for_server(server: &RedisServer) -> io::Result<FaultProxy> {
        if server.is_external() {
            let (host, _) = host_and_port(&server.url())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            if host != "127.0.0.1" && host != "localhost" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the fault proxy only forwards to loopback addresses; \
                     the external test server is elsewhere",
                ));
            }
        }
        Self::start(SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()))).await
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Delay every chunk read from now on in `dir` by `latency` (zero: none). Chunks never
    /// overtake each other.
    pub fn set_latency(&self, dir: Direction, latency: Duration) {
        self.shared.faults.send_modify(|f| {
            for &i in dir.slots() {
                f.latency[i] = latency;
            }
        });
    }

    /// The latency of one direction (`Both`: client → server).
    pub fn latency(&self, dir: Direction) -> Duration {
        self.shared.faults.borrow().latency[dir.slot()]
    }

    /// Hold every byte in `dir` until [`resume`](Self::resume): the proxy keeps reading (up to
    /// 4 MiB per connection) and delivers nothing.
    pub fn stall(&self, dir: Direction) {
        self.set_stalled(dir, true);
    }

    /// Deliver the bytes held by [`stall`](Self::stall) or [`stall_open`](Self::stall_open), in
    /// order, and carry on.
    pub fn resume(&self, dir: Direction) {
        self.set_stalled(dir, false);
    }

    /// Hold every byte in `dir` on the connections accepted so far, until
    /// [`resume`](Self::resume); connections accepted later are not affected. With a client
    /// that replaces its connection after a response timeout, this holds a request on the
    /// retired connection while the new one works; `resume` then delivers the request late.
    pub fn stall_open(&self, dir: Direction) {
        let upto = self.shared.accepted.load(Ordering::SeqCst);
        self.shared.faults.send_modify(|f| {
            for &i in dir.slots() {
                f.stalled_upto[i] = upto;
            }
        });
    }

    fn set_stalled(&self, dir: Direction, on: bool) {
        self.shared.faults.send_modify(|f| {
            for &i in dir.slots() {
                f.stalled[i] = on;
                if !on {
                    f.stalled_upto[i] = 0;
                }
            }
        });
    }

    /// Discard (`true`) every byte read from now on in `dir`, or stop discarding (`false`).
    /// Connections stay open: the peers just never hear from each other, like a partition.
    pub fn blackhole(&self, dir: Direction, on: bool) {
        self.shared.faults.send_modify(|f| {
            for &i in dir.slots() {
                f.blackhole[i] = on;
            }
        });
    }

    /// Reset (`true`) every new connection as soon as it is accepted, or accept them again
    /// (`false`). Open connections are not affected.
    pub fn refuse_new(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.refuse = on);
    }

    /// Remove every fault: no latency, nothing stalled or blackholed, new connections
    /// accepted. Held bytes are delivered.
    pub fn heal(&self) {
        self.shared.faults.send_modify(|f| {
            let epoch = f.epoch;
            *f = Faults {
                epoch,
                ..Faults::default()
            };
        });
    }

    /// Reset every open connection now (both sockets closed with RST, held bytes lost) and
    /// wait until they are closed. Returns how many connection pairs were dropped. Connections
    /// accepted afterwards are not affected.
    pub async fn drop_connections(&self) -> usize {
        let (doomed, dropped) = {
            let mut pairs = self.shared.pairs();
            let doomed: Vec<JoinHandle<()>> = pairs.drain(..).map(|(_, h)| h).collect();
            let dropped = doomed.iter().filter(|h| !h.is_finished()).count();
            // Every pair listed was accepted before this bump: each one resets itself.
            self.shared.faults.send_modify(|f| f.epoch += 1);
            (doomed, dropped)
        };
        for handle in doomed {
            let _ = handle.await;
        }
        dropped
    }

    /// Connection pairs open now.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Connections accepted (and forwarded) so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset by [`refuse_new`](Self::refuse_new) so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Bytes read but not yet delivered in `dir` (stalled or delayed), over all connections.
    pub fn held_bytes(&self, dir: Direction) -> usize {
        dir.slots()
            .iter()
            .map(|&i| self.shared.stats[i].held.load(Ordering::SeqCst))
            .sum()
    }

    /// Bytes delivered in `dir` so far.
    pub fn forwarded_bytes(&self, dir: Direction) -> u64 {
        dir.slots()
            .iter()
            .map(|&i| self.shared.stats[i].forwarded.load(Ordering::SeqCst))
            .sum()
    }

    /// Bytes discarded by [`blackhole`](Self::blackhole) in `dir` so far.
    pub fn discarded_bytes(&self, dir: Direction) -> u64 {
        dir.slots()
            .iter()
            .map(|&i| self.shared.stats[i].discarded.load(Ordering::SeqCst))
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        for (_, handle) in self.shared.pairs().drain(..) {
            handle.abort();
        }
    }
}
