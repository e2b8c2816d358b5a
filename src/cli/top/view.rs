//! Drawing `top`: one header row, then per limiter a title row (name, state, admissions and
//! denials per second with their sparklines) and one row per rate (a bar of used against the
//! limit, remaining, when the next unit frees, a sparkline of that rate's denials), then a
//! row of keys. Every width is derived from the frame's, so the view fits whatever the
//! terminal's size (at 80x24 and up nothing is left out but limiters beyond the last row).

use std::time::{Duration, SystemTime};

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::cli::time::{format_duration, format_utc};
use crate::cli::top::model::{Entry, Model, fullness};

/// What the keyboard changed that the model does not hold.
#[derive(Debug, Default)]
pub struct Ui {
    /// Sampling stopped (the view keeps the last readings).
    pub paused: bool,
    /// The filter is being typed (`/` ... Enter).
    pub editing_filter: bool,
    /// Limiters scrolled past at the top.
    pub offset: usize,
    /// What the header says about the directory (or the names watched).
    pub source: String,
    /// Why the last reading failed (the directory is gone or unreadable), if it did.
    pub problem: Option<String>,
}

/// A fullness from which a rate is shown as near its limit.
const NEAR: f64 = 0.8;

/// How long a replaced file says so.
const REPLACED_NOTE: Duration = Duration::from_secs(30);

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &Model, ui: &Ui) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let lines = screen(model, ui, area);
    frame.render_widget(Paragraph::new(lines), area);
}

/// The lines of the screen, `area.height` of them at most, each at most `area.width` wide.
fn screen(model: &Model, ui: &Ui, area: Rect) -> Vec<Line<'static>> {
    let width = usize::from(area.width);
    let height = usize::from(area.height);
    let shown = model.shown();
    let mut lines = vec![header(model, ui, shown.len(), width)];
    if let Some(problem) = &ui.problem {
        lines.push(Line::styled(fit(problem, width), red()));
    }
    let keys_row = height >= 3;
    let body = height.saturating_sub(lines.len() + usize::from(keys_row));
    let offset = ui.offset.min(shown.len().saturating_sub(1));
    if shown.is_empty() {
        let text = if model.total() == 0 {
            "no limiters (create one: hostlimit create NAME --rate 10/s)".to_string()
        } else {
            format!("no limiter's name contains {:?}", model.filter)
        };
        lines.push(Line::from(fit(&text, width)));
    }
    // One width for every rate's label, so that the bars line up from limiter to limiter.
    let label_width = shown
        .iter()
        .filter_map(|e| e.snapshot.state.as_ref().ok())
        .flat_map(|state| &state.usage)
        .map(|u| u.rate.to_string().chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut used = 0;
    let mut drawn = 0;
    for entry in &shown[offset.min(shown.len())..] {
        let block = limiter(entry, model, width, label_width);
        let left = shown.len() - offset - drawn;
        // Keep a row to say how many did not fit, unless this is the last one.
        let room = body - used;
        let fits = block.len() <= room && (left == 1 || block.len() < room);
        if !fits {
            break;
        }
        used += block.len();
        drawn += 1;
        lines.extend(block);
    }
    let not_shown = shown.len().saturating_sub(offset + drawn);
    if (not_shown > 0 || offset > 0) && used < body {
        let text = format!(
            "… {not_shown} more below, {offset} above: ↑↓ to scroll, / to filter, or a taller terminal"
        );
        lines.push(Line::styled(fit(&text, width), dim()));
    }
    if keys_row {
        while lines.len() < height - 1 {
            lines.push(Line::from(""));
        }
        lines.push(keys(ui, width));
    }
    lines.truncate(height);
    lines
}

fn header(model: &Model, ui: &Ui, shown: usize, width: usize) -> Line<'static> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut row = Row::new(width);
    row.push(
        &format!("hostlimit top {} UTC", clock(SystemTime::now())),
        bold,
    );
    if ui.paused {
        row.push(
            "  PAUSED",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        );
    }
    if !model.filter.is_empty() || ui.editing_filter {
        let cursor = if ui.editing_filter { "_" } else { "" };
        row.push(&format!("  filter: {}{cursor}", model.filter), bold);
    }
    row.push(
        &format!(
            "  {shown}/{} limiters  every {}  sort {}  {}",
            model.total(),
            format_duration(model.interval),
            model.sort.label(),
            ui.source,
        ),
        bold,
    );
    row.line()
}

fn keys(ui: &Ui, width: usize) -> Line<'static> {
    let text = if ui.editing_filter {
        "type a name  Enter apply  Esc clear"
    } else {
        "q quit  p pause  s sort  / filter  ↑↓ scroll"
    };
    Line::styled(fit(text, width), dim())
}

