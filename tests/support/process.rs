//! The test side of a worker: spawning it (this binary re-executed), signals, waiting, its
//! output and its standard error.

use super::*;

/// A worker process; killed and reaped if dropped while still running.
pub struct Worker {
    child: Child,
    name: String,
    out: PathBuf,
    stderr: PathBuf,
}

/// Starts a worker called `name` (its files are `DIR/NAME.out` and `DIR/NAME.err`) that runs
/// `script` on the limiter at `path`, with extra environment variables `env`.
pub fn spawn(dir: &Path, path: &Path, name: &str, script: &str, env: &[(&str, &str)]) -> Worker {
    let out = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = command(exe);
    command
        .args([
            "--exact",
            "support::worker_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER_ENV, script)
        .env(PATH_ENV, path)
        .env(OUT_ENV, &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("create the worker's stderr file"));
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn worker {name}: {e}{}", runner::hint()));
    Worker {
        child,
        name: name.to_string(),
        out,
        stderr,
    }
}

impl Worker {
    /// The worker's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `signal` to the worker.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("{signal} {}: {e}", self.name));
    }

    /// Waits for the worker to exit, at most `timeout`; a worker still running then is
    /// killed and the test fails (a hang).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for a worker") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "worker {} still running after {timeout:?} (hung); stderr:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the worker (at most `timeout`) and checks that it exited successfully.
    pub fn finish(&mut self, timeout: Duration) -> Output {
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "worker {} failed: {status}; stderr:\n{}",
            self.name,
            self.stderr_text()
        );
        self.output()
    }

    /// What the worker wrote so far (a torn last line is ignored).
    pub fn output(&self) -> Output {
        Output::read(&self.out)
    }

    /// The worker's standard error.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Is the worker stopped (by SIGSTOP)? Reads `/proc/PID/stat`.
    pub fn is_stopped(&self) -> bool {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may contain spaces.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'T' || state == 't')
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
