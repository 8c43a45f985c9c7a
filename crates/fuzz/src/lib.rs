//! Mutation fuzzing of every parser radit runs on untrusted input.
//!
//! [`TARGETS`] has one row per parser: a builder of small valid seed inputs (in memory, no
//! assets) and a function running the real entry point users reach (the GGUF loader, the
//! safetensors source, `config.json`, `tokenizer.json`, `Recipe::load`, the dataset and
//! corpus loaders, `DocStore::open`). [`fuzz`] feeds it seeded mutations from
//! [`radit_util::mutate`] and counts the outcomes: every case must end in `Ok` or a short
//! error; a panic, an error (or a warning) over [`MAX_MESSAGE`] bytes, or a run past the
//! per-case budget is a failure.
//!
//! Linking this crate installs [`CappedAlloc`] as the global allocator: a single allocation
//! over [`ALLOC_CAP`] aborts the process with the target and case named, because an input of a
//! few KB that makes a parser ask for hundreds of MB is a bug even where the machine would
//! lazily overcommit the memory. `scripts/fuzz.sh` adds `ulimit -v` on top.

#![deny(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use radit_util::mutate::run_case;
pub use radit_util::mutate::{Failure, Mutation, Mutator, Outcome, Style, MAX_MESSAGE};

mod targets;

/// One valid input a target's mutations start from.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The file name it is written under (the parsers pick the format by extension).
    pub file: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// How many leading bytes hold the structure (the header of a binary format; all of a
    /// text): flips and integer patches favour them.
    pub focus: usize,
    /// Binary or text mutations.
    pub style: Style,
}

/// A parser under test: one row of [`TARGETS`].
pub struct Target {
    /// The name on the command line (`radit-fuzz NAME`).
    pub name: &'static str,
    /// What runs on each case, for `--list`.
    pub about: &'static str,
    /// Builds the seed inputs (and whatever else the parser needs) in a scratch folder.
    pub seeds: fn(scratch: &Path) -> Result<Vec<Seed>, String>,
    /// Runs the real parser on one input written as `file` in the scratch folder; `Err`
    /// carries the error message, or the longest warning if one is over [`MAX_MESSAGE`].
    pub run: fn(scratch: &Path, file: &str, bytes: &[u8]) -> Result<(), String>,
}

/// Every target, one per untrusted parser.
pub static TARGETS: &[Target] = targets::TARGETS;

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Errors of [`fuzz`] itself (not of the parser under test).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// No scratch folder.
    #[error("cannot create a scratch folder: {0}")]
    Scratch(#[source] std::io::Error),
    /// The seed builder failed.
    #[error("{target}: cannot build the seed inputs: {message}")]
    Seeds {
        /// The target.
        target: &'static str,
        /// Why.
        message: String,
    },
    /// The parser rejects its own seed input, so the mutations would test nothing.
    #[error("{target}: the unmutated seed {file} is not accepted: {outcome}")]
    SeedRejected {
        /// The target.
        target: &'static str,
        /// The seed's file name.
        file: &'static str,
        /// What happened instead.
        outcome: String,
    },
}

/// How many cases [`fuzz`] runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Exactly this many.
    Cases(u64),
    /// As many as fit in this time.
    Time(Duration),
}

/// Settings of one [`fuzz`] run.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    /// Seed of the mutation stream (case `i` is the same for the same seed).
    pub seed: u64,
    /// How many cases.
    pub budget: Budget,
    /// Longest one case may run before it counts as a hang.
    pub case_budget: Duration,
    /// Print a progress line to stderr this often (`None`: never).
    pub progress_every: Option<Duration>,
}

impl Default for FuzzConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            budget: Budget::Cases(1000),
            case_budget: Duration::from_secs(5),
            progress_every: None,
        }
    }
}

/// One failed case, enough to reproduce it (`radit-fuzz NAME --seed S --case I --save F`).
#[derive(Debug, Clone)]
pub struct FailedCase {
    /// The case index.
    pub case: u64,
    /// The mutation.
    pub what: String,
    /// What went wrong.
    pub failure: Failure,
}

/// What a [`fuzz`] run saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// The mutation seed.
    pub seed: u64,
    /// Cases run.
    pub cases: u64,
    /// Cases the parser accepted.
    pub ok: u64,
    /// Cases it rejected with a short error.
    pub err: u64,
    /// Every failed case, in order.
    pub failures: Vec<FailedCase>,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the run stopped at a hung case (its thread is still running).
    pub hung: bool,
}

