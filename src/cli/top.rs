//! `hostlimit top`: a full-screen, live view of every limiter (ratatui on crossterm).
//!
//! `model` samples the files (through `report::read`, as `status` reads them) and keeps a
//! minute of admissions and denials per second; `view` draws it into any ratatui backend
//! (the tests use `TestBackend`); this file owns the terminal (raw mode and the alternate
//! screen, restored however `top` ends short of a signal) and the keys.

pub mod model;
pub mod view;

use std::io::{IsTerminal, Stdout};
use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::cli::exit::{Exit, Failure};
use crate::cli::report::{clamp_interval, read_all};
use crate::cli::target;
use crate::cli::top::model::Model;
use crate::cli::top::view::Ui;

/// The longest `top` waits for a key between two draws (the header's clock ticks).
const TICK: Duration = Duration::from_millis(250);

/// `hostlimit top`.
pub fn top(dir: &Path, names: &[String], interval: Duration, json: bool) -> Result<Exit, Failure> {
    if json {
        return Err(Failure::new(
            Exit::Usage,
            "top draws a screen and has no JSON form: use `status --json` or `watch --json`",
        ));
    }
    if !std::io::stdout().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            "top needs a terminal on stdout: use `watch` or `status` for text to a pipe or file",
        ));
    }
    // A bad name is an error now, before the screen is taken.
    target::named_or_all(dir, names)?;
    let clamped = clamp_interval(interval);
    let mut model = Model::new(clamped);
    let mut ui = Ui {
        source: if names.is_empty() {
            dir.display().to_string()
        } else {
            names.join(" ")
        },
        ..Ui::default()
    };
    let mut screen = Screen::take()?;
    let mut next_sample = Instant::now();
    loop {
        let now = Instant::now();
        if !ui.paused && now >= next_sample {
            match read_all(dir, names) {
                Ok(snapshots) => {
                    model.sample(snapshots, now);
                    ui.problem = None;
                }
                // The directory went away or became unreadable: say so, keep the last view.
                Err(failure) => ui.problem = Some(failure.message),
            }
            next_sample = (next_sample + clamped).max(now);
        }
        screen
            .terminal
            .draw(|frame| view::draw(frame, &model, &ui))
            .map_err(io_failure)?;
        let wait = if ui.paused {
            TICK
        } else {
            next_sample
                .saturating_duration_since(Instant::now())
                .min(TICK)
        };
        if event::poll(wait).map_err(io_failure)? {
            match event::read().map_err(io_failure)? {
                Event::Key(key)
                    if key.kind != KeyEventKind::Release
                        && handle_key(key, &mut model, &mut ui) == Action::Quit =>
                {
                    return Ok(Exit::Success);
                }
                // A resize (or anything else) just redraws, at the new size.
                _ => {}
            }
        }
    }
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on.
    Continue,
    /// End `top`.
    Quit,
}

/// Applies one key to the view: q, Esc or Ctrl-C quit; p or space pause; s changes the
/// order; / starts a filter (Enter applies it, Esc clears it); arrows and pages scroll.
pub fn handle_key(key: KeyEvent, model: &mut Model, ui: &mut Ui) -> Action {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if ui.editing_filter {
        match key.code {
            KeyCode::Enter => ui.editing_filter = false,
            KeyCode::Esc => {
                ui.editing_filter = false;
                model.filter.clear();
            }
            KeyCode::Backspace => {
                model.filter.pop();
            }
            KeyCode::Char(c) => model.filter.push(c),
            _ => {}
        }
        ui.offset = 0;
        return Action::Continue;
    }
    let last = model.shown().len().saturating_sub(1);
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
        KeyCode::Char('p') | KeyCode::Char(' ') => ui.paused = !ui.paused,
        KeyCode::Char('s') => model.sort = model.sort.next(),
        KeyCode::Char('/') => ui.editing_filter = true,
        KeyCode::Up | KeyCode::Char('k') => ui.offset = ui.offset.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => ui.offset = (ui.offset + 1).min(last),
        KeyCode::PageUp => ui.offset = ui.offset.saturating_sub(10),
        KeyCode::PageDown => ui.offset = (ui.offset + 10).min(last),
        KeyCode::Home => ui.offset = 0,
        _ => {}
    }
    Action::Continue
}

fn io_failure(error: std::io::Error) -> Failure {
    Failure::new(Exit::Io, format!("terminal: {error}"))
}

/// The terminal in raw mode on the alternate screen, given back as it was when dropped (and
/// on a panic).
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn take() -> Result<Screen, Failure> {
        enable_raw_mode().map_err(io_failure)?;
        let mut stdout = std::io::stdout();
        if let Err(error) = execute!(stdout, EnterAlternateScreen, crossterm::cursor::Hide) {
            restore();
            return Err(io_failure(error));
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(error) => {
                restore();
                Err(io_failure(error))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor, and ends raw mode.
fn restore() {
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

#[cfg(test)]
mod tests;
