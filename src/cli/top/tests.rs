//! `top` drawn into ratatui's `TestBackend` for fixed states of real limiter files (full,
//! empty, corrupt, replaced, many, a small terminal), and its keys.

use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use hostlimit::{Limiter, Rate};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::cli::report::read_all;
use crate::cli::top::model::{Model, Sort};
use crate::cli::top::view::{self, Ui, bar, sparkline};
use crate::cli::top::{Action, handle_key};

fn rates(texts: &[&str]) -> Vec<Rate> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

/// A limiter `name` in `dir` with `rates`, `admitted` admissions, then `denied` refusals.
fn limiter(dir: &Path, name: &str, rate_texts: &[&str], admitted: u64, denied: u64) -> Limiter {
    let limiter = Limiter::open(dir.join(name), &rates(rate_texts)).unwrap();
    for _ in 0..admitted {
        limiter.try_acquire(1).unwrap();
    }
    for _ in 0..denied {
        assert!(limiter.try_acquire(1).is_err());
    }
    limiter
}

/// Two readings of `dir`, one second apart as far as the model knows.
fn sampled(dir: &Path, between: impl FnOnce()) -> Model {
    let mut model = Model::new(Duration::from_secs(1));
    let start = Instant::now();
    model.sample(read_all(dir, &[]).unwrap(), start);
    between();
    model.sample(read_all(dir, &[]).unwrap(), start + Duration::from_secs(1));
    model
}

/// The screen as text, one string per row (trailing blanks kept).
fn render(model: &Model, ui: &Ui, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| view::draw(frame, model, ui)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

fn ui() -> Ui {
    Ui {
        source: "DIR".into(),
        ..Ui::default()
    }
}

fn row<'a>(screen: &'a [String], needle: &str) -> &'a str {
    screen
        .iter()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no row holds {needle:?}:\n{}", screen.join("\n")))
}

#[test]
fn full_limiter_shows_a_full_bar_the_binding_rate_and_denials() {
    let dir = tempfile::tempdir().unwrap();
    let _full = limiter(dir.path(), "busy", &["3/min", "100/h"], 3, 0);
    let model = sampled(dir.path(), || {
        let again = Limiter::attach(dir.path().join("busy")).unwrap();
        for _ in 0..7 {
            assert!(again.try_acquire(1).is_err());
        }
    });
    let screen = render(&model, &ui(), 80, 24);
    let text = screen.join("\n");
    let title = row(&screen, "busy");
    assert!(title.contains("FULL"), "{text}");
    assert!(title.contains("denied 7/s"), "{text}");
    let binding = row(&screen, "3/min");
    assert!(binding.starts_with("▶ 3/min"), "{text}");
    assert!(binding.contains("[████"), "{text}");
    assert!(!binding.contains("[█ "), "{text}");
    assert!(binding.contains("3/3"), "{text}");
    assert!(binding.contains("rem 0 "), "{text}");
    assert!(binding.contains("den 7/s"), "{text}");
    let other = row(&screen, "100/h");
    assert!(other.starts_with("  100/h"), "not binding: {text}");
    assert!(other.contains("3/100"), "{text}");
    assert!(other.contains("rem 97"), "{text}");
    assert!(other.contains("den 0/s"), "{text}");
    assert!(screen[23].contains("q quit"), "{text}");
}

#[test]
fn empty_limiter_shows_an_empty_bar_and_nothing_to_free() {
    let dir = tempfile::tempdir().unwrap();
    let _idle = limiter(dir.path(), "idle", &["10/s"], 0, 0);
    let model = sampled(dir.path(), || {});
    let screen = render(&model, &ui(), 80, 24);
    let text = screen.join("\n");
    assert!(row(&screen, "idle").contains("ok"), "{text}");
    assert!(row(&screen, "idle").contains("admitted 0/s"), "{text}");
    let rate = row(&screen, "10/s ");
    assert!(
        rate.starts_with("  10/s"),
        "an empty rate binds nothing: {text}"
    );
    assert!(rate.contains("[    "), "{text}");
    assert!(!rate.contains('█'), "{text}");
    assert!(rate.contains("0/10"), "{text}");
    assert!(rate.contains("rem 10"), "{text}");
    assert!(rate.contains("next -"), "{text}");
}