impl Report {
    /// The summary line: counts, then one indented line per failure (the first 20).
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: {} cases in {:.1} s (seed {:#x}): {} ok, {} err, {} failures{}",
            self.target,
            self.cases,
            self.elapsed.as_secs_f64(),
            self.seed,
            self.ok,
            self.err,
            self.failures.len(),
            if self.hung {
                " (stopped at a hang)"
            } else {
                ""
            }
        );
        for f in self.failures.iter().take(20) {
            let message: String = f.failure.to_string().chars().take(300).collect();
            out.push_str(&format!(
                "\n  FAIL seed {:#x} case {}: {}: {message}",
                self.seed, f.case, f.what
            ));
        }
        if self.failures.len() > 20 {
            out.push_str(&format!("\n  ... and {} more", self.failures.len() - 20));
        }
        out
    }
}

/// The target's seeds in a fresh scratch folder, each checked to be accepted unmutated.
pub struct Prepared {
    target: &'static Target,
    /// Removed on drop.
    scratch: tempfile::TempDir,
    seeds: Vec<(Seed, Mutator)>,
}

impl Prepared {
    /// Builds the seeds of `target` in a per-process scratch folder and checks them.
    pub fn new(target: &'static Target, case_budget: Duration) -> Result<Self, FuzzError> {
        let scratch = tempfile::Builder::new()
            .prefix(&format!("radit-fuzz-{}-", target.name))
            .tempdir()
            .map_err(FuzzError::Scratch)?;
        let seeds = (target.seeds)(scratch.path()).map_err(|message| FuzzError::Seeds {
            target: target.name,
            message,
        })?;
        // For the allocator's refusal message.
        let index = TARGETS
            .iter()
            .position(|t| std::ptr::eq(t, target))
            .unwrap_or(usize::MAX);
        CURRENT_TARGET.store(index, Ordering::Relaxed);
        let mut prepared = Self {
            target,
            scratch,
            seeds: Vec::new(),
        };
        for seed in seeds {
            let outcome = prepared.run_bytes(seed.file, seed.bytes.clone(), case_budget);
            if outcome != Outcome::Ok {
                return Err(FuzzError::SeedRejected {
                    target: target.name,
                    file: seed.file,
                    outcome: format!("{outcome:?}"),
                });
            }
            let mutator = Mutator::new(&seed.bytes, seed.focus, seed.style);
            prepared.seeds.push((seed, mutator));
        }
        Ok(prepared)
    }

    /// The scratch folder.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Case `index` of stream `seed`: the seeds take turns, each mutated by its own mutator.
    /// Returns the file name it is written under and the mutation.
    pub fn case(&self, seed: u64, index: u64) -> (&'static str, Mutation) {
        CURRENT_CASE.store(index, Ordering::Relaxed);
        let (s, mutator) = &self.seeds[(index % self.seeds.len() as u64) as usize];
        let mut m = mutator.case(seed, index);
        if self.seeds.len() > 1 {
            m.what = format!("{}: {}", s.file, m.what);
        }
        (s.file, m)
    }

    /// Runs the parser on `bytes` as `file`, on its own thread, classified.
    pub fn run_bytes(&self, file: &'static str, bytes: Vec<u8>, budget: Duration) -> Outcome {
        let run = self.target.run;
        let dir: PathBuf = self.scratch.path().to_path_buf();
        run_case(budget, move || run(&dir, file, &bytes))
    }
}

/// Runs `target` on mutated seeds until the budget is spent; stops early only at a hang.
pub fn fuzz(target: &'static Target, config: &FuzzConfig) -> Result<Report, FuzzError> {
    let prepared = Prepared::new(target, config.case_budget)?;
    let started = Instant::now();
    let mut last_progress = started;
    let mut report = Report {
        target: target.name,
        seed: config.seed,
        cases: 0,
        ok: 0,
        err: 0,
        failures: Vec::new(),
        elapsed: Duration::ZERO,
        hung: false,
    };
    loop {
        let more = match config.budget {
            Budget::Cases(n) => report.cases < n,
            Budget::Time(t) => started.elapsed() < t,
        };
        if !more {
            break;
        }
        let i = report.cases;
        let (file, Mutation { what, bytes }) = prepared.case(config.seed, i);
        report.cases += 1;
        match prepared.run_bytes(file, bytes, config.case_budget) {
            Outcome::Ok => report.ok += 1,
            Outcome::Err(_) => report.err += 1,
            Outcome::Failure(failure) => {
                let hung = matches!(
                    failure,
                    Failure::Hang {
                        finished: false,
                        ..
                    }
                );
                report.failures.push(FailedCase {
                    case: i,
                    what,
                    failure,
                });
                if hung {
                    // The hung thread still owns the scratch files: nothing after it counts.
                    report.hung = true;
                    break;
                }
            }
        }
        if let Some(every) = config.progress_every {
            if last_progress.elapsed() >= every {
                last_progress = Instant::now();
                eprintln!(
                    "progress {}: {} cases in {:.0} s, {} ok, {} err, {} failures (seed {:#x}, case {i})",
                    target.name,
                    report.cases,
                    started.elapsed().as_secs_f64(),
                    report.ok,
                    report.err,
                    report.failures.len(),
                    config.seed,
                );
            }
        }
    }
    report.elapsed = started.elapsed();
    if report.hung {
        // Leave the scratch folder to the hung thread instead of deleting it under it.
        let _ = prepared.scratch.keep();
    }
    Ok(report)
}

