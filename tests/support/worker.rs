//! The worker side: a worker process running its script, step by step.

use super::*;

pub(super) struct WorkerProcess {
    path: PathBuf,
    dir: PathBuf,
    /// The worker's name (its output file's stem).
    name: String,
    out: File,
    limiter: Option<Limiter>,
    random: u64,
    /// Record admissions only (a worker that spins on a full limiter).
    quiet: bool,
}

impl WorkerProcess {
    pub(super) fn new(path: PathBuf, out_path: &Path) -> Self {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(out_path)
            .expect("open the worker's output");
        WorkerProcess {
            path,
            dir: out_path
                .parent()
                .expect("the output has a directory")
                .to_path_buf(),
            name: out_path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default(),
            out,
            limiter: None,
            random: (u64::from(std::process::id()) << 32 ^ now()) | 1,
            quiet: false,
        }
    }

    /// Writes one line with a single `write`, so that a kill leaves whole lines.
    fn line(&mut self, text: &str) {
        write_line(&mut self.out, text);
    }

    /// A random number in `0..bound` (xorshift64*).
    fn random(&mut self, bound: u64) -> u64 {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }

    fn limiter(&self) -> &Limiter {
        self.limiter
            .as_ref()
            .expect("the script opens a limiter first")
    }

    pub(super) fn run(&mut self, script: &str) {
        for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<&str> = step.split_whitespace().collect();
            let arg = |i: usize| -> u64 {
                words
                    .get(i)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("step {step:?}: argument {i}"))
            };
            match words[0] {
                "open" | "attach" => {
                    if !self.open(&words) {
                        return;
                    }
                }
                "umask" => {
                    let mask = u32::from_str_radix(words[1], 8).expect("octal umask");
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
                }
                "setuid" => {
                    let uid = nix::unistd::Uid::from_raw(arg(1) as u32);
                    if let Err(error) = nix::unistd::setuid(uid) {
                        self.line(&format!("E setuid: {error}"));
                        return;
                    }
                }
                "touch" => touch(&self.dir.join(words[1])),
                "wait" => wait_for_file(&self.dir.join(words[1]), Duration::from_secs(60)),
                "sleep" => std::thread::sleep(Duration::from_millis(arg(1))),
                "acquire" => {
                    self.acquire(arg(1));
                }
                "fill" => {
                    for _ in 0..arg(2) {
                        if self.acquire(arg(1)).is_some() {
                            break;
                        }
                    }
                }
                "hammer" => {
                    let weights: Vec<u64> = words[2]
                        .split(',')
                        .map(|w| w.parse().expect("a weight"))
                        .collect();
                    self.quiet = words.get(4) == Some(&"quiet");
                    self.hammer(arg(1), &weights, arg(3));
                    self.quiet = false;
                }
                "usage" => self.usage(),
                "reset" | "remove" => self.admin(words[0]),
                "nofile" => {
                    use nix::sys::resource::{Resource, setrlimit};
                    setrlimit(Resource::RLIMIT_NOFILE, arg(1), arg(1)).expect("setrlimit");
                }
                "resources" => self.resources(),
                "churn" => {
                    for round in 0..arg(1) {
                        self.admin(if round % 3 == 2 { "remove" } else { "reset" });
                        self.acquire(1);
                    }
                }
                "admin" => {
                    for index in 0..arg(2) {
                        spin_for_file(&self.dir.join(format!("go.{index}")));
                        self.admin(words[1]);
                        touch(&self.dir.join(format!("{}.{index}", self.name)));
                    }
                }
                "follow" => self.follow(arg(1), words[2]),
                "chaos" | "scribble" | "cli-status" => {
                    let out = &mut self.out;
                    crate::hostile::step(&words, &self.path, &mut |text: &str| {
                        write_line(out, text);
                    });
                }
                other => panic!("unknown worker step {other:?}"),
            }
        }
    }

    /// Opens or attaches; false (after recording the error) if that failed.
    fn open(&mut self, words: &[&str]) -> bool {
        let result = if words[0] == "attach" {
            Limiter::attach(&self.path)
        } else {
            let rates: Vec<Rate> = words[1]
                .split(',')
                .map(|r| r.parse().expect("a rate"))
                .collect();
            let mut builder = Limiter::builder(&rates);
            for option in &words[2..] {
                builder = match option.split_once('=') {
                    Some(("mode", mode)) => {
                        builder.mode(u32::from_str_radix(mode, 8).expect("octal mode"))
                    }
                    Some(("interval", ms)) => builder
                        .check_interval(Duration::from_millis(ms.parse().expect("interval ms"))),
                    None if *option == "manual" => builder.clock(Arc::new(ManualClock::new(1))),
                    None if *option == "parents" => builder.create_dirs(true),
                    _ => panic!("unknown open option {option:?}"),
                };
            }
            builder.open(&self.path)
        };
        match result {
            Ok(limiter) => {
                self.limiter = Some(limiter);
                self.line(&format!("O {}", std::process::id()));
                true
            }
            Err(error) => {
                self.line(&format!("E {error}"));
                false
            }
        }
    }

    /// One acquire, recorded; the retry-after of an exhausted denial, or `Some(ZERO)` for
    /// any other denial, `None` for an admission.
    fn acquire(&mut self, weight: u64) -> Option<Duration> {
        let before = now();
        let result = self.limiter().try_acquire_stamped(weight);
        let after = now();
        match result {
            Ok(Some(stamp)) => {
                self.line(&format!(
                    "A {before} {after} {} {} {weight}",
                    stamp.timestamp, stamp.sequence
                ));
                None
            }
            Ok(None) => {
                self.line(&format!("F {before} {after} {weight}"));
                None
            }
            Err(denied) if self.quiet => Some(denied.retry_after().unwrap_or(Duration::ZERO)),
            Err(denied) => {
                let kind = match denied.kind() {
                    DenialKind::Exhausted { .. } => 'X',
                    DenialKind::NeverFits { .. } => 'N',
                    _ => 'U',
                };
                let retry = denied
                    .retry_after()
                    .map_or_else(|| "-".to_string(), |r| nanos(r).to_string());
                self.line(&format!(
                    "D {before} {after} {weight} {} {retry} {kind}",
                    denied.rate_index()
                ));
                Some(denied.retry_after().unwrap_or(Duration::ZERO))
            }
        }
    }

    fn hammer(&mut self, millis: u64, weights: &[u64], pause_us: u64) {
        let end = now() + millis * 1_000_000;
        while now() < end {
            let weight = weights[self.random(weights.len() as u64) as usize];
            let retry = self.acquire(weight);
            let mut pause = Duration::from_micros(self.random(pause_us + 1));
            if let Some(retry) = retry {
                pause = pause.min(retry);
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }

    fn usage(&mut self) {
        let fields: Vec<String> = match self.limiter().usage() {
            Ok(rates) => rates
                .iter()
                .map(|u| {
                    let next = u
                        .next_free
                        .map_or_else(|| "-".to_string(), |d| nanos(d).to_string());
                    format!("{}:{}:{next}:{}", u.used, u.remaining, u.denied)
                })
                .collect(),
            Err(error) => panic!("usage failed: {error}"),
        };
        self.line(&format!("U {}", fields.join(" ")));
    }
}

/// A small random generator (xorshift64*).
pub struct Random(pub u64);

impl Random {
    /// A number in `0..bound` (0 for a bound of 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

/// Writes one line with a single `write`, so that a kill leaves whole lines.
fn write_line(out: &mut File, text: &str) {
    out.write_all(format!("{text}\n").as_bytes())
        .expect("write the worker's output");
}

/// Waits until `path` exists without sleeping, so that the processes of a race start within
/// microseconds of each other (at most a minute).
fn spin_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::yield_now();
    }
}

