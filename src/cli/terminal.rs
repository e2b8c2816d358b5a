//! The terminal `watch` draws on: whether stdout is one, and its size.

use std::io::IsTerminal;

/// The size of the terminal on stdout, in columns and rows; `None` when stdout is not a
/// terminal (a pipe, a file) or its size is unknown.
pub fn size() -> Option<(usize, usize)> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    let (terminal_size::Width(columns), terminal_size::Height(rows)) =
        terminal_size::terminal_size_of(&stdout)?;
    (columns > 0 && rows > 0).then_some((usize::from(columns), usize::from(rows)))
}

/// `text` cut to fit `columns` × `rows`: long lines end in `…`, and lines past the last
/// row are replaced by one that says how many were left out.
pub fn fit(text: &str, columns: usize, rows: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let room = rows.max(1);
    let (shown, left_out) = if lines.len() > room {
        (&lines[..room - 1], lines.len() - (room - 1))
    } else {
        (&lines[..], 0)
    };
    let mut out = String::new();
    for line in shown {
        out.push_str(&cut(line, columns));
        out.push('\n');
    }
    if left_out > 0 {
        let note = format!(
            "... {left_out} more lines: make the terminal taller, or name the limiters to watch"
        );
        out.push_str(&cut(&note, columns));
        out.push('\n');
    }
    out
}

fn cut(line: &str, columns: usize) -> String {
    if line.chars().count() <= columns {
        line.to_string()
    } else {
        let mut kept: String = line.chars().take(columns.saturating_sub(1)).collect();
        kept.push('…');
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_text_into_a_screen() {
        let text = "0123456789\nab\ncd\nef\n";
        assert_eq!(fit(text, 80, 24), text);
        assert_eq!(fit(text, 5, 24), "0123…\nab\ncd\nef\n");
        let short = fit(text, 80, 3);
        assert_eq!(short.lines().count(), 3);
        assert!(
            short.starts_with("0123456789\nab\n... 2 more lines"),
            "{short}"
        );
        for line in fit(text, 6, 2).lines() {
            assert!(line.chars().count() <= 6, "{line}");
        }
    }
}