/// The rows of one limiter.
fn limiter(entry: &Entry, model: &Model, width: usize, label_width: usize) -> Vec<Line<'static>> {
    let name = entry.snapshot.target.name.clone();
    let state = match &entry.snapshot.state {
        Ok(state) => state,
        Err(failure) => {
            let title = Line::from(vec![
                Span::styled(fit(&name, width), Style::new().add_modifier(Modifier::BOLD)),
                Span::styled(
                    fit("  UNREADABLE", width.saturating_sub(name.chars().count())),
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
            ]);
            let why = Line::styled(fit(&format!("  {}", failure.message), width), red());
            return vec![title, why];
        }
    };
    let points = model.history_points();
    let full = entry.closeness >= 1.0;
    let (tag, tag_style) = if full {
        (
            "FULL",
            red().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    } else if entry.closeness >= NEAR {
        (
            "NEAR",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    } else {
        ("ok", Style::new().fg(Color::Green))
    };
    let mut title = Row::new(width);
    let name_style = if full {
        red().add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    title.push(&name, name_style);
    title.push(&format!("  {tag}"), tag_style);
    if let Some(at) = entry.replaced_at
        && SystemTime::now()
            .duration_since(at)
            .is_ok_and(|ago| ago < REPLACED_NOTE)
    {
        title.push(
            &format!("  replaced at {}, history restarted", clock(at)),
            Style::new().fg(Color::Magenta),
        );
    }
    let admitted = format!("  admitted {}/s ", entry.admissions_now());
    let denied = format!("  denied {}/s ", entry.denials_now());
    // The two sparklines share what is left of the row.
    let room = title
        .room()
        .saturating_sub(admitted.chars().count() + denied.chars().count());
    let spark = (room / 2).min(points);
    title.push(&admitted, Style::new());
    title.push(&sparkline(&entry.admitted_per_s, spark), green());
    title.push(&denied, Style::new());
    title.push(&sparkline(&entry.denied_total_per_s, spark), red());
    let mut lines = vec![title.line()];

    let binding = entry.binding_rate();
    for (index, usage) in state.usage.iter().enumerate() {
        let mut row = Row::new(width);
        let fullness = fullness(state, index);
        let style = if fullness >= 1.0 {
            red()
        } else if fullness >= NEAR {
            Style::new().fg(Color::Yellow)
        } else {
            green()
        };
        let binds = binding == Some(index) && fullness > 0.0;
        row.push(if binds { "▶ " } else { "  " }, style);
        let label = format!("{:<label_width$} ", usage.rate.to_string());
        row.push(
            &label,
            if binds {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            },
        );
        let numbers = format!(
            " {:>11}  rem {:<6} next {:<6}",
            format!("{}/{}", usage.used, usage.rate.limit()),
            usage.remaining,
            usage.next_free.map_or_else(|| "-".into(), format_duration),
        );
        // A narrow screen keeps the bar and used/limit, and drops the rest.
        let numbers = if row.room() >= numbers.chars().count() + 10 {
            numbers
        } else {
            format!(" {}/{}", usage.used, usage.rate.limit())
        };
        let room = row.room().saturating_sub(numbers.chars().count());
        // The bar takes most of what is left; the denial sparkline, with its label, the rest
        // once the bar has 10 cells.
        let (bar_cells, spark_cells) = if room >= 24 {
            // Half each, but a sparkline of a dozen points (and its label) before the bar
            // grows past 10 cells.
            let bar_cells = (room / 2).min(room.saturating_sub(21)).max(10);
            (bar_cells, room - bar_cells)
        } else {
            (room, 0)
        };
        row.push(&bar(fullness, bar_cells), style);
        row.push(&numbers, Style::new());
        if spark_cells > 6 {
            let series = entry.denied_per_s.get(index);
            let text = format!(" den {}/s ", entry.rate_denials_now(index));
            let cells = spark_cells.saturating_sub(text.chars().count()).min(points);
            row.push(&text, dim());
            if let Some(series) = series {
                row.push(&sparkline(series, cells), red());
            }
        }
        lines.push(row.line());
    }
    lines
}

/// A row being filled left to right, never wider than its width.
struct Row {
    width: usize,
    spans: Vec<Span<'static>>,
    used: usize,
}

impl Row {
    fn new(width: usize) -> Row {
        Row {
            width,
            spans: Vec::new(),
            used: 0,
        }
    }

    fn room(&self) -> usize {
        self.width - self.used
    }

    fn push(&mut self, text: &str, style: Style) {
        let text = fit(text, self.room());
        self.used += text.chars().count();
        if !text.is_empty() {
            self.spans.push(Span::styled(text, style));
        }
    }

    fn line(self) -> Line<'static> {
        Line::from(self.spans)
    }
}

/// `[████▌     ]`: used against the limit in `cells` cells (brackets included), eighths of a
/// cell resolved; more than the limit (a file holding garbage) shows as a full bar.
pub fn bar(fullness: f64, cells: usize) -> String {
    if cells < 3 {
        return String::new();
    }
    let inner = cells - 2;
    let eighths = (fullness.clamp(0.0, 1.0) * (inner * 8) as f64).round() as usize;
    let mut text = String::from("[");
    for cell in 0..inner {
        let filled = eighths.saturating_sub(cell * 8).min(8);
        text.push(match filled {
            0 => ' ',
            8 => '█',
            n => ['▏', '▎', '▍', '▌', '▋', '▊', '▉'][n - 1],
        });
    }
    text.push(']');
    text
}

/// The last `cells` points of `series` as block heights, scaled to their largest; a series
/// shorter than `cells` is padded on the left with blanks, so that time runs to the right edge.
pub fn sparkline<'a>(series: impl IntoIterator<Item = &'a u64>, cells: usize) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let points: Vec<u64> = series.into_iter().copied().collect();
    let tail = &points[points.len().saturating_sub(cells)..];
    let top = tail.iter().copied().max().unwrap_or(0);
    let mut text = " ".repeat(cells - tail.len());
    for &value in tail {
        text.push(if value == 0 {
            ' '
        } else {
            let level = (value as f64 / top as f64 * 8.0).ceil() as usize;
            LEVELS[level.clamp(1, 8) - 1]
        });
    }
    text
}

/// `text` cut to `width` characters, with `…` where it was cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut kept: String = text.chars().take(width - 1).collect();
        kept.push('…');
        kept
    }
}

/// `HH:MM:SS` of a wall-clock time, UTC.
fn clock(at: SystemTime) -> String {
    let text = format_utc(at);
    text.split('T')
        .nth(1)
        .map_or(text.clone(), |t| t.chars().take(8).collect())
}

fn red() -> Style {
    Style::new().fg(Color::Red)
}

fn green() -> Style {
    Style::new().fg(Color::Green)
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}
