//! One server shared by every test process of a run: `cargo nextest` runs each test in a
//! process of its own, and a server per test would cost a start each. The first process of
//! the run starts it in a directory named after the run, the others read its URL there, and a
//! watchdog stops it and removes the directory when the run ends (the `cargo nextest` process,
//! or, under `cargo test`, the test process, exits).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::FixtureError;
use super::process::LocalServer;
use super::tools::Tools;

/// How long a process waits for the shared server another one is starting.
const WAIT: Duration = Duration::from_secs(60);

/// The process whose exit ends the run: `cargo nextest` (the parent) when the test runs under
/// it, else this process.
fn run_owner() -> (u32, String) {
    match std::env::var("NEXTEST_RUN_ID") {
        Ok(run) => {
            let parent = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1.to_owned();
                    after.split_whitespace().nth(1)?.parse().ok()
                })
                .unwrap_or_else(std::process::id);
            let run: String = run
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(12)
                .collect();
            (parent, run)
        }
        Err(_) => (std::process::id(), "p".to_owned()),
    }
}

/// The URL of the run's shared server, starting it if this process is the first.
pub(super) fn url() -> Result<String, FixtureError> {
    let (owner, run) = run_owner();
    let dir = std::env::temp_dir().join(format!("locks-pg-shared-{owner}-{run}"));
    match std::fs::create_dir(&dir) {
        Ok(()) => start(&dir, owner),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => wait_for(&dir),
        Err(e) => Err(FixtureError::io("create the shared server directory")(e)),
    }
}

fn start(dir: &Path, owner: u32) -> Result<String, FixtureError> {
    let started =
        Tools::find().and_then(|tools| LocalServer::start_in(tools, dir.to_owned(), false));
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            // The others fail with the same message instead of waiting.
            let _ = std::fs::write(dir.join("error"), e.to_string());
            watchdog(owner, dir, None);
            return Err(e);
        }
    };
    let url = server.url();
    watchdog(owner, dir, Some((server.tools(), server.data())));
    let tmp = dir.join("url.tmp");
    std::fs::write(&tmp, &url).map_err(FixtureError::io("write the shared server's URL"))?;
    std::fs::rename(&tmp, dir.join("url"))
        .map_err(FixtureError::io("publish the shared server's URL"))?;
    server.detach();
    Ok(url)
}

fn wait_for(dir: &Path) -> Result<String, FixtureError> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(url) = std::fs::read_to_string(dir.join("url")) {
            return Ok(url);
        }
        if let Ok(error) = std::fs::read_to_string(dir.join("error")) {
            return Err(FixtureError::NoServer { detail: error });
        }
        if std::time::Instant::now() >= deadline {
            return Err(FixtureError::SharedNotReady {
                dir: dir.to_owned(),
                secs: WAIT.as_secs(),
            });
        }
        // Polling a file another process writes: no event to wait on.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A detached shell that waits for `owner` to exit, then stops the server (`pg_ctl stop -m
/// immediate`) and removes `dir`.
fn watchdog(owner: u32, dir: &Path, server: Option<(&Tools, PathBuf)>) {
    let script = r#"pid=$1; dir=$2; data=$3; shift 3
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
if [ "$#" -gt 0 ]; then "$@" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1; fi
rm -rf "$dir""#;
    let mut c = if Path::new("/usr/bin/setsid").exists() {
        let mut c = Command::new("/usr/bin/setsid");
        c.arg("sh");
        c
    } else {
        Command::new("sh")
    };
    c.args(["-c", script, "locks-pg-watchdog"])
        .arg(owner.to_string())
        .arg(dir);
    match server {
        Some((tools, data)) => {
            c.arg(data);
            if tools.as_postgres.is_some() {
                c.args(["runuser", "-u", "postgres", "--"]);
            }
            c.arg(&tools.pg_ctl);
        }
        None => {
            c.arg(PathBuf::new());
        }
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Err(e) = c.spawn() {
        eprintln!(
            "locks-testkit: could not start the watchdog of the shared PostgreSQL server in {}: {e}; stop it by hand",
            dir.display()
        );
    }
}
