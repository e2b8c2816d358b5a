//! `completions` and `man`: shell completion scripts and man pages, generated from the
//! command line's own definitions (`args.rs`), so they never disagree with `--help`.

use clap::CommandFactory;

use crate::cli::args::Cli;
use crate::cli::exit::{Exit, Failure};
use crate::cli::{print_json, print_out};

/// `hostlimit completions SHELL`: the completion script on stdout (with `--json`, inside a
/// document).
pub fn completions(shell: clap_complete::Shell, json: bool) -> Result<Exit, Failure> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "hostlimit", &mut script);
    let script = String::from_utf8_lossy(&script);
    if json {
        print_json(&serde_json::json!({"ok": true, "shell": shell.to_string(), "script": script}))?;
    } else {
        print_out(&script)?;
    }
    Ok(Exit::Success)
}

/// `hostlimit man [COMMAND]`: the man page of hostlimit, or of one of its commands
/// (`hostlimit-acquire(1)`), in roff on stdout.
pub fn man(name: Option<&str>, json: bool) -> Result<Exit, Failure> {
    let mut command = Cli::command();
    command.build();
    let page = match name {
        None => command,
        Some(name) => {
            let Some(sub) = command
                .get_subcommands()
                .find(|c| c.get_name() == name && !c.is_hide_set())
            else {
                let known: Vec<&str> = command
                    .get_subcommands()
                    .filter(|c| !c.is_hide_set())
                    .map(|c| c.get_name())
                    .collect();
                return Err(Failure::new(
                    Exit::Usage,
                    format!("no command {name:?}; the commands are {}", known.join(", ")),
                ));
            };
            // A page named hostlimit-NAME; the name lives until the process ends, moments later.
            let page_name: &'static str = Box::leak(format!("hostlimit-{name}").into_boxed_str());
            sub.clone().name(page_name)
        }
    };
    let title = page.get_name().to_string();
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(|e| Failure::new(Exit::Io, format!("man page: {e}")))?;
    let roff = String::from_utf8_lossy(&roff);
    if json {
        print_json(&serde_json::json!({"ok": true, "page": format!("{title}.1"), "roff": roff}))?;
    } else {
        print_out(&roff)?;
    }
    Ok(Exit::Success)
}
