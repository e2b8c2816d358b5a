//! A throwaway `redis-server` on a free loopback port, for the tests and the benchmark (not
//! part of the API): started in a directory of the caller's, with its append-only file
//! there, stopped (`SIGKILL`) when dropped.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The program started: `$HOSTLIMIT_REDIS_SERVER`, or `redis-server` on the `PATH`.
pub fn program() -> PathBuf {
    std::env::var_os("HOSTLIMIT_REDIS_SERVER")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

/// Whether the program can be started here.
pub fn available() -> bool {
    Command::new(program())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A server for a test in `dir`, or `None` where the machine has no `redis-server`: the
/// test then says so and passes, except under `CI=true`, where this panics (CI must run the
/// Redis tests).
///
/// # Panics
///
/// Under `CI=true` without `redis-server`, or when the server does not start.
pub fn for_test(dir: &Path, durable: bool) -> Option<LocalServer> {
    if !available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is missing, and CI must run the Redis tests: apt-get install redis-server"
        );
        eprintln!("SKIPPED: no redis-server on this machine (apt-get install redis-server)");
        return None;
    }
    Some(LocalServer::start(dir, durable).expect("redis-server starts"))
}

/// A running `redis-server`.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    fsync_always: bool,
    extra: Vec<String>,
}

impl LocalServer {
    /// Starts a server on a free loopback port with its files in `dir`, with an
    /// append-only file fsynced at every write (`appendfsync always`) if `durable`.
    ///
    /// # Errors
    ///
    /// The program is missing, or the server did not answer within 10 s.
    pub fn start(dir: &Path, durable: bool) -> io::Result<LocalServer> {
        LocalServer::start_with(dir, durable, &[])
    }

    /// [`LocalServer::start`] with more arguments for `redis-server` (a Cluster node:
    /// `--cluster-enabled yes`).
    ///
    /// # Errors
    ///
    /// As [`LocalServer::start`].
    pub fn start_with(dir: &Path, durable: bool, extra: &[&str]) -> io::Result<LocalServer> {
        let mut last = None;
        for _ in 0..5 {
            // A port the kernel just handed out and took back: free, short of a race, which
            // the retry covers.
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let mut server = LocalServer {
                child: None,
                port,
                dir: dir.to_path_buf(),
                fsync_always: durable,
                extra: extra.iter().map(ToString::to_string).collect(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let mut command = Command::new(program());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"]);
        if self.fsync_always {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && child.try_wait()?.is_some()
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited at start; see {}",
                    self.dir.join("redis.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        Err(io::Error::other(
            "redis-server did not answer PING within 10 s",
        ))
    }

    /// Whether the server answers `PING` now (loaded and serving).
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with `SIGKILL` (no shutdown, no last write) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (from its append-only file).
    ///
    /// # Errors
    ///
    /// As [`LocalServer::start`].
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill9();
        self.spawn()
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the server: a server that stops answering
    /// without closing its connections.
    ///
    /// # Errors
    ///
    /// The server is not running, or the signal failed.
    pub fn pause(&self, paused: bool) -> io::Result<()> {
        let pid = self.pid().ok_or_else(|| io::Error::other("not running"))?;
        let signal = if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(Pid::from_raw(pid as i32), signal).map_err(io::Error::from)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        self.kill9();
    }
}
