//! `hostlimit top` on a real terminal: run under tmux (`new-session -d`, `send-keys`,
//! `capture-pane -p`) while `hostlimit demo`'s workers use a limiter; the bars must move, and
//! quitting must give the terminal back as it was (normal screen, cursor shown, the same
//! `stty` settings).
//!
//! tmux is needed: without it the test says so and passes, except under CI (`CI` set), where
//! it fails (`.ci/run` installs tmux).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hostlimit");

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    fn flag(&self, name: &str) -> String {
        self.run(&[
            "display-message",
            "-p",
            "-t",
            "top",
            &format!("#{{{name}}}"),
        ])
        .trim()
        .to_string()
    }

    /// The screen once `done` holds for it, waiting at most `limit`.
    fn wait_for(&self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waited {limit:?} for:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let socket_path = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "display-message",
                "-p",
                "#{socket_path}",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
        // The server leaves its socket behind.
        if let Ok(path) = socket_path
            && !path.is_empty()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The rows of a screen that show `rate`'s bar: `[███  ]     150/200`.
fn rate_rows<'a>(screen: &'a str, rate: &str) -> Vec<&'a str> {
    screen
        .lines()
        .filter(|l| {
            l.trim_start_matches(['▶', ' '])
                .starts_with(&format!("{rate} "))
        })
        .collect()
}

#[test]
fn top_under_tmux_shows_the_demo_moving_and_gives_the_terminal_back() {
    if !tmux_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing: CI must install it (.ci/run, step \"tmux\")"
        );
        eprintln!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().display().to_string();
    let tmux = Tmux {
        socket: format!("hostlimit-top-test-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
    ]);
    let before = dir.path().join(".stty-before");
    let after = dir.path().join(".stty-after");
    let line = format!(
        "stty -g > {b}; {BIN} --dir {dir_text} top -n 200ms; echo TOP-EXIT-$?; stty -g > {a}",
        b = before.display(),
        a = after.display(),
    );
    tmux.run(&["send-keys", "-t", "top", &line, "Enter"]);
    tmux.wait_for(Duration::from_secs(10), |s| s.contains("hostlimit top"));
    assert_eq!(
        tmux.flag("alternate_on"),
        "1",
        "top draws on the alternate screen"
    );

    let mut demo = Command::new(BIN)
        .args([
            "--dir",
            &dir_text,
            "demo",
            "--seconds",
            "5",
            "--workers",
            "3",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tmux.wait_for(Duration::from_secs(10), |s| {
        s.contains("demo-") && !rate_rows(s, "200/10s").is_empty()
    });
    // Over three seconds the 10-second window fills: its row (bar and used/limit) changes.
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let screen = tmux.screen();
        seen.extend(
            rate_rows(&screen, "200/10s")
                .into_iter()
                .map(str::to_string),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    seen.dedup();
    assert!(seen.len() >= 3, "the bar did not move: {seen:#?}");
    let used: Vec<u64> = seen
        .iter()
        .filter_map(|row| {
            let field = row.split_whitespace().find(|f| f.ends_with("/200"))?;
            field.trim_end_matches("/200").parse().ok()
        })
        .collect();
    assert!(
        used.windows(2).any(|w| w[0] < w[1]),
        "used never grew: {seen:#?}"
    );
    let screen = tmux.screen();
    assert!(screen.contains("q quit"), "{screen}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let screen = tmux.wait_for(Duration::from_secs(10), |s| s.contains("TOP-EXIT-0"));
    assert!(
        // The command line as typed, wrapped at the pane's width (where a space that falls
        // at the end of a line is trimmed by capture-pane, so spaces are not compared).
        screen
            .replace(['\n', ' '], "")
            .contains("top-n200ms;echoTOP-EXIT-$?"),
        "the shell's screen is back: {screen}"
    );
    assert!(!screen.contains("q quit"), "{screen}");
    assert_eq!(tmux.flag("alternate_on"), "0", "the normal screen is back");
    assert_eq!(tmux.flag("cursor_flag"), "1", "the cursor is shown again");
    wait_for_file(&after);
    assert_eq!(
        std::fs::read_to_string(&before).unwrap(),
        std::fs::read_to_string(&after).unwrap(),
        "the terminal's settings (raw mode) are restored"
    );
    assert!(demo.wait().unwrap().success());
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() || std::fs::read_to_string(path).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
