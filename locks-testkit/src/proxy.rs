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
//! connection, old and new. The counters ([`held_bytes`](FaultProxy::held_bytes),
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

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::redis_server::RedisServer;

/// How long a connection pair waits for the upstream server to accept.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes one direction of one connection may hold (stalled or delayed) before the proxy stops
/// reading from its source (back-pressure instead of unbounded memory).
const MAX_HELD_PER_DIRECTION: usize = 4 * 1024 * 1024;

/// Read buffer size of one direction.
const CHUNK: usize = 16 * 1024;

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
            let url = server.url();
            let host = url
                .split("://")
                .nth(1)
                .unwrap_or_default()
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .split([':', '/'])
                .next()
                .unwrap_or_default();
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

    /// Deliver the bytes held by [`stall`](Self::stall), in order, and carry on.
    pub fn resume(&self, dir: Direction) {
        self.set_stalled(dir, false);
    }

    fn set_stalled(&self, dir: Direction, on: bool) {
        self.shared.faults.send_modify(|f| {
            for &i in dir.slots() {
                f.stalled[i] = on;
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

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of file descriptors and the like: back off a little and go on.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (refuse, epoch) = {
            let f = shared.faults.borrow();
            (f.refuse, f.epoch)
        };
        if refuse {
            let _ = client.set_zero_linger();
            drop(client);
            shared.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let live = LiveGuard::new(Arc::clone(&shared));
        let handle = tokio::spawn(pair(client, upstream, Arc::clone(&shared), epoch, live));
        let mut pairs = shared.pairs();
        pairs.retain(|(_, h)| !h.is_finished());
        pairs.push((epoch, handle));
    }
}

/// Counts a connection pair as open from accept until its task ends.
struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.live.fetch_add(1, Ordering::SeqCst);
        LiveGuard(shared)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Completes when `drop_connections` has been called after this pair was accepted (or the
/// proxy is gone).
async fn killed(rx: &mut watch::Receiver<Faults>, epoch: u64) {
    let _ = rx.wait_for(|f| f.epoch != epoch).await;
}

/// One connection pair: connect upstream, then carry both directions until both end, an I/O
/// error, or a kill.
async fn pair(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    epoch: u64,
    _live: LiveGuard,
) {
    let mut kill = shared.faults.subscribe();
    let _ = client.set_nodelay(true);
    let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream));
    let mut server = tokio::select! {
        r = connect => match r {
            Ok(Ok(server)) => server,
            // The server is down: the client sees its connection reset.
            _ => {
                let _ = client.set_zero_linger();
                return;
            }
        },
        _ = killed(&mut kill, epoch) => {
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let was_killed = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let carry = async {
            tokio::try_join!(
                pump(client_read, server_write, 0, &shared),
                pump(server_read, client_write, 1, &shared),
            )
        };
        tokio::select! {
            _ = carry => false,
            _ = killed(&mut kill, epoch) => true,
        }
    };
    if was_killed {
        // Abrupt, like a network failure: RST, not an orderly FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Subtracts the bytes a direction still holds from the proxy's counter when it ends.
struct Held<'a> {
    counter: &'a AtomicUsize,
    n: usize,
}

impl Held<'_> {
    fn add(&mut self, n: usize) {
        self.n += n;
        self.counter.fetch_add(n, Ordering::SeqCst);
    }

    fn sub(&mut self, n: usize) {
        self.n -= n;
        self.counter.fetch_sub(n, Ordering::SeqCst);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// Carry one direction: read chunks, discard them (blackhole) or queue them with their
/// delivery time (latency), deliver the due ones unless stalled. Ends after the source's EOF
/// once everything queued was delivered, shutting down the destination's write side.
async fn pump<R, W>(mut from: R, mut to: W, slot: usize, shared: &Shared) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stats = &shared.stats[slot];
    let mut faults = shared.faults.subscribe();
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut held = Held {
        counter: &stats.held,
        n: 0,
    };
    let mut buf = vec![0_u8; CHUNK];
    let mut open = true;
    let mut last_due = Instant::now();
    loop {
        let f = faults.borrow_and_update().clone();
        if !open && queue.is_empty() {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let due = if f.stalled[slot] {
            None
        } else {
            queue.front().map(|(at, _)| *at)
        };
        let can_read = open && held.n < MAX_HELD_PER_DIRECTION;
        tokio::select! {
            biased;
            changed = faults.changed() => {
                if changed.is_err() {
                    // The proxy is gone.
                    return Ok(());
                }
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                while queue.front().is_some_and(|(at, _)| *at <= now) {
                    let Some((_, chunk)) = queue.pop_front() else { break };
                    to.write_all(&chunk).await?;
                    held.sub(chunk.len());
                    stats.forwarded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
            read = from.read(&mut buf), if can_read => {
                let n = read?;
                if n == 0 {
                    open = false;
                } else if f.blackhole[slot] {
                    stats.discarded.fetch_add(n as u64, Ordering::SeqCst);
                } else {
                    let at = (Instant::now() + f.latency[slot]).max(last_due);
                    last_due = at;
                    queue.push_back((at, buf[..n].to_vec()));
                    held.add(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback; returns its address.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn read_exact(s: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
        Ok(buf)
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !check() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 5 s"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_stalls_blackholes_drops_and_refuses() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        assert_eq!(read_exact(&mut c, 4).await.unwrap(), b"ping");
        assert_eq!(proxy.connections(), 1);

        // Stall requests: held in the proxy, delivered in order on resume.
        proxy.stall(Direction::ClientToServer);
        c.write_all(b"held").await.unwrap();
        until("bytes held", || {
            proxy.held_bytes(Direction::ClientToServer) == 4
        })
        .await;
        proxy.resume(Direction::ClientToServer);
        assert_eq!(read_exact(&mut c, 4).await.unwrap(), b"held");
        assert_eq!(proxy.held_bytes(Direction::Both), 0);

        // Blackhole replies: the echo is read and thrown away.
        proxy.blackhole(Direction::ServerToClient, true);
        c.write_all(b"gone").await.unwrap();
        until("bytes discarded", || {
            proxy.discarded_bytes(Direction::ServerToClient) == 4
        })
        .await;
        proxy.blackhole(Direction::ServerToClient, false);
        c.write_all(b"back").await.unwrap();
        assert_eq!(read_exact(&mut c, 4).await.unwrap(), b"back");

        // Latency: delivered no earlier than asked.
        proxy.set_latency(Direction::ServerToClient, Duration::from_millis(100));
        let t = Instant::now();
        c.write_all(b"slow").await.unwrap();
        assert_eq!(read_exact(&mut c, 4).await.unwrap(), b"slow");
        assert!(t.elapsed() >= Duration::from_millis(100));
        proxy.heal();

        // Drop: the client sees its connection end, held bytes are lost.
        proxy.stall(Direction::ClientToServer);
        c.write_all(b"lost").await.unwrap();
        until("bytes held", || {
            proxy.held_bytes(Direction::ClientToServer) == 4
        })
        .await;
        assert_eq!(proxy.drop_connections().await, 1);
        assert_eq!(proxy.connections(), 0);
        assert_eq!(proxy.held_bytes(Direction::Both), 0);
        let mut buf = [0_u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        proxy.heal();

        // Refuse: new connections are reset at once; afterwards they work again.
        proxy.refuse_new(true);
        // The reset may even beat the end of `connect`.
        if let Ok(mut r) = TcpStream::connect(proxy.addr()).await {
            let got = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf))
                .await
                .unwrap();
            assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
        }
        until("refused", || proxy.refused() == 1).await;
        proxy.refuse_new(false);
        let mut ok = TcpStream::connect(proxy.addr()).await.unwrap();
        ok.write_all(b"again").await.unwrap();
        assert_eq!(read_exact(&mut ok, 5).await.unwrap(), b"again");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn only_loopback_upstreams() {
        let err = FaultProxy::start("192.0.2.1:6379".parse().unwrap())
            .await
            .err()
            .map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
    }
}