#[test]
fn corrupt_unreadable_and_replaced_files_show_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let _good = limiter(dir.path(), "good", &["5/s"], 1, 0);
    std::fs::write(dir.path().join("garbage"), vec![0xA5u8; 8192]).unwrap();
    std::fs::write(dir.path().join("short"), b"HOST").unwrap();
    let replaced = limiter(dir.path(), "swapped", &["4/min"], 2, 0);
    let model = sampled(dir.path(), || {
        drop(replaced);
        hostlimit::remove(dir.path().join("swapped")).unwrap();
        let _fresh = limiter(dir.path(), "swapped", &["9/min"], 1, 0);
    });
    let mut by_name = model;
    by_name.sort = Sort::Name;
    let screen = render(&by_name, &ui(), 80, 24);
    let text = screen.join("\n");
    for name in ["garbage", "short"] {
        let at = screen
            .iter()
            .position(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"));
        assert!(screen[at].contains("UNREADABLE"), "{text}");
        assert!(screen[at + 1].trim().len() > 10, "says why: {text}");
    }
    assert!(row(&screen, "swapped").contains("replaced at"), "{text}");
    assert!(row(&screen, "9/min").contains("1/9"), "{text}");
    assert!(row(&screen, "5/s").contains("1/5"), "{text}");
    // In name order, the corrupt files sit between the others.
    let order: Vec<&str> = ["garbage", "good", "short", "swapped"]
        .into_iter()
        .filter(|n| text.contains(n))
        .collect();
    assert_eq!(order.len(), 4, "{text}");
    let positions: Vec<usize> = order
        .iter()
        .map(|n| screen.iter().position(|l| l.starts_with(n)).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn many_limiters_fill_the_screen_closest_first_and_say_how_many_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut keep = Vec::new();
    for index in 0..120u64 {
        // Every tenth one is full; the others are a little used.
        let used = if index % 10 == 0 { 10 } else { index % 7 };
        keep.push(limiter(
            dir.path(),
            &format!("l{index:03}"),
            &["10/min"],
            used,
            0,
        ));
    }
    let model = sampled(dir.path(), || {});
    let screen = render(&model, &ui(), 80, 24);
    let text = screen.join("\n");
    assert_eq!(screen.len(), 24);
    assert!(screen[0].contains("120/120 limiters"), "{text}");
    let titles: Vec<&String> = screen.iter().filter(|l| l.starts_with('l')).collect();
    assert!(titles.len() >= 8, "{text}");
    // The full ones come first, in name order.
    assert!(
        titles[0].starts_with("l000") && titles[0].contains("FULL"),
        "{text}"
    );
    assert!(titles[1].starts_with("l010"), "{text}");
    assert!(row(&screen, "more below").contains("more below"), "{text}");
    assert!(screen[23].contains("q quit"), "{text}");

    // Scrolling and filtering change what is shown.
    let mut model = model;
    let mut ui = ui();
    handle_key(key(KeyCode::Down), &mut model, &mut ui);
    let scrolled = render(&model, &ui, 80, 24);
    assert!(scrolled[1].starts_with("l010"), "{}", scrolled.join("\n"));
    for c in ['/', '1', '1', '9'] {
        handle_key(key(KeyCode::Char(c)), &mut model, &mut ui);
    }
    handle_key(key(KeyCode::Enter), &mut model, &mut ui);
    let filtered = render(&model, &ui, 80, 24);
    assert!(
        filtered[0].contains("1/120 limiters"),
        "{}",
        filtered.join("\n")
    );
    assert!(
        filtered[0].contains("filter: 119"),
        "{}",
        filtered.join("\n")
    );
    assert!(filtered[1].starts_with("l119"), "{}", filtered.join("\n"));
}

#[test]
fn small_terminals_get_what_fits_and_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let _a = limiter(
        dir.path(),
        "alpha-with-a-rather-long-name",
        &["50/s", "200/10s", "90000tok/min"],
        20,
        0,
    );
    std::fs::write(dir.path().join("broken"), b"not a limiter").unwrap();
    let model = sampled(dir.path(), || {});
    // 80x24, the smallest promised size: every field of every rate is there.
    let screen = render(&model, &ui(), 80, 24);
    let text = screen.join("\n");
    for rate in ["50/s", "200/10s", "90000tok/min"] {
        let line = row(&screen, &format!("{rate} "));
        for field in ["[", "]", "/", "rem ", "next ", "den "] {
            assert!(line.contains(field), "{rate} lacks {field:?}:\n{text}");
        }
    }
    // Smaller ones: no row wider than the screen, no panic.
    for (width, height) in [(60, 12), (40, 10), (20, 3), (10, 2), (1, 1), (200, 5)] {
        let screen = render(&model, &ui(), width, height);
        assert_eq!(screen.len(), usize::from(height));
        let prefix = usize::from(width).saturating_sub(1).min(13);
        assert!(
            screen[0].starts_with(&"hostlimit top"[..prefix]),
            "{screen:?}"
        );
        for line in &screen {
            assert_eq!(line.chars().count(), usize::from(width));
        }
    }
    let narrow = render(&model, &ui(), 40, 10);
    assert!(row(&narrow, "50/s").contains("[█"), "{}", narrow.join("\n"));
    let _ = render(&model, &ui(), 0, 0);
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_quit_pause_sort_and_filter() {
    let mut model = Model::new(Duration::from_secs(1));
    let mut ui = ui();
    assert_eq!(
        handle_key(key(KeyCode::Char('p')), &mut model, &mut ui),
        Action::Continue
    );
    assert!(ui.paused);
    let screen = render(&model, &ui, 80, 24);
    assert!(screen[0].contains("PAUSED"), "{}", screen.join("\n"));
    handle_key(key(KeyCode::Char(' ')), &mut model, &mut ui);
    assert!(!ui.paused);
    for expected in [Sort::Denials, Sort::Name, Sort::Closeness] {
        handle_key(key(KeyCode::Char('s')), &mut model, &mut ui);
        assert_eq!(model.sort, expected);
    }
    handle_key(key(KeyCode::Char('/')), &mut model, &mut ui);
    // While typing a filter, q is a letter, not quit.
    assert_eq!(
        handle_key(key(KeyCode::Char('q')), &mut model, &mut ui),
        Action::Continue
    );
    assert_eq!(model.filter, "q");
    handle_key(key(KeyCode::Esc), &mut model, &mut ui);
    assert!(model.filter.is_empty() && !ui.editing_filter);
    assert_eq!(
        handle_key(key(KeyCode::Char('q')), &mut model, &mut ui),
        Action::Quit
    );
    assert_eq!(
        handle_key(key(KeyCode::Esc), &mut model, &mut ui),
        Action::Quit
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(handle_key(ctrl_c, &mut model, &mut ui), Action::Quit);
}

#[test]
fn bars_and_sparklines_scale() {
    assert_eq!(bar(0.0, 6), "[    ]");
    assert_eq!(bar(1.0, 6), "[████]");
    assert_eq!(bar(0.5, 6), "[██  ]");
    assert_eq!(bar(0.125, 4), "[▎ ]");
    assert_eq!(bar(7.0, 4), "[██]", "more than the limit is a full bar");
    assert_eq!(bar(0.5, 2), "");
    assert_eq!(sparkline(&[0, 1, 7, 14], 6), "   ▁▄█");
    assert_eq!(sparkline(&[5, 5, 5], 2), "██");
    assert_eq!(sparkline(&[], 3), "   ");
}

#[test]
fn history_holds_a_minute_at_the_interval() {
    assert_eq!(Model::new(Duration::from_secs(1)).history_points(), 60);
    assert_eq!(Model::new(Duration::from_millis(100)).history_points(), 600);
    assert_eq!(Model::new(Duration::from_secs(120)).history_points(), 1);
}

#[test]
fn rates_per_second_come_from_the_counters_between_readings() {
    let dir = tempfile::tempdir().unwrap();
    let busy = limiter(dir.path(), "busy", &["4/min"], 0, 0);
    // Four readings 250 ms apart (as the model is told): 1 admission before the second,
    // 3 more and 2 denials before the third, 4 denials before the fourth.
    let mut model = Model::new(Duration::from_millis(250));
    let start = Instant::now();
    let quarter = Duration::from_millis(250);
    let mut read = |n: u32| model.sample(read_all(dir.path(), &[]).unwrap(), start + quarter * n);
    read(0);
    busy.try_acquire(1).unwrap();
    read(1);
    for _ in 0..3 {
        busy.try_acquire(1).unwrap();
    }
    // The denials come from handles let go before the reading, as from processes that
    // exit: a live process's repeated denials reach the file within `Repeats::LAG` while it
    // keeps being refused, which this test does not wait for.
    let refuse = |n: usize| {
        let other = Limiter::open(dir.path().join("busy"), &rates(&["4/min"])).unwrap();
        for _ in 0..n {
            assert!(other.try_acquire(1).is_err());
        }
    };
    refuse(2);
    read(2);
    refuse(4);
    read(3);
    let entry = &model.shown()[0];
    assert_eq!(entry.admitted_per_s, [4, 12, 0]);
    assert_eq!(entry.denied_total_per_s, [0, 8, 16]);
    assert_eq!(entry.denied_per_s[0], [0, 8, 16]);
    // The figures shown are the mean of the last second (4 readings at 250 ms).
    assert_eq!(entry.admissions_now(), 16 / 3);
    assert_eq!(entry.denials_now(), 24 / 3);
    assert_eq!(entry.rate_denials_now(0), 8);
}