/// Largest single allocation [`CappedAlloc`] grants: far past what a seed of a few KB needs,
/// far below a corrupt length or count taken at face value.
pub const ALLOC_CAP: usize = 512 << 20;

static CURRENT_TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static CURRENT_CASE: AtomicU64 = AtomicU64::new(0);

/// The global allocator of every binary linking this crate: the system allocator, except
/// that a request over [`ALLOC_CAP`] fails (the process aborts) after naming the target and
/// case on stderr.
pub struct CappedAlloc;

impl CappedAlloc {
    fn refuse(size: usize) {
        // No allocation here: format into a stack buffer, write it unbuffered.
        let mut buf = [0u8; 160];
        let mut cursor = &mut buf[..];
        let target = TARGETS
            .get(CURRENT_TARGET.load(Ordering::Relaxed))
            .map_or("?", |t| t.name);
        let _ = writeln!(
            cursor,
            "radit-fuzz: refused an allocation of {size} bytes in target {target} case {}",
            CURRENT_CASE.load(Ordering::Relaxed)
        );
        let left = cursor.len();
        let used = buf.len() - left;
        let _ = std::io::stderr().write_all(&buf[..used]);
    }
}

// SAFETY: every call forwards to `System` with the same arguments, or returns null, which
// GlobalAlloc allows for any request it cannot satisfy.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            Self::refuse(layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            Self::refuse(layout.size());
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP {
            Self::refuse(new_size);
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// `Ok` when every message is short, else the longest: how a target reports a warning (a
/// skipped line, an ingest issue) that echoes too much input back.
pub fn check_warnings<I: IntoIterator<Item = String>>(messages: I) -> Result<(), String> {
    match messages.into_iter().max_by_key(String::len) {
        Some(m) if m.len() > MAX_MESSAGE => Err(m),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_ok(_: &Path) -> Result<Vec<Seed>, String> {
        Ok(vec![Seed {
            file: "x.txt",
            bytes: b"count = 3\nname = \"abc\"\n".to_vec(),
            focus: 24,
            style: Style::Text,
        }])
    }

    /// A parser with the bugs the harness must catch: it panics on a digit other than 3,
    /// echoes a long input back in its error, and spins on an empty input.
    fn buggy(_: &Path, _: &str, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            std::thread::sleep(Duration::from_secs(3));
        }
        if let Some(d) = bytes.iter().find(|b| b.is_ascii_digit() && **b != b'3') {
            panic!("digit {}", *d as char);
        }
        if bytes.len() > 200 {
            return Err(String::from_utf8_lossy(bytes).repeat(100));
        }
        if bytes.contains(&b'#') {
            return Err("a comment".into());
        }
        Ok(())
    }

    static BUGGY: Target = Target {
        name: "buggy",
        about: "test double",
        seeds: seed_ok,
        run: buggy,
    };

    #[test]
    fn the_harness_reports_panics_long_messages_and_hangs() {
        let config = FuzzConfig {
            seed: 1,
            budget: Budget::Cases(400),
            case_budget: Duration::from_millis(500),
            progress_every: None,
        };
        let report = fuzz(&BUGGY, &config).expect("fuzz");
        let kinds: Vec<&Failure> = report.failures.iter().map(|f| &f.failure).collect();
        assert!(
            kinds
                .iter()
                .any(|f| matches!(f, Failure::Panic(m) if m.contains("digit"))),
            "{}",
            report.summary()
        );
        assert!(
            kinds
                .iter()
                .any(|f| matches!(f, Failure::LongMessage { .. })),
            "{}",
            report.summary()
        );
        assert!(report.ok > 0 && report.err > 0, "{}", report.summary());
        assert!(report.summary().contains("FAIL seed 0x1 case "));
        // A truncation to nothing hangs the double; the run stops there.
        if report.hung {
            assert!(matches!(kinds.last(), Some(Failure::Hang { .. })));
        }
    }

    #[test]
    fn cases_reproduce_and_every_target_is_listed_once() {
        let p = Prepared::new(&BUGGY, Duration::from_secs(5)).expect("prepare");
        assert_eq!(p.case(9, 17).1, p.case(9, 17).1);
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
        for name in [
            "gguf",
            "config-json",
            "safetensors",
            "tokenizer",
            "recipe",
            "jsonl",
            "tsv",
            "corpus",
            "manifest",
        ] {
            assert!(target(name).is_some(), "{name}");
        }
    }

    #[test]
    fn long_warnings_fail() {
        assert!(check_warnings(["a".to_string(), "b".repeat(10)]).is_ok());
        assert!(check_warnings(["c".repeat(MAX_MESSAGE + 1)]).is_err());
    }
}
