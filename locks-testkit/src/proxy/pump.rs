//! Carrying the bytes: the accept loop, one task per connection pair, and one pump per
//! direction that applies the faults in force to every chunk it reads.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::{Faults, Shared};

/// How long a connection pair waits for the upstream server to accept.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes one direction of one connection may hold (stalled or delayed) before the proxy stops
/// reading from its source (back-pressure instead of unbounded memory).
const MAX_HELD_PER_DIRECTION: usize = 4 * 1024 * 1024;

/// Read buffer size of one direction.
const CHUNK: usize = 16 * 1024;

/// Accepts clients until the proxy is dropped (which aborts this task), refusing them while
/// `refuse_new` is on, and spawns a pair task for each.
pub(super) async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
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
        let seq = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        let live = LiveGuard::new(Arc::clone(&shared));
        let conn = Conn { epoch, seq };
        let handle = tokio::spawn(pair(client, upstream, Arc::clone(&shared), conn, live));
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

/// Which connection pair: the `drop_connections` epoch it was accepted in, and its number in
/// accept order (from 1).
#[derive(Debug, Clone, Copy)]
struct Conn {
    epoch: u64,
    seq: u64,
}

/// One connection pair: connect upstream, then carry both directions until both end, an I/O
/// error, or a kill.
async fn pair(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    Conn { epoch, seq }: Conn,
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
                pump(client_read, server_write, (0, seq), &shared),
                pump(server_read, client_write, (1, seq), &shared),
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
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    (slot, seq): (usize, u64),
    shared: &Shared,
) -> io::Result<()>
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
        let due = if f.stalled[slot] || seq <= f.stalled_upto[slot] {
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
