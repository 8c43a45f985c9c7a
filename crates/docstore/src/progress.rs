//! Build progress: an indicatif bar on a terminal, plain lines otherwise, or nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

/// How a build reports progress on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Always a bar (indicatif hides it if stderr is not a terminal).
    Bar,
    /// A plain line every few seconds (log-friendly).
    Lines,
    /// Nothing at all.
    Silent,
}

impl ProgressMode {
    fn resolved(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        }
    }
}

/// Prints a one-off note unless silent.
pub(crate) fn note(mode: ProgressMode, msg: &str) {
    if mode != ProgressMode::Silent {
        eprintln!("{msg}");
    }
}

/// `1h02m03s` / `2m03s` / `3s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A progress counter for one phase.
pub(crate) struct Progress {
    mode: ProgressMode,
    label: String,
    unit: &'static str,
    total: u64,
    pos: u64,
    start_pos: u64,
    start: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn new(
        mode: ProgressMode,
        label: &str,
        unit: &'static str,
        total: u64,
        start_pos: u64,
    ) -> Self {
        let mode = mode.resolved();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!(
                "{{msg}} [{{elapsed_precise}}] [{{wide_bar}}] {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}})"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.set_message(label.to_string());
            pb.set_position(start_pos);
            pb.reset_eta();
            pb
        });
        let now = Instant::now();
        Progress {
            mode,
            label: label.to_string(),
            unit,
            total,
            pos: start_pos,
            start_pos,
            start: now,
            last_line: now,
            bar,
        }
    }

    /// Units done per second since this run started.
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.pos - self.start_pos) as f64 / secs
        } else {
            0.0
        }
    }

    pub(crate) fn set(&mut self, pos: u64) {
        self.pos = pos;
        if let Some(b) = &self.bar {
            b.set_position(pos);
        } else if self.mode == ProgressMode::Lines
            && (self.last_line.elapsed() >= Duration::from_secs(5) || pos >= self.total)
        {
            self.last_line = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let rate = self.rate();
        let pct = if self.total > 0 {
            100.0 * self.pos as f64 / self.total as f64
        } else {
            100.0
        };
        let eta = if rate > 0.0 {
            fmt_duration(Duration::from_secs_f64(
                (self.total.saturating_sub(self.pos)) as f64 / rate,
            ))
        } else {
            "?".to_string()
        };
        format!(
            "{}: {}/{} {} ({pct:.1}%), {rate:.1} {}/s, ETA {eta}",
            self.label, self.pos, self.total, self.unit, self.unit
        )
    }

    pub(crate) fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}