/// Open descriptors of this process, and mappings of files in `dir` (by the path the kernel
/// shows, which ends in ` (deleted)` for an unlinked file).
pub fn resources_in_use(dir: &Path) -> (usize, usize) {
    let descriptors = fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count();
    let dir = dir.display().to_string();
    let mappings = fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .filter(|line| line.contains(dir.as_str()))
        .count();
    (descriptors, mappings)
}

impl WorkerProcess {
    /// `reset` or `remove`, recorded.
    fn admin(&mut self, op: &str) {
        let result = if op == "reset" {
            hostlimit::reset(&self.path).map(drop)
        } else {
            hostlimit::remove(&self.path).map(drop)
        };
        match result {
            Ok(()) => self.line(&format!("M {op} ok")),
            Err(error) => self.line(&format!("M {op} error {error}")),
        }
    }

    fn resources(&mut self) {
        let (descriptors, mappings) = resources_in_use(&self.dir);
        self.line(&format!("R {descriptors} {mappings}"));
    }

    /// The user's side of the reset race (see the `follow` step).
    fn follow(&mut self, tries: u64, rates: &str) {
        let rates: Vec<Rate> = rates
            .split(',')
            .map(|r| r.parse().expect("a rate"))
            .collect();
        for index in 0..tries {
            // A fresh handle per try, which only `reset`/`remove` can move (the path check
            // waits an hour).
            self.limiter = Some(
                Limiter::builder(&rates)
                    .check_interval(Duration::from_secs(3600))
                    .open(&self.path)
                    .expect("open for the race"),
            );
            touch(&self.dir.join(format!("ready.{index}")));
            spin_for_file(&self.dir.join(format!("go.{index}")));
            let done = |r: usize| self.dir.join(format!("r{r}.{index}")).exists();
            while !(done(0) && done(1)) {
                let _ = self.limiter().usage();
            }
            self.acquire(1);
            touch(&self.dir.join(format!("done.{index}")));
        }
    }
}
