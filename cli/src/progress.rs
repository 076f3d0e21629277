//! Progress bars on stderr (hidden automatically when stderr is not a terminal).

use hearth_runtime::progress::{Progress, Unit};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws each stage of long work as an indicatif bar.
#[derive(Debug, Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn stage(&mut self, message: &str, total: Option<u64>, unit: Unit) {
        self.finish_stage();
        let counts = match unit {
            Unit::Bytes => "{bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            Unit::Items => "{pos}/{len} eta {eta}",
        };
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(&format!("{{msg}} [{{bar:30}}] {counts}")).expect("valid template"),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(message.to_owned());
        self.bar = Some(bar);
    }

    fn advance(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn finish_stage(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn note(&mut self, message: &str) {
        // A hidden bar (stderr is not a terminal) would swallow the line.
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(message),
            _ => eprintln!("{message}"),
        }
    }
}
