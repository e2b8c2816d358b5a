//! The picture `hostlimit demo` ends with: per rate, the admissions in its sliding window
//! over the run, against its limit; as a small terminal chart, and as an SVG (`--plot`).
//!
//! Each column shows the most admissions that any window ending inside the column's stretch
//! of time held (exactly, from the recorded timestamps: a window's count only rises at an
//! admission), so a window over the limit cannot hide between two columns.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hostlimit::{Nanos, Rate};

use crate::cli::exit::{Failure, io_exit};
use crate::cli::terminal;
use crate::cli::time::format_duration;

/// One rate's curve.
#[derive(Debug)]
pub struct Series {
    /// The rate, as written (`50/s`).
    pub rate: String,
    /// Its limit.
    pub limit: u64,
    /// Its window.
    pub window: Duration,
    /// Per column, the most admissions in one window ending in that column.
    pub peaks: Vec<u64>,
}

/// Every rate's curve over one run.
#[derive(Debug)]
pub struct Chart {
    /// The curves, in the limiter's order.
    pub series: Vec<Series>,
    /// How long the run lasted (the x axis).
    pub duration: Duration,
}

impl Chart {
    /// The curves of `rates` from admissions (weight 1 each) recorded at `timestamps`
    /// between `start` and `end`, in `columns` columns.
    pub fn new(
        rates: &[Rate],
        timestamps: &[Nanos],
        start: Nanos,
        end: Nanos,
        columns: usize,
    ) -> Chart {
        let mut sorted = timestamps.to_vec();
        sorted.sort_unstable();
        let columns = columns.max(1);
        let span = end.saturating_sub(start).max(1);
        let series = rates
            .iter()
            .map(|rate| {
                let window = u64::try_from(rate.window().as_nanos()).unwrap_or(u64::MAX);
                // Admissions in the window (t - window, t].
                let count = |t: Nanos| {
                    let upto = sorted.partition_point(|&x| x <= t);
                    let before = sorted.partition_point(|&x| x <= t.saturating_sub(window));
                    if t < window {
                        upto as u64
                    } else {
                        (upto - before) as u64
                    }
                };
                let peaks = (0..columns)
                    .map(|column| {
                        let from = start + span * column as u64 / columns as u64;
                        let to = start + span * (column as u64 + 1) / columns as u64;
                        let first = sorted.partition_point(|&x| x <= from);
                        let last = sorted.partition_point(|&x| x <= to);
                        sorted[first..last]
                            .iter()
                            .map(|&t| count(t))
                            .fold(count(from), u64::max)
                    })
                    .collect();
                Series {
                    rate: rate.to_string(),
                    limit: rate.limit(),
                    window: rate.window(),
                    peaks,
                }
            })
            .collect();
        Chart {
            series,
            duration: Duration::from_nanos(span),
        }
    }

    /// The terminal chart: per rate a few rows of bars, the limit's row dashed where the
    /// bars stay below it.
    pub fn text(&self) -> String {
        const ROWS: u64 = 6;
        const EIGHTHS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let mut out = String::new();
        for series in &self.series {
            let peak = series.peaks.iter().copied().max().unwrap_or(0);
            let top = peak.max(series.limit).max(1);
            let _ = writeln!(
                out,
                "\n{}: the most admitted in one {} window, over the run (limit {} is ┄)",
                series.rate,
                format_duration(series.window),
                series.limit
            );
            // The row whose span holds the limit.
            let limit_row = (series.limit * ROWS).div_ceil(top).clamp(1, ROWS) - 1;
            for row in (0..ROWS).rev() {
                let label = if row == limit_row {
                    series.limit.to_string()
                } else if row == ROWS - 1 {
                    top.to_string()
                } else {
                    String::new()
                };
                let _ = write!(out, "{label:>7} ┤");
                for &value in &series.peaks {
                    // The part of this row's span [row, row + 1) * top / ROWS the value fills.
                    let filled = (value * ROWS * 8).div_ceil(top).saturating_sub(row * 8);
                    out.push(match filled.min(8) {
                        0 if row == limit_row => '┄',
                        0 => ' ',
                        n => EIGHTHS[n as usize - 1],
                    });
                }
                let kept = out.trim_end_matches(' ').len();
                out.truncate(kept);
                out.push('\n');
            }
            let width = series.peaks.len();
            let end = format_duration(self.duration);
            let _ = writeln!(out, "{:>7} └{}", 0, "─".repeat(width));
            let _ = writeln!(
                out,
                "{:>9}{end:>width$}",
                "0s",
                width = width.saturating_sub(1)
            );
        }
        out
    }

