//! A private PostgreSQL cluster: a copy of the template in a directory of its own, started with
//! `pg_ctl` on a free loopback port, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::FixtureError;
use super::tools::{Tools, free_port};

/// How many fresh ports a start tries (a port found free can be taken before the server binds).
const PORT_ATTEMPTS: usize = 4;

/// A cluster the fixture owns.
#[derive(Debug)]
pub(super) struct LocalServer {
    tools: Tools,
    dir: PathBuf,
    port: u16,
    running: bool,
    /// Stop and remove on drop (not for the shared server, which its watchdog stops).
    owned: bool,
}

impl LocalServer {
    /// Copy the template into `dir/data` (`dir` must exist and be empty) and start it.
    pub(super) fn start_in(
        tools: Tools,
        dir: PathBuf,
        owned: bool,
    ) -> Result<LocalServer, FixtureError> {
        let template = tools.template()?;
        tools.own(&dir)?;
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&template).arg(dir.join("data"));
        tools.run(cp, "cp -a (the template cluster)")?;
        let mut server = LocalServer {
            tools,
            dir,
            port: 0,
            running: false,
            owned,
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(FixtureError::NoServer {
            detail: "no port could be bound".into(),
        }))
    }

    pub(super) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(super) fn tools(&self) -> &Tools {
        &self.tools
    }

    /// `pg_ctl start` on `self.port`, waiting until it accepts connections.
    pub(super) fn spawn(&mut self) -> Result<(), FixtureError> {
        let log = self.dir.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off -c shared_buffers=16MB -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let mut start = self.tools.command(&self.tools.pg_ctl);
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "-s", "-o", &options, "start"]);
        match self.tools.run(start, "pg_ctl start") {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(FixtureError::Tool {
                tool,
                status,
                output,
            }) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Err(FixtureError::Tool {
                    tool,
                    status,
                    output: format!("{output}\n--- server log (tail) ---\n{tail}"),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `pg_ctl stop -m immediate` (a crash, as far as the clients can tell; the data stays).
    pub(super) fn stop(&mut self) -> Result<(), FixtureError> {
        if !self.running {
            return Ok(());
        }
        let mut stop = self.tools.command(&self.tools.pg_ctl);
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "-s", "stop"]);
        self.tools.run(stop, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// Leave the server running when this handle drops (its watchdog stops it).
    pub(super) fn detach(mut self) {
        self.owned = false;
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
