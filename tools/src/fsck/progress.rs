//! The progress bar of `finkfs fsck` (stderr, only on a terminal): bytes
//! verified of the total, and the rate, to compare with the disk's
//! sequential read speed.

use std::path::Path;
use std::time::Duration;

use finkfs_node::fsck::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Redraws per second.
const BAR_REFRESH_HZ: u8 = 8;

/// A bar created when the total is known.
#[derive(Default)]
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn total(&mut self, bytes: u64) {
        let bar = ProgressBar::with_draw_target(
            Some(bytes),
            ProgressDrawTarget::stderr_with_hz(BAR_REFRESH_HZ),
        );
        let template = "fsck [{bar:32}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {wide_msg}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
    }

    fn checked(&mut self, bytes: u64, file: &Path) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            bar.set_message(file.display().to_string());
        }
    }
}
