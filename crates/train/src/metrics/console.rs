use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{MetricError, MetricSink};

/// What the console sink shows.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Total steps of the run, for the bar and the ETA (`None`: no ETA).
    pub total_steps: Option<u64>,
    /// Without a terminal, print a line every this many steps (0 is taken as 1).
    pub plain_every: u64,
    /// The scalar shown as the loss.
    pub loss_key: String,
    /// The scalar shown as throughput.
    pub tokens_per_sec_key: String,
    /// Force plain lines even on a terminal (e.g. `--no-progress`).
    pub force_plain: bool,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            total_steps: None,
            plain_every: 10,
            loss_key: "train/loss".to_string(),
            tokens_per_sec_key: "train/tokens_per_sec".to_string(),
            force_plain: false,
        }
    }
}

/// Progress on stderr: an indicatif bar (step, loss, tokens/s, ETA) on a terminal, plain
/// lines every N steps otherwise (logs, CI), so that files never fill with bar redraws.
pub struct ConsoleSink {
    opts: ConsoleOptions,
    bar: Option<ProgressBar>,
    start: Option<(Instant, u64)>,
    out: Box<dyn Write + Send>,
}

impl ConsoleSink {
    /// A console sink on stderr; chooses bar or plain lines by whether stderr is a terminal.
    pub fn stderr(opts: ConsoleOptions) -> Self {
        let bar = (!opts.force_plain && std::io::stderr().is_terminal()).then(|| {
            let bar = match opts.total_steps {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if opts.total_steps.is_some() {
                "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} eta {eta}"
            } else {
                "{elapsed_precise} step {pos} {msg}"
            };
            // The templates are constants, so this only falls back if indicatif changes.
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        ConsoleSink {
            opts,
            bar,
            start: None,
            out: Box::new(std::io::stderr()),
        }
    }

    /// A plain-line sink writing to `out` (tests, or a log file).
    pub fn plain(opts: ConsoleOptions, out: Box<dyn Write + Send>) -> Self {
        ConsoleSink {
            opts,
            bar: None,
            start: None,
            out,
        }
    }

    /// Prints a message without breaking the bar.
    pub fn println(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => {
                let _ = writeln!(self.out, "{msg}");
            }
        }
    }

    fn eta(&self, step: u64) -> Option<Duration> {
        let total = self.opts.total_steps?;
        let (t0, s0) = self.start?;
        let done = step.checked_sub(s0).filter(|d| *d > 0)?;
        let per_step = t0.elapsed().as_secs_f64() / done as f64;
        Some(Duration::from_secs_f64(
            per_step * total.saturating_sub(step) as f64,
        ))
    }

    fn summary(&self, scalars: &[(&str, f64)]) -> String {
        let mut parts = Vec::new();
        for (name, v) in scalars {
            if *name == self.opts.loss_key {
                parts.push(format!("loss {v:.4}"));
            } else if *name == self.opts.tokens_per_sec_key {
                parts.push(format!("tok/s {v:.0}"));
            }
        }
        parts.join(" ")
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn fmt_value(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

impl MetricSink for ConsoleSink {
    fn name(&self) -> &str {
        "console"
    }

    fn log_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), MetricError> {
        if self.start.is_none() {
            // Resumed runs start mid-way: the rate and ETA count from here.
            self.start = Some((Instant::now(), step));
            if let Some(bar) = &self.bar {
                bar.set_position(step);
                bar.reset_eta();
            }
        }
        let is_train = scalars.iter().any(|(n, _)| *n == self.opts.loss_key);
        if let Some(bar) = &self.bar {
            if is_train {
                bar.set_position(step);
                bar.set_message(self.summary(scalars));
            } else {
                // Evaluation results and the like are rare and worth a line of their own.
                bar.println(plain_line(step, self.opts.total_steps, scalars, None));
            }
            return Ok(());
        }
        let every = self.opts.plain_every.max(1);
        let last = self.opts.total_steps == Some(step);
        if !is_train || step.is_multiple_of(every) || last {
            let eta = if is_train { self.eta(step) } else { None };
            let line = plain_line(step, self.opts.total_steps, scalars, eta);
            writeln!(self.out, "{line}")
                .map_err(|e| MetricError::Other(format!("cannot write progress: {e}")))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MetricError> {
        self.out
            .flush()
            .map_err(|e| MetricError::Other(format!("cannot write progress: {e}")))
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

fn plain_line(
    step: u64,
    total: Option<u64>,
    scalars: &[(&str, f64)],
    eta: Option<Duration>,
) -> String {
    let mut line = match total {
        Some(t) => format!("step {step}/{t}"),
        None => format!("step {step}"),
    };
    for (name, v) in scalars {
        line.push_str(&format!(" {name}={}", fmt_value(*v)));
    }
    if let Some(eta) = eta {
        line.push_str(&format!(" eta={}", human_duration(eta)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines_every_n_steps_plus_eval_and_last() {
        let buf = Buf::default();
        let mut s = ConsoleSink::plain(
            ConsoleOptions {
                total_steps: Some(25),
                plain_every: 10,
                ..Default::default()
            },
            Box::new(buf.clone()),
        );
        for step in 1..=25 {
            s.log_scalars(step, &[("train/loss", 2.0), ("train/lr", 1e-4)])
                .unwrap();
            if step == 15 {
                s.log_scalars(step, &[("dev/em", 0.5)]).unwrap();
            }
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("step 10/25 train/loss=2.0000 train/lr=1.000e-4 eta="),
            "{text}"
        );
        assert_eq!(lines[1], "step 15/25 dev/em=0.5000");
        assert!(lines[2].starts_with("step 20/25 "));
        assert!(
            lines[3].starts_with("step 25/25 ") && lines[3].ends_with("eta=0s"),
            "{text}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(6)), "6s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_duration(Duration::from_secs(3723)), "1h02m03s");
    }

    #[test]
    fn stderr_sink_works_off_a_terminal() {
        let mut s = ConsoleSink::stderr(ConsoleOptions {
            force_plain: true,
            plain_every: 1000,
            ..Default::default()
        });
        s.log_scalars(1, &[("train/loss", 1.0)]).unwrap();
        s.flush().unwrap();
    }
}
