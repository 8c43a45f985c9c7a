//! SIGTERM, SIGINT and SIGUSR1 (what `sbatch --signal=B:USR1@120` sends before a job's time
//! limit) as a process-wide "stop requested" flag that the training loop polls between steps
//! to save a checkpoint and exit cleanly.
//!
//! Outside a training loop there is nothing unsaved to lose (loading models, building
//! instances, scoring R-ft targets, dev evaluation before training: all redone or cached on
//! resume), so a signal there ends the process at once with [`EXIT_RESUMABLE`] instead of
//! letting minutes of loading finish first. Inside a loop (while a [`SaveOnSignal`] guard
//! lives) the first signal only sets the flag and the loop saves at the next step boundary;
//! a second one while the flag is still set exits at once (status 130 for SIGINT, 143 for
//! SIGTERM, 138 for SIGUSR1), so a stuck save can still be interrupted from the keyboard.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// Exit status of a process a signal stopped with nothing lost: "preempted, resume me"
/// (EX_TEMPFAIL from sysexits.h: temporary failure, try again). A rerun with `--resume`
/// continues from the last checkpoint, or starts when there is none.
pub const EXIT_RESUMABLE: i32 = 75;

/// The handle the loop polls; cheap to clone, all clones share the process-wide flag.
#[derive(Debug, Clone)]
pub struct StopFlag {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    /// Set while no training loop runs: a signal then exits with [`EXIT_RESUMABLE`].
    exit_at_once: Arc<AtomicBool>,
}

/// The signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the SIGTERM/SIGINT/SIGUSR1 handlers: {0}")]
pub struct SignalError(#[source] pub Arc<io::Error>);

static FLAG: OnceLock<Result<StopFlag, SignalError>> = OnceLock::new();

impl Clone for SignalError {
    fn clone(&self) -> Self {
        SignalError(Arc::clone(&self.0))
    }
}

/// Installs the handlers (once per process; later calls return the same flag).
pub fn install() -> Result<StopFlag, SignalError> {
    FLAG.get_or_init(|| {
        let flag = StopFlag {
            requested: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
            exit_at_once: Arc::new(AtomicBool::new(true)),
        };
        let register = |sig: i32, exit_code: i32| -> io::Result<()> {
            // Handlers run in registration order. Outside a loop, exit before anything else.
            signal_hook::flag::register_conditional_shutdown(
                sig,
                EXIT_RESUMABLE,
                Arc::clone(&flag.exit_at_once),
            )?;
            // Then the second-signal exit: it sees the flag as it was before this signal,
            // i.e. it fires only on the second signal.
            signal_hook::flag::register_conditional_shutdown(
                sig,
                exit_code,
                Arc::clone(&flag.requested),
            )?;
            signal_hook::flag::register_usize(sig, Arc::clone(&flag.signal), sig as usize)?;
            signal_hook::flag::register(sig, Arc::clone(&flag.requested))?;
            Ok(())
        };
        register(SIGTERM, 128 + SIGTERM)
            .and_then(|()| register(SIGINT, 128 + SIGINT))
            .and_then(|()| register(SIGUSR1, 128 + SIGUSR1))
            .map_err(|e| SignalError(Arc::new(e)))?;
        Ok(flag)
    })
    .clone()
}

impl StopFlag {
    /// Whether SIGTERM, SIGINT or SIGUSR1 has arrived since installation or the last
    /// [`StopFlag::clear`].
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The signal's name, when one arrived.
    pub fn signal_name(&self) -> Option<&'static str> {
        if !self.requested() {
            return None;
        }
        match self.signal.load(Ordering::SeqCst) as i32 {
            SIGTERM => Some("SIGTERM"),
            SIGINT => Some("SIGINT"),
            SIGUSR1 => Some("SIGUSR1"),
            _ => Some("signal"),
        }
    }

    /// Sets the flag as a signal would, e.g. for a time limit.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Until the guard is dropped, a signal asks for a checkpoint at the next step boundary
    /// instead of ending the process at once. The training loop holds one while it runs.
    pub fn save_on_signal(&self) -> SaveOnSignal<'_> {
        self.exit_at_once.store(false, Ordering::SeqCst);
        SaveOnSignal { flag: self }
    }

    /// Clears the flag (a new signal is then again a graceful request, not an exit).
    pub fn clear(&self) {
        self.signal.store(0, Ordering::SeqCst);
        self.requested.store(false, Ordering::SeqCst);
    }
}

/// While alive, a signal is a request to save and stop (see [`StopFlag::save_on_signal`]);
/// dropping it makes a signal end the process at once again.
#[derive(Debug)]
#[must_use = "signals end the process at once again when the guard is dropped"]
pub struct SaveOnSignal<'a> {
    flag: &'a StopFlag,
}

impl Drop for SaveOnSignal<'_> {
    fn drop(&mut self) {
        self.flag.exit_at_once.store(true, Ordering::SeqCst);
    }
}
