//! Metric sinks (TensorBoard, JSONL, console) behind one trait, and a logger that fans out
//! to them without ever failing the training loop.

mod console;
mod jsonl;
mod tensorboard;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use console::{ConsoleOptions, ConsoleSink};
pub use jsonl::JsonlSink;
pub use tensorboard::TensorBoardSink;

/// A sink could not record metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Any other failure, e.g. a panic inside a third-party writer.
    #[error("{0}")]
    Other(String),
}

/// A destination for scalar metrics.
///
/// Errors are for the [`MetricLogger`] to handle; the training loop never sees them.
pub trait MetricSink: Send {
    /// A short name for warnings, e.g. `tensorboard`.
    fn name(&self) -> &str;
    /// Records `scalars` (name, value) at `step`. Names may contain `/` (TensorBoard groups).
    fn log_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), MetricError>;
    /// Pushes buffered data to its destination (called at checkpoints and at the end).
    fn flush(&mut self) -> Result<(), MetricError>;
    /// The run resumes after step `step` (the step of the checkpoint it restored, 0 when a
    /// resume found none): what the sink holds for later steps is from the interrupted
    /// run's lost progress and is about to be logged again. A sink that keeps history
    /// drops it here (see [`JsonlSink`]); the default does nothing.
    fn resumed_at(&mut self, step: u64) -> Result<(), MetricError> {
        let _ = step;
        Ok(())
    }
}

struct Slot {
    sink: Box<dyn MetricSink>,
    disabled: bool,
}

/// Fans metrics out to several sinks. A sink that fails (returns an error or panics) is
/// warned about once and disabled; the others go on and the caller never sees an error,
/// because losing a metric must never cost a training run.
pub struct MetricLogger {
    slots: Vec<Slot>,
    warn: Box<dyn FnMut(&str) + Send>,
}

impl Default for MetricLogger {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricLogger {
    /// A logger with no sinks, warning through `tracing` (the binary's subscriber decides
    /// where warnings go).
    pub fn new() -> Self {
        MetricLogger {
            slots: Vec::new(),
            warn: Box::new(|msg| tracing::warn!("{msg}")),
        }
    }

    /// Sends warnings to `warn` instead of `tracing` (e.g. through a progress bar, or in
    /// tests).
    pub fn with_warn(mut self, warn: impl FnMut(&str) + Send + 'static) -> Self {
        self.warn = Box::new(warn);
        self
    }

    /// Adds a sink.
    pub fn add(&mut self, sink: Box<dyn MetricSink>) {
        self.slots.push(Slot {
            sink,
            disabled: false,
        });
    }

    /// Builder form of [`MetricLogger::add`].
    pub fn with_sink(mut self, sink: Box<dyn MetricSink>) -> Self {
        self.add(sink);
        self
    }

    /// Names of the sinks still working.
    pub fn active_sinks(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| !s.disabled)
            .map(|s| s.sink.name())
            .collect()
    }

    /// Records `scalars` at `step` in every working sink.
    pub fn log_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) {
        self.each(|sink| sink.log_scalars(step, scalars));
    }

    /// Flushes every working sink.
    pub fn flush(&mut self) {
        self.each(|sink| sink.flush());
    }

    /// Tells every working sink that the run resumes after `step` (see
    /// [`MetricSink::resumed_at`]); the trainer calls it after restoring a checkpoint.
    pub fn resumed_at(&mut self, step: u64) {
        self.each(|sink| sink.resumed_at(step));
    }

    fn each(&mut self, mut op: impl FnMut(&mut dyn MetricSink) -> Result<(), MetricError>) {
        for slot in self.slots.iter_mut().filter(|s| !s.disabled) {
            // Third-party writers panic on I/O errors; a panic here must not unwind into
            // the training loop.
            let outcome = catch_unwind(AssertUnwindSafe(|| op(slot.sink.as_mut())));
            let failure = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => panic_message(&*panic),
            };
            slot.disabled = true;
            (self.warn)(&format!(
                "metric sink `{}` failed and is disabled for the rest of the run: {failure}",
                slot.sink.name()
            ));
        }
    }
}

impl Drop for MetricLogger {
    fn drop(&mut self) {
        // Last chance to get buffered lines out; failures are moot now.
        if !std::thread::panicking() {
            self.flush();
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    if detail.is_empty() {
        "it panicked".to_string()
    } else {
        format!("it panicked: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Fake {
        name: &'static str,
        fail_at: Option<u64>,
        panic: bool,
        seen: Arc<Mutex<Vec<u64>>>,
    }

    impl MetricSink for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn log_scalars(&mut self, step: u64, _: &[(&str, f64)]) -> Result<(), MetricError> {
            if self.fail_at.is_some_and(|f| step >= f) {
                if self.panic {
                    panic!("boom at {step}");
                }
                return Err(MetricError::Other(format!("disk full at {step}")));
            }
            self.seen.lock().unwrap().push(step);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), MetricError> {
            Ok(())
        }
    }

    #[test]
    fn failing_sinks_warn_once_and_others_continue() {
        let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
        let w = Arc::clone(&warnings);
        let good = Arc::new(Mutex::new(Vec::new()));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let mut logger = MetricLogger::new()
            .with_warn(move |m| w.lock().unwrap().push(m.to_string()))
            .with_sink(Box::new(Fake {
                name: "bad",
                fail_at: Some(2),
                panic: false,
                seen: Arc::clone(&bad),
            }))
            .with_sink(Box::new(Fake {
                name: "panicky",
                fail_at: Some(3),
                panic: true,
                seen: Arc::new(Mutex::new(Vec::new())),
            }))
            .with_sink(Box::new(Fake {
                name: "good",
                fail_at: None,
                panic: false,
                seen: Arc::clone(&good),
            }));
        // Fails from step 2 on (bad) and 3 on (panicky): the Fake fails for step >= fail_at.
        for step in 0..10 {
            logger.log_scalars(step, &[("loss", 1.0)]);
        }
        logger.flush();
        assert_eq!(*good.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert_eq!(*bad.lock().unwrap(), vec![0, 1]);
        let warnings = warnings.lock().unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`bad` failed") && warnings[0].contains("disk full"));
        assert!(warnings[1].contains("`panicky` failed") && warnings[1].contains("boom"));
        assert_eq!(logger.active_sinks(), vec!["good"]);
    }

    #[test]
    fn default_warnings_go_through_tracing() {
        let ((), events) = crate::testlog::capture(|| {
            let mut logger = MetricLogger::new().with_sink(Box::new(Fake {
                name: "bad",
                fail_at: Some(0),
                panic: false,
                seen: Arc::new(Mutex::new(Vec::new())),
            }));
            logger.log_scalars(0, &[("loss", 1.0)]);
        });
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, tracing::Level::WARN);
        assert!(events[0].1.contains("`bad` failed"), "{events:?}");
    }
}
