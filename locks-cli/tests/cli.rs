//! The `locks` binary against a real redis-server, with locks held by a `LockService`.

use std::process::Stdio;
use std::time::Duration;

use locks_core::{AcquireOptions, LockGuard, LockService};
use locks_redis::RedisBackend;
use locks_testkit::redis_server::{RedisServer, TlsRedisServer};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What one run of `locks` gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {:?}", self.stdout, self.stderr))
    }
}

/// Run `locks ARGS` with `stdin` as its input.
async fn locks(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_locks"))
        .args(args)
        .env_remove("LOCKS_URL")
        .env_remove("LOCKS_TLS_CA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn locks");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("locks did not finish within 30 s")
        .expect("locks output");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

struct Held {
    server: RedisServer,
    locks: LockService,
    guards: Vec<LockGuard>,
}

/// A private redis-server with a mutex, two semaphore permits and a reader held.
async fn held() -> Held {
    let server = RedisServer::start()
        .await
        .expect("redis-server (see the README)");
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    let locks = LockService::new(backend).expect("service");
    let opts = AcquireOptions::new().ttl(Duration::from_secs(60));
    let mut guards = vec![
        locks
            .acquire_opts("payment:42", opts.clone())
            .await
            .expect("mutex"),
    ];
    let pool = locks.semaphore("pool:db", 3).expect("semaphore");
    guards.push(pool.acquire_opts(opts.clone()).await.expect("permit"));
    guards.push(pool.acquire_opts(opts.clone()).await.expect("permit"));
    let rw = locks.rwlock("config").expect("rwlock");
    guards.push(rw.read_opts(opts).await.expect("reader"));
    Held {
        server,
        locks,
        guards,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_show_and_json_describe_the_held_locks() {
    let h = held().await;
    let url = h.server.url();

    let table = locks(&["--url", &url, "ls"], "").await;
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "KIND", "HOLDERS", "OWNER", "FENCE", "TTL", "WAITING"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {}", table.stdout))
            .clone()
    };
    let mutex = &h.guards[0];
    assert_eq!(
        row("payment:42")[..5],
        [
            "payment:42",
            "mutex",
            "1",
            &mutex.token().to_hyphenated()[..8],
            &mutex.fence().to_string()
        ]
    );
    assert_eq!(row("pool:db")[1..3], ["semaphore", "2"]);
    assert_eq!(row("config")[1..3], ["rwlock", "1"]);
    assert_eq!(rows.len(), 3, "{}", table.stdout);

    // A pattern keeps only matching names.
    let only = locks(&["--url", &url, "--json", "ls", "pay*"], "").await;
    assert_eq!(only.code, Some(0), "{}", only.stderr);
    let doc = only.json();
    assert_eq!(doc["prefix"], "_lock:");
    let listed = doc["locks"].as_array().expect("locks");
    assert_eq!(listed.len(), 1, "{doc}");
    let lock = &listed[0];
    assert_eq!(lock["name"], "payment:42");
    assert_eq!(lock["kind"], "mutex");
    assert_eq!(lock["writer_waiting"], false);
    let holder = &lock["holders"][0];
    assert_eq!(holder["lease"], "mutex");
    assert_eq!(holder["owner"], mutex.token().to_hyphenated());
    assert_eq!(holder["fence"], mutex.fence());
    let ttl = holder["ttl_ms"].as_u64().expect("ttl_ms");
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // show: every holder of one name.
    let show = locks(&["--url", &url, "--json", "show", "pool:db"], "").await;
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    let doc = show.json();
    assert_eq!(doc["held"], true);
    let owners: Vec<&str> = doc["locks"][0]["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| h["owner"].as_str().expect("owner"))
        .collect();
    let mut expected = [
        h.guards[1].token().to_hyphenated(),
        h.guards[2].token().to_hyphenated(),
    ];
    expected.sort();
    let mut owners: Vec<String> = owners.into_iter().map(str::to_owned).collect();
    owners.sort();
    assert_eq!(owners, expected);
    let text = locks(&["--url", &url, "show", "nobody"], "").await;
    assert_eq!(text.code, Some(0));
    assert_eq!(text.stdout, "nobody: not held\n");

    // watch with a count ends by itself, one JSON document per refresh.
    let watch = locks(
        &[
            "--url",
            &url,
            "--json",
            "watch",
            "config",
            "--interval",
            "10ms",
            "--count",
            "2",
        ],
        "",
    )
    .await;
    assert_eq!(watch.code, Some(0), "{}", watch.stderr);
    assert_eq!(watch.stdout.lines().count(), 2, "{}", watch.stdout);
    drop(h.locks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_needs_force_and_a_confirmation() {
    let h = held().await;
    let url = h.server.url();
    let backend = RedisBackend::connect(&url).await.expect("connect");
    let still_held = || async {
        let s = LockService::new(backend.clone()).expect("service");
        s.is_locked("payment:42").await.expect("is_locked")
    };

    let refused = locks(&["--url", &url, "release", "payment:42"], "").await;
    assert_eq!(refused.code, Some(4), "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert!(still_held().await);

    let declined = locks(&["--url", &url, "release", "payment:42", "--force"], "n\n").await;
    assert_eq!(declined.code, Some(4), "{}", declined.stderr);
    assert!(declined.stderr.contains("[y/N]"), "{}", declined.stderr);
    assert!(still_held().await);

    let confirmed = locks(&["--url", &url, "release", "payment:42", "--force"], "y\n").await;
    assert_eq!(confirmed.code, Some(0), "{}", confirmed.stderr);
    assert_eq!(confirmed.stdout, "released payment:42 (mutex)\n");
    assert!(!still_held().await);

    let yes = locks(
        &[
            "--url", &url, "--json", "release", "config", "--force", "--yes",
        ],
        "",
    )
    .await;
    assert_eq!(yes.code, Some(0), "{}", yes.stderr);
    assert_eq!(yes.json()["released"], serde_json::json!(["rwlock"]));
    let gone = locks(&["--url", &url, "--json", "show", "config"], "").await;
    assert_eq!(gone.json()["held"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_servers_facts() {
    let server = RedisServer::start().await.expect("redis-server");
    let run = locks(&["--url", &server.url(), "--json", "health"], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["backend"], "redis");
    assert_eq!(doc["eviction_policy"], "noeviction");
    assert_eq!(doc["may_evict"], false);
    assert!(
        doc["server_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{doc}"
    );
    assert_eq!(doc["replication"]["role"], "master");
    assert!(doc["clock_offset_us"].is_i64(), "{doc}");
    assert!(doc["used_memory"].as_u64().is_some_and(|m| m > 0), "{doc}");
    let text = locks(&["--url", &server.url(), "health"], "").await;
    assert!(
        text.stdout.contains("eviction policy noeviction"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_clear_errors() {
    let bad = locks(&["--url", "http://example.com", "ls"], "").await;
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("unsupported URL"), "{}", bad.stderr);

    let garbled = locks(&["--url", "redis://:::", "--json", "ls"], "").await;
    assert_eq!(
        garbled.code,
        Some(2),
        "{} {}",
        garbled.stdout,
        garbled.stderr
    );
    assert_eq!(garbled.json()["exit_code"], 2);

    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let down = locks(&["--url", &url, "--connect-timeout", "2s", "ls"], "").await;
    assert_eq!(down.code, Some(3), "{}", down.stderr);
    assert!(
        down.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        down.stderr
    );
}

/// An ACL user in the URL (`redis://user:password@…`) authenticates; a wrong password is a
/// clear error that never prints the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_in_the_url_authenticate_and_a_wrong_password_is_clear() {
    let h = held().await;
    let mut admin = h.server.connection().await.expect("raw connection");
    let _: () = locks_redis::redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "operator",
            "on",
            ">s3cret-pw",
            "~*",
            "&*",
            "+@all",
        ])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let port = h.server.url().rsplit(':').next().expect("port").to_owned();
    let good = format!("redis://operator:s3cret-pw@127.0.0.1:{port}");
    let listed = locks(&["--url", &good, "--json", "ls"], "").await;
    assert_eq!(
        listed.code,
        Some(0),
        "{} / {}",
        listed.stdout,
        listed.stderr
    );
    assert!(listed.stdout.contains("payment:42"), "{}", listed.stdout);

    let bad = format!("redis://operator:wrong-pw@127.0.0.1:{port}");
    let refused = locks(&["--url", &bad, "ls"], "").await;
    assert_ne!(
        refused.code,
        Some(0),
        "{} / {}",
        refused.stdout,
        refused.stderr
    );
    let all = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        all.to_lowercase().contains("wrongpass") || all.to_lowercase().contains("auth"),
        "the error names authentication: {all}"
    );
    assert!(!all.contains("wrong-pw"), "the password is printed: {all}");
    drop(h.guards);
}

/// `rediss://` is built in (TLS through rustls): a TLS URL to a closed port is "unreachable"
/// (exit 3), not "bad URL" (exit 2, what a build without TLS answers).
#[tokio::test]
async fn tls_urls_are_understood() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let run = locks(
        &["--url", &format!("rediss://127.0.0.1:{closed}"), "ls"],
        "",
    )
    .await;
    assert_eq!(run.code, Some(3), "{} / {}", run.stdout, run.stderr);
}

/// `watch` without `--json`: the live table, redrawn in place (clear the screen, cursor home)
/// once per refresh, each frame a title line (URL, interval, pattern) and the `ls` table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_redraws_the_table_once_per_refresh() {
    let h = held().await;
    let url = h.server.url();
    let run = locks(
        &[
            "--url",
            &url,
            "watch",
            "payment",
            "--interval",
            "100ms",
            "--count",
            "2",
        ],
        "",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    const REDRAW: &str = "\x1b[2J\x1b[H";
    assert!(run.stdout.starts_with(REDRAW), "{:?}", run.stdout);
    let frames: Vec<&str> = run.stdout.split(REDRAW).skip(1).collect();
    assert_eq!(frames.len(), 2, "one frame per refresh: {:?}", run.stdout);
    let mutex = &h.guards[0];
    let owner = &mutex.token().to_hyphenated()[..8];
    let fence = mutex.fence().to_string();
    for frame in frames {
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines.len(), 4, "title, blank, header, one row: {frame:?}");
        assert_eq!(lines[0], format!("{url} — every 0.1s — payment"));
        assert_eq!(lines[1], "");
        let header: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME", "KIND", "HOLDERS", "OWNER", "FENCE", "TTL", "WAITING"
            ]
        );
        let row: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            row[..5],
            ["payment:42", "mutex", "1", owner, fence.as_str()],
            "{frame:?}"
        );
        assert_eq!(row[6], "-", "{frame:?}");
    }
    drop(h.guards);
}

/// A real TLS server (a throw-away CA and a server certificate for localhost, made with the
/// `openssl` command by the testkit's `TlsRedisServer`): a lock held over TLS is
/// listed by `locks --url rediss://… --tls-ca CA ls`; without `--tls-ca` the server's
/// certificate is not trusted (exit 3); `--tls-ca` with a plain URL is a usage error (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_is_listed_when_its_ca_is_given() {
    let server = TlsRedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("redis-server with TLS (see the README): {e}"));
    let url = server.url().to_owned();
    let ca = server.ca_path().to_string_lossy().into_owned();

    // A service holds a lock over TLS, trusting the test CA.
    let client = locks_redis::redis::Client::build_with_tls(
        url.as_str(),
        locks_redis::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(server.ca_pem().to_vec()),
        },
    )
    .expect("TLS client");
    let backend = RedisBackend::builder_from_client(client)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("TLS connect");
    let service = LockService::new(backend).expect("service");
    let guard = service
        .acquire_opts(
            "payment:tls",
            AcquireOptions::new().ttl(Duration::from_secs(60)),
        )
        .await
        .expect("mutex over TLS");

    let listed = locks(&["--url", &url, "--tls-ca", &ca, "--json", "ls"], "").await;
    assert_eq!(
        listed.code,
        Some(0),
        "{} / {}",
        listed.stdout,
        listed.stderr
    );
    let doc = listed.json();
    let all = doc["locks"].as_array().expect("locks");
    assert_eq!(all.len(), 1, "{doc}");
    assert_eq!(all[0]["name"], "payment:tls");
    assert_eq!(all[0]["kind"], "mutex");
    assert_eq!(all[0]["holders"][0]["owner"], guard.token().to_hyphenated());
    assert_eq!(all[0]["holders"][0]["fence"], guard.fence());

    // The platform's roots do not trust the test CA: the server cannot be reached safely.
    let untrusted = locks(&["--url", &url, "--connect-timeout", "2s", "ls"], "").await;
    assert_eq!(
        untrusted.code,
        Some(3),
        "{} / {}",
        untrusted.stdout,
        untrusted.stderr
    );

    // A CA for a plain URL is a mistake on the command line, said before connecting.
    let plain = locks(&["--url", "redis://127.0.0.1:1", "--tls-ca", &ca, "ls"], "").await;
    assert_eq!(plain.code, Some(2), "{}", plain.stderr);
    assert!(plain.stderr.contains("--tls-ca"), "{}", plain.stderr);
    drop(guard);
}
