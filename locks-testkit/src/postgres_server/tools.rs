//! The PostgreSQL tools: where `initdb` and `pg_ctl` are, running them (as the `postgres`
//! user when the tests run as root: PostgreSQL refuses to run as root), the cached template
//! cluster, free ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{FixtureError, SHARED_PORT};

/// The directories searched for `initdb` and `pg_ctl` after `PATH`: Debian's versioned
/// directories, newest first.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    debian.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    dirs.extend(debian);
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs
}

/// The PostgreSQL binaries the fixture runs.
#[derive(Debug, Clone)]
pub(super) struct Tools {
    pub(super) initdb: PathBuf,
    pub(super) pg_ctl: PathBuf,
    /// Run the tools through `runuser -u postgres --` (the tests run as root).
    pub(super) as_postgres: Option<(u32, u32)>,
}

impl Tools {
    pub(super) fn find() -> Result<Tools, FixtureError> {
        let dir = candidate_dirs()
            .into_iter()
            .find(|d| is_executable(&d.join("initdb")) && is_executable(&d.join("pg_ctl")))
            .ok_or_else(|| FixtureError::NoServer {
                detail: "no initdb and pg_ctl on PATH nor in /usr/lib/postgresql/*/bin".into(),
            })?;
        let as_postgres = if running_as_root() {
            Some(postgres_ids().ok_or_else(|| {
                FixtureError::NoServer {
                    detail:
                        "running as root, and there is no `postgres` user to run the server as \
                         (PostgreSQL refuses root)"
                            .into(),
                }
            })?)
        } else {
            None
        };
        Ok(Tools {
            initdb: dir.join("initdb"),
            pg_ctl: dir.join("pg_ctl"),
            as_postgres,
        })
    }

    /// A command running `program` as the server's user.
    pub(super) fn command(&self, program: &Path) -> Command {
        let mut c = match self.as_postgres {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.stdin(Stdio::null());
        c
    }

    /// Run `command` to completion; its output in the error when it fails.
    pub(super) fn run(&self, mut command: Command, tool: &str) -> Result<String, FixtureError> {
        let out = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| FixtureError::Tool {
                tool: tool.to_owned(),
                status: "could not start".into(),
                output: e.to_string(),
            })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(FixtureError::Tool {
                tool: tool.to_owned(),
                status: out.status.to_string(),
                output: text,
            })
        }
    }

    /// Hand `path` to the server's user (when running as root).
    pub(super) fn own(&self, path: &Path) -> Result<(), FixtureError> {
        if let Some((uid, gid)) = self.as_postgres {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(FixtureError::io("hand a directory to the postgres user"))?;
        }
        Ok(())
    }

    /// A template cluster made once per machine and version by `initdb` (under the temporary
    /// directory), copied for every server: `initdb` takes about a second, a copy a few
    /// milliseconds. Made in a scratch directory and renamed into place, so concurrent test
    /// processes never see half of one.
    pub(super) fn template(&self) -> Result<PathBuf, FixtureError> {
        let version = self.run(
            self.command_plain(&self.initdb, ["--version"]),
            "initdb --version",
        )?;
        let tag: String = version
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        let base = std::env::temp_dir();
        let template = base.join(format!("locks-pg-template-{uid}-{tag}"));
        if template.join("PG_VERSION").exists() {
            return Ok(template);
        }
        let scratch = tempfile::Builder::new()
            .prefix("locks-pg-initdb-")
            .tempdir()
            .map_err(FixtureError::io("create a directory for initdb"))?;
        self.own(scratch.path())?;
        let data = scratch.path().join("data");
        let mut initdb = self.command(&self.initdb);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--wal-segsize=1"]);
        self.run(initdb, "initdb")?;
        if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").exists() {
            return Err(FixtureError::Io {
                context: "move the template cluster into place",
                source: std::io::Error::other(template.display().to_string()),
            });
        }
        Ok(template)
    }

    fn command_plain<const N: usize>(&self, program: &Path, args: [&str; N]) -> Command {
        let mut c = Command::new(program);
        c.args(args).stdin(Stdio::null());
        c
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the `postgres` user, from `/etc/passwd`.
fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// A loopback port nobody listens on, never the shared 5432.
pub(super) fn free_port() -> Result<u16, FixtureError> {
    for _ in 0..32 {
        let port = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(|l| l.local_addr())
            .map_err(FixtureError::io("find a free port on 127.0.0.1"))?
            .port();
        if port != SHARED_PORT {
            return Ok(port);
        }
    }
    Err(FixtureError::Io {
        context: "find a free port on 127.0.0.1",
        source: std::io::Error::other("only the shared port was found"),
    })
}