    /// An SVG a browser opens: per rate a panel with the curve (`polyline.admitted`) and the
    /// limit (`line.limit`, dashed), in a `g.rate` whose `data-rate` names the rate.
    pub fn svg(&self) -> String {
        const WIDTH: f64 = 720.0;
        const PANEL: f64 = 180.0;
        const LEFT: f64 = 60.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 30.0;
        const BOTTOM: f64 = 30.0;
        let height = PANEL * self.series.len() as f64 + 20.0;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        for (index, series) in self.series.iter().enumerate() {
            let y0 = PANEL * index as f64;
            let peak = series.peaks.iter().copied().max().unwrap_or(0);
            let top = (peak.max(series.limit) as f64 * 1.1).max(1.0);
            let plot_w = WIDTH - LEFT - RIGHT;
            let plot_h = PANEL - TOP - BOTTOM;
            let x = |column: f64| LEFT + plot_w * column / series.peaks.len().max(1) as f64;
            let y = |value: f64| y0 + TOP + plot_h * (1.0 - value / top);
            let _ = writeln!(
                out,
                "<g class=\"rate\" data-rate=\"{rate}\" data-limit=\"{limit}\">\n\
                 <text x=\"{LEFT}\" y=\"{title_y}\" font-weight=\"bold\">{rate}: the most \
                 admitted in one {window} window, over {duration}</text>",
                rate = escape(&series.rate),
                limit = series.limit,
                title_y = y0 + 18.0,
                window = format_duration(series.window),
                duration = format_duration(self.duration),
            );
            // Axes.
            let _ = writeln!(
                out,
                "<polyline class=\"axes\" fill=\"none\" stroke=\"black\" points=\"{LEFT},{} {LEFT},{} {},{}\"/>",
                y0 + TOP,
                y(0.0),
                LEFT + plot_w,
                y(0.0)
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n\
                 <text x=\"{LEFT}\" y=\"{}\">0s</text>\n\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                y(0.0) + 4.0,
                y(0.0) + 16.0,
                LEFT + plot_w,
                y(0.0) + 16.0,
                format_duration(self.duration),
            );
            // The limit.
            let limit_y = y(series.limit as f64);
            let _ = writeln!(
                out,
                "<line class=\"limit\" x1=\"{LEFT}\" y1=\"{limit_y:.2}\" x2=\"{}\" y2=\"{limit_y:.2}\" \
                 stroke=\"#c00\" stroke-dasharray=\"6 4\"/>\n\
                 <text x=\"{}\" y=\"{:.2}\" text-anchor=\"end\" fill=\"#c00\">limit {}</text>",
                LEFT + plot_w,
                LEFT - 6.0,
                limit_y + 4.0,
                series.limit,
            );
            // The curve: a step per column.
            let mut points = String::new();
            for (column, &value) in series.peaks.iter().enumerate() {
                let vy = y(value as f64);
                let _ = write!(
                    points,
                    "{:.2},{vy:.2} {:.2},{vy:.2} ",
                    x(column as f64),
                    x(column as f64 + 1.0)
                );
            }
            let _ = writeln!(
                out,
                "<polyline class=\"admitted\" fill=\"none\" stroke=\"#06c\" stroke-width=\"1.5\" \
                 points=\"{}\"/>\n</g>",
                points.trim_end()
            );
        }
        out.push_str("</svg>\n");
        out
    }

