//! Progress of a long transfer on stderr: a bar on a terminal, a plain
//! line every few seconds otherwise (logs and CI keep a readable record),
//! and the totals at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::format;

/// Interval of the plain progress lines when stderr is not a terminal.
pub const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(2);
/// Redraws of the bar per second.
const BAR_REFRESH_HZ: u8 = 8;

/// What a finished transfer did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Objects that succeeded.
    pub files_ok: u64,
    /// Objects that failed.
    pub files_failed: u64,
    /// Bytes of the objects that succeeded.
    pub bytes_ok: u64,
    /// Wall time of the transfer.
    pub elapsed: Duration,
}

impl Totals {
    /// Throughput of what succeeded, MB/s.
    pub fn mb_per_s(&self) -> f64 {
        format::mb_per_s(self.bytes_ok, self.elapsed)
    }

    /// Objects per second that succeeded.
    pub fn files_per_s(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds <= 0.0 {
            0.0
        } else {
            self.files_ok as f64 / seconds
        }
    }
}

enum Display {
    Bar(ProgressBar),
    Lines { last: Instant },
}

/// The progress of one transfer of a known number of objects and bytes.
pub struct Progress {
    verb: &'static str,
    files_total: u64,
    bytes_total: u64,
    totals: Totals,
    started: Instant,
    display: Display,
}

impl Progress {
    /// Starts showing progress of `verb` ("put", "read") over
    /// `files_total` objects of `bytes_total` bytes.
    pub fn start(verb: &'static str, files_total: u64, bytes_total: u64) -> Progress {
        let display = if std::io::stderr().is_terminal() {
            Display::Bar(bar(verb, bytes_total))
        } else {
            Display::Lines {
                last: Instant::now(),
            }
        };
        Progress {
            verb,
            files_total,
            bytes_total,
            totals: Totals {
                files_ok: 0,
                files_failed: 0,
                bytes_ok: 0,
                elapsed: Duration::ZERO,
            },
            started: Instant::now(),
            display,
        }
    }

    /// Records one object done.
    pub fn record(&mut self, bytes: u64, ok: bool) {
        if ok {
            self.totals.files_ok += 1;
            self.totals.bytes_ok += bytes;
        } else {
            self.totals.files_failed += 1;
        }
        let message = self.counts();
        match &mut self.display {
            Display::Bar(bar) => {
                bar.inc(bytes);
                bar.set_message(message);
            }
            Display::Lines { last } => {
                if last.elapsed() >= PLAIN_LINE_INTERVAL {
                    *last = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// Prints `text` on stderr without breaking the bar.
    pub fn note(&self, text: &str) {
        match &self.display {
            Display::Bar(bar) => bar.suspend(|| eprintln!("{text}")),
            Display::Lines { .. } => eprintln!("{text}"),
        }
    }

    /// Stops showing progress; the totals.
    pub fn finish(mut self) -> Totals {
        self.totals.elapsed = self.started.elapsed();
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
        self.totals
    }

    fn counts(&self) -> String {
        let failed = match self.totals.files_failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        format!(
            "{}/{} files{failed}",
            self.totals.files_ok + self.totals.files_failed,
            self.files_total
        )
    }

    fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        format!(
            "{}: {}, {} of {}, {:.1} MB/s",
            self.verb,
            self.counts(),
            format::bytes(self.totals.bytes_ok),
            format::bytes(self.bytes_total),
            format::mb_per_s(self.totals.bytes_ok, elapsed)
        )
    }
}

fn bar(verb: &'static str, bytes_total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(bytes_total),
        ProgressDrawTarget::stderr_with_hz(BAR_REFRESH_HZ),
    );
    let template = format!(
        "{verb} [{{bar:32}}] {{decimal_bytes}}/{{decimal_total_bytes}} {{decimal_bytes_per_sec}} {{msg}} eta {{eta}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_failures_apart_from_bytes() {
        let mut progress = Progress::start("put", 3, 30);
        progress.record(10, true);
        progress.record(10, false);
        progress.record(10, true);
        let totals = progress.finish();
        assert_eq!(totals.files_ok, 2);
        assert_eq!(totals.files_failed, 1);
        assert_eq!(totals.bytes_ok, 20);
    }
}
