//! Progress bars on stderr, drawn only when it is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sheaf::progress::Progress;
use std::io::IsTerminal;
use std::sync::Mutex;

/// An indicatif bar per phase; hidden when stderr is not a terminal or
/// output is JSON.
pub struct Bar {
    visible: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    /// A bar for a person watching: none with `--json` or when stderr is
    /// redirected, where redraws would only be noise.
    pub fn new(json: bool) -> Self {
        Bar { visible: !json && std::io::stderr().is_terminal(), bar: Mutex::new(None) }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        let target = if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(phase.to_owned());
        *self.bar.lock().unwrap() = Some(bar);
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().unwrap().as_ref() {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }
}