    /// Writes [`Chart::svg`] to `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write_svg(&self, path: &Path) -> Result<(), Failure> {
        std::fs::write(path, self.svg()).map_err(|e| {
            Failure::new(io_exit(&e), format!("--plot {}: {e}", path.display()))
                .with("path", path.display().to_string())
        })
    }
}

/// The end of `hostlimit demo`: the chart on stdout (through `out`), and as an SVG at `plot`.
///
/// # Errors
///
/// Writing to stdout or to `plot` failed.
pub fn show(
    rates: &[Rate],
    timestamps: &[Nanos],
    start: Nanos,
    end: Nanos,
    plot: Option<&Path>,
    out: &dyn Fn(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let columns =
        terminal::size().map_or(60, |(columns, _)| columns.saturating_sub(12).clamp(20, 100));
    out(&Chart::new(rates, timestamps, start, end, columns).text())?;
    if let Some(path) = plot {
        Chart::new(rates, timestamps, start, end, SVG_COLUMNS).write_svg(path)?;
        out(&format!(
            "\nthe chart is in {} (open it in a browser)\n",
            path.display()
        ))?;
    }
    Ok(())
}

/// Columns of the SVG's curves.
const SVG_COLUMNS: usize = 600;

/// `text` safe inside an XML attribute or element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Nanos = 1_000_000_000;

    fn rates(texts: &[&str]) -> Vec<Rate> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn peaks_are_exact_per_column() {
        // Three admissions within one second at 0.1s..0.3s, one more at 2.5s.
        let stamps = [SECOND / 10, SECOND / 5, 3 * SECOND / 10, 5 * SECOND / 2];
        let chart = Chart::new(&rates(&["3/s", "10/10s"]), &stamps, 0, 4 * SECOND, 4);
        // The window ending at 3.0s still holds the admission at 2.5s.
        assert_eq!(chart.series[0].peaks, vec![3, 3, 1, 1]);
        assert_eq!(chart.series[1].peaks, vec![3, 3, 4, 4]);
        assert_eq!(chart.duration, Duration::from_secs(4));
    }

    #[test]
    fn text_shows_the_limit_and_bars_above_it_when_exceeded() {
        let stamps: Vec<Nanos> = (0..20).map(|i| i * SECOND / 20).collect();
        let chart = Chart::new(&rates(&["10/s"]), &stamps, 0, 2 * SECOND, 10);
        let text = chart.text();
        assert!(text.contains("10/s: the most admitted"), "{text}");
        let rows: Vec<&str> = text.lines().filter(|l| l.contains('┤')).collect();
        assert_eq!(rows.len(), 6);
        // The peak (20) is the top; the limit (10) is labelled lower down.
        assert!(rows[0].trim_start().starts_with("20 ┤"), "{text}");
        let limit_row = rows
            .iter()
            .find(|r| r.trim_start().starts_with("10 ┤"))
            .unwrap();
        assert!(
            limit_row.contains('┄'),
            "dashed where the bars stay below: {text}"
        );
        assert!(
            rows[0].contains('█'),
            "the exceeding columns reach the top: {text}"
        );
    }

    #[test]
    fn svg_names_each_rate_and_escapes() {
        let chart = Chart::new(&rates(&["5/s"]), &[1, 2, 3], 0, SECOND, 5);
        let svg = chart.svg();
        let document = roxmltree::Document::parse(&svg).unwrap();
        let group = document
            .descendants()
            .find(|n| n.attribute("class") == Some("rate"))
            .unwrap();
        assert_eq!(group.attribute("data-rate"), Some("5/s"));
        assert_eq!(escape("a<b&\"c\">"), "a&lt;b&amp;&quot;c&quot;&gt;");
    }
}
