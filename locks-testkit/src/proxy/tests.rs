//! The fault proxy against a loopback echo server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

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

/// A server on loopback that keeps every byte it receives (over all connections).
async fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                let mut buf = [0_u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, got)
}

/// `stall_open` holds the bytes of the connections open when it is called, not of later ones,
/// and `resume` delivers them even after the client closed its connection (a request that
/// reaches the server after the client gave up on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_open_holds_only_old_connections_and_delivers_after_the_client_left() {
    let (addr, got) = recording_server().await;
    let text = || String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    let proxy = FaultProxy::start(addr).await.unwrap();
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    old.write_all(b"a").await.unwrap();
    until("the first byte arrives", || text() == "a").await;

    proxy.stall_open(Direction::ClientToServer);
    old.write_all(b"late").await.unwrap();
    until("the old connection's bytes are held", || {
        proxy.held_bytes(Direction::ClientToServer) == 4
    })
    .await;
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    new.write_all(b"new").await.unwrap();
    until("the new connection's bytes arrive", || text() == "anew").await;
    assert_eq!(proxy.held_bytes(Direction::ClientToServer), 4);

    drop(old);
    proxy.resume(Direction::ClientToServer);
    until("the held bytes arrive after the client left", || {
        text() == "anewlate"
    })
    .await;
}
