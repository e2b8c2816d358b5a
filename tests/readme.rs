//! The README's Rust example is `examples/readme.rs`, word for word below its opening
//! comment: `cargo test` compiles it (with every example), and this test checks the two are
//! the same text and runs it.

use std::path::PathBuf;
use std::process::Command;

/// The first ```rust block of the README's "Use" section.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let use_section = readme
        .split("\n## Use\n")
        .nth(1)
        .expect("the README has a \"## Use\" section");
    let block = use_section
        .split("```rust\n")
        .nth(1)
        .expect("the Use section has a ```rust block");
    block
        .split("\n```")
        .next()
        .expect("the block ends")
        .to_string()
        + "\n"
}

#[test]
fn the_readme_example_is_examples_readme_rs() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/readme.rs"))
            .expect("examples/readme.rs");
    // Below its crate comment (`//!` lines and the blank line after them).
    let body: String = example
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .skip(1)
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        readme_example(),
        body,
        "the README's example and examples/readme.rs differ: copy one onto the other"
    );
}

#[test]
fn the_readme_example_runs() {
    // target/<profile>/deps/main-HASH -> target/<profile>/examples/readme
    let exe = std::env::current_exe().unwrap();
    let example: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("readme"))
        .unwrap();
    if !example.exists() {
        // `cargo test` builds the examples; `cargo test --test main` does not.
        eprintln!(
            "SKIPPED: {} was not built (run the whole `cargo test`)",
            example.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(&example)
        .env("HOSTLIMIT_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout.matches(": admitted").count(), 20, "{stdout}");
    assert!(stdout.contains("not now: rate 10/s is full"), "{stdout}");
    assert!(dir.path().join("openai").exists());
}
