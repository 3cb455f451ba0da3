//! The demo's output: step headers, plain lines, and a live line of frontiers and lag
//! while the demo waits. On a terminal the live line is an indicatif progress bar; when
//! stdout is not a terminal (a pipe, a file, a test) it becomes a plain line at most
//! once a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain live line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// The number of steps.
pub(crate) const STEPS: usize = 7;

/// Where the demo's output goes.
pub(crate) struct Display {
    terminal: bool,
    bar: Option<ProgressBar>,
    last_plain: Option<Instant>,
    started: Instant,
}

impl Display {
    /// A display for stdout: a progress bar on a terminal, plain lines otherwise.
    pub(crate) fn new() -> Display {
        Display {
            terminal: std::io::stdout().is_terminal(),
            bar: None,
            last_plain: None,
            started: Instant::now(),
        }
    }

    /// Seconds since the demo started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints `text` (one or more lines) above the live line.
    pub(crate) fn line(&self, text: &str) {
        let write = || {
            let mut out = std::io::stdout().lock();
            // A closed stdout (say, piped into `head`) must not stop the demo.
            let _ = writeln!(out, "{text}").and_then(|()| out.flush());
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Starts step `n` of [`STEPS`].
    pub(crate) fn step(&mut self, n: usize, title: &str) {
        self.done();
        self.line(&format!("\n[{n}/{STEPS}] {title}"));
    }

    /// Shows the live line: `label`, optional progress as `(done, total)`, and
    /// `message` (frontiers and lag).
    pub(crate) fn live(&mut self, label: &str, progress: Option<(u64, u64)>, message: &str) {
        if !self.terminal {
            let due = self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
            if due {
                self.last_plain = Some(Instant::now());
                let at = self.started.elapsed().as_secs_f64();
                self.line(&format!("  · {at:>5.1}s {label}: {message}"));
            }
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        match progress {
            Some((done, total)) => {
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} [{bar:24}] {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_length(total.max(1));
                bar.set_position(done.min(total));
            }
            None => bar.set_style(
                ProgressStyle::with_template("  {spinner} {prefix} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        }
        bar.set_prefix(label.to_owned());
        bar.set_message(message.to_owned());
    }

    /// Removes the live line.
    pub(crate) fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.last_plain = None;
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.done();
    }
}

/// Renders rows as an aligned text table with a header, indented by two spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        let mut line = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            line.push_str(cell);
            if i + 1 < cells.len() {
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        line.trim_end().to_owned()
    };
    let mut out = vec![render(header.to_vec())];
    for row in rows {
        out.push(render(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["a", "bee"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        assert_eq!(text, "  a          bee\n  long cell  x\n  y          z");
    }
}
