//! Seeded mutation testing of parsers that read untrusted input.
//!
//! A [`Mutator`] derives cases from one small valid input: bit flips (favouring the
//! structured prefix, where headers and counts are), truncations, huge values patched over
//! small little-endian integer fields (the lengths and counts a corrupt file lies about), and
//! text mutations for text formats (a byte or line deleted, duplicated or inserted, invalid
//! UTF-8, a number replaced by a huge, negative or non-finite one, deeply nested brackets).
//! Case `i` of seed `s` is a pure function of `(s, i)`, so one case is reproduced without
//! replaying the ones before it.
//!
//! [`run_case`] runs a parser on one case on its own thread, under `catch_unwind` and a time
//! budget, and classifies the result ([`Outcome`]): a parser must return `Ok` or a short
//! `Err`; a panic, an error message over [`MAX_MESSAGE`] bytes or a run past the budget is a
//! failure. An abort (a huge allocation, a stack overflow) ends the process, which is why
//! the long runs go through `scripts/fuzz.sh` under `ulimit -v`.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::rng::{mix, SplitMix64};

/// Longest error message a parser may return: a message longer than this echoes input back
/// at the user (a corrupt length can make a "name" megabytes long).
pub const MAX_MESSAGE: usize = 4096;

/// Values patched over integer fields: the lengths and counts a corrupt or hostile file
/// claims, each past what any real input holds.
pub const HUGE: [u64; 8] = [
    u64::MAX,
    u64::MAX / 2,
    1 << 63,
    1 << 40,
    1 << 32,
    1 << 31,
    u32::MAX as u64,
    0x0800_0000,
];

/// Texts a number in a text format is replaced with: out of every integer range, negative,
/// zero, non-finite or of the wrong type.
pub const NUMBER_SWAPS: [&str; 14] = [
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "4294967296",
    "1000000000",
    "-1",
    "-9223372036854775809",
    "0",
    "-0.0",
    "1e308",
    "1e999",
    "NaN",
    "inf",
    "\"x\"",
];

/// Largest case [`Mutator::case`] returns: the text edits grow an input (a line copied 200
/// times, stacked twice, would take a 40 KB binary input to hundreds of MB), and a case that
/// big tests the machine, not the parser.
pub const MAX_CASE_BYTES: usize = 4 << 20;

/// Whether an input is a binary format (mutated mostly by flips and integer patches) or a
/// text one (mostly by text edits); both get every kind of mutation, in different shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A binary format: GGUF, safetensors.
    Binary,
    /// A text format: JSON, JSONL, TSV, TOML.
    Text,
}

/// One mutated input and a description of the mutation, for the failure report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// What was done to the seed input.
    pub what: String,
    /// The mutated bytes.
    pub bytes: Vec<u8>,
}

/// Derives seeded mutations from one valid input.
#[derive(Debug, Clone)]
pub struct Mutator {
    good: Vec<u8>,
    focus: usize,
    style: Style,
    /// Offsets of 8-byte little-endian fields holding a small non-zero value.
    fields64: Vec<usize>,
    /// Offsets of 4-byte little-endian fields holding a small non-zero value.
    fields32: Vec<usize>,
    /// Byte ranges of the numbers in the text.
    numbers: Vec<(usize, usize)>,
    /// Offsets where a line starts.
    lines: Vec<usize>,
}

impl Mutator {
    /// A mutator of `good`; flips and integer patches favour its first `focus` bytes (the
    /// header of a binary format; pass `good.len()` for text).
    pub fn new(good: &[u8], focus: usize, style: Style) -> Self {
        let focus = focus.clamp(1, good.len().max(1));
        let prefix = &good[..focus.min(good.len())];
        let mut lines = vec![0];
        lines.extend(
            good.iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' && i + 1 < good.len())
                .map(|(i, _)| i + 1),
        );
        Self {
            good: good.to_vec(),
            focus,
            style,
            fields64: small_fields::<8>(prefix),
            fields32: small_fields::<4>(prefix),
            numbers: numbers(good),
            lines,
        }
    }

    /// The unmutated input.
    pub fn seed_input(&self) -> &[u8] {
        &self.good
    }

    /// Case `index` of stream `seed`: one to three stacked mutations of the input.
    pub fn case(&self, seed: u64, index: u64) -> Mutation {
        let mut rng = SplitMix64::new(mix(&[seed, index]));
        let mut bytes = self.good.clone();
        // Mostly one mutation, so each failure has a simple cause; sometimes a few stacked.
        let rounds = match rng.below(8) {
            0 => 3,
            1 | 2 => 2,
            _ => 1,
        };
        let mut what = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            what.push(self.mutate_once(&mut rng, &mut bytes));
            if bytes.len() > MAX_CASE_BYTES {
                bytes.truncate(MAX_CASE_BYTES);
                what.push(format!("cut to {MAX_CASE_BYTES} bytes"));
            }
        }
        Mutation {
            what: what.join("; "),
            bytes,
        }
    }

    fn mutate_once(&self, rng: &mut SplitMix64, bytes: &mut Vec<u8>) -> String {
        if bytes.is_empty() {
            bytes.extend_from_slice(&self.good);
            return "restored the seed input".into();
        }
        // Shares out of 20 of: flips, truncation, integer patch, text edits.
        let (flip, trunc, patch) = match self.style {
            Style::Binary => (7, 3, 7),
            Style::Text => (3, 2, 1),
        };
        let pick = rng.below(20);
        if pick < flip {
            self.flip_bits(rng, bytes)
        } else if pick < flip + trunc {
            let len = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(len);
            format!("truncated to {len} bytes")
        } else if pick < flip + trunc + patch {
            self.patch_integer(rng, bytes)
        } else {
            self.text_edit(rng, bytes)
        }
    }

    fn flip_bits(&self, rng: &mut SplitMix64, bytes: &mut [u8]) -> String {
        let flips = 1 + rng.below(4);
        let mut at_list = Vec::new();
        for _ in 0..flips {
            let span = if rng.below(4) == 0 {
                bytes.len()
            } else {
                self.focus.min(bytes.len())
            };
            let at = rng.below(span as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
            at_list.push(at);
        }
        format!("bit flips at {at_list:?}")
    }

    fn patch_integer(&self, rng: &mut SplitMix64, bytes: &mut [u8]) -> String {
        // A third of the patches write half the input's length: a length that still fits,
        // so the bytes it covers are read as something else.
        let value = match rng.below(HUGE.len() as u64 + 4) as usize {
            k if k < HUGE.len() => HUGE[k],
            _ => self.good.len() as u64 / 2,
        };
        let wide = rng.below(2) == 0;
        let (fields, width) = if wide {
            (&self.fields64, 8)
        } else {
            (&self.fields32, 4)
        };
        let at = match fields.len() {
            0 => rng.below(self.focus as u64) as usize,
            n => fields[rng.below(n as u64) as usize],
        };
        if at >= bytes.len() {
            return format!("no patch (offset {at} past the end)");
        }
        let end = (at + width).min(bytes.len());
        let le = value.to_le_bytes();
        let le = if wide { &le[..] } else { &le[..4] };
        bytes[at..end].copy_from_slice(&le[..end - at]);
        format!("u{} {value:#x} patched at {at}", width * 8)
    }

    fn text_edit(&self, rng: &mut SplitMix64, bytes: &mut Vec<u8>) -> String {
        let at = rng.below(bytes.len() as u64 + 1) as usize;
        let line = |rng: &mut SplitMix64, bytes: &[u8]| -> (usize, usize) {
            let start = self.lines[rng.below(self.lines.len() as u64) as usize].min(bytes.len());
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| start + p + 1);
            (start, end)
        };
        match rng.below(10) {
            0 => {
                let at = at.min(bytes.len() - 1);
                bytes.remove(at);
                format!("byte deleted at {at}")
            }
            1 => {
                let at = at.min(bytes.len() - 1);
                let b = bytes[at];
                bytes.insert(at, b);
                format!("byte duplicated at {at}")
            }
            2 => {
                const INTERESTING: &[u8] = b"\"\\{}[]:,=\t\n\r\0#'.-";
                let b = INTERESTING[rng.below(INTERESTING.len() as u64) as usize];
                bytes.insert(at, b);
                format!("byte {b:#04x} inserted at {at}")
            }
            3 => {
                let (start, end) = line(rng, bytes);
                bytes.drain(start..end);
                format!("line at {start} deleted")
            }
            4 => {
                let (start, end) = line(rng, bytes);
                let want = if rng.below(4) == 0 { 200 } else { 1 };
                // Bounded before allocating: a "line" of a binary input can be most of it.
                let room = MAX_CASE_BYTES.saturating_sub(bytes.len()) / (end - start).max(1);
                let copies = want.min(room);
                let text = bytes[start..end].repeat(copies);
                bytes.splice(start..start, text);
                format!("line at {start} duplicated {copies}x")
            }
            5 => {
                const INVALID: [&[u8]; 4] =
                    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"];
                let s = INVALID[rng.below(INVALID.len() as u64) as usize];
                bytes.splice(at..at, s.iter().copied());
                format!("invalid UTF-8 {s:02x?} inserted at {at}")
            }
            6 | 7 => self.swap_number(rng, bytes),
            8 => {
                let depth = [64usize, 200, 5_000, 100_000][rng.below(4) as usize];
                let (open, close) = [(b'[', b']'), (b'{', b'}')][rng.below(2) as usize];
                let nest: Vec<u8> = std::iter::repeat_n(open, depth)
                    .chain(std::iter::repeat_n(close, depth * rng.below(2) as usize))
                    .collect();
                // After a `:` or `=` the brackets stand where a value goes.
                let at = bytes
                    .iter()
                    .enumerate()
                    .skip(at)
                    .find(|&(_, &b)| b == b':' || b == b'=')
                    .map_or(at, |(i, _)| i + 1);
                bytes.splice(at..at, nest);
                format!("{depth} nested {} at {at}", open as char)
            }
            _ => {
                let n = [100usize, 10_000, 60_000][rng.below(3) as usize];
                let b = b"a\"x0 "[rng.below(5) as usize];
                bytes.splice(at..at, std::iter::repeat_n(b, n));
                format!("{n} bytes {:?} inserted at {at}", b as char)
            }
        }
    }

    fn swap_number(&self, rng: &mut SplitMix64, bytes: &mut Vec<u8>) -> String {
        // The numbers of the seed input; earlier edits may have moved them, which only
        // makes the swap land elsewhere.
        if self.numbers.is_empty() {
            return "no number to replace".into();
        }
        let (start, end) = self.numbers[rng.below(self.numbers.len() as u64) as usize];
        let (start, end) = (start.min(bytes.len()), end.min(bytes.len()));
        let with = NUMBER_SWAPS[rng.below(NUMBER_SWAPS.len() as u64) as usize];
        bytes.splice(start..end, with.bytes());
        format!("number at {start} replaced by {with}")
    }
}

/// Offsets of `N`-byte fields in `prefix` holding a small non-zero little-endian value (in
/// `1..=65536`): the lengths and counts a huge-value patch should hit.
fn small_fields<const N: usize>(prefix: &[u8]) -> Vec<usize> {
    if prefix.len() < N {
        return Vec::new();
    }
    (0..=prefix.len() - N)
        .filter(|&at| {
            let mut b = [0u8; 8];
            b[..N].copy_from_slice(&prefix[at..at + N]);
            (1..=1 << 16).contains(&u64::from_le_bytes(b))
        })
        .collect()
}

/// Byte ranges of the decimal numbers in `text` (digits not inside a word).
fn numbers(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < text.len() && (text[i].is_ascii_digit() || b".eE-+_".contains(&text[i])) {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The parser accepted the input.
    Ok,
    /// The parser rejected the input with a short message (the expected outcome).
    Err(String),
    /// A bug in the parser.
    Failure(Failure),
}

/// A case that shows a bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The parser panicked; the message and, when known, where.
    Panic(String),
    /// The error message is over [`MAX_MESSAGE`] bytes; its length and first characters.
    LongMessage {
        /// Length of the message in bytes.
        len: usize,
        /// Its first 200 characters.
        head: String,
    },
    /// The parser ran past the time budget (still running when `finished` is false).
    Hang {
        /// The time budget.
        budget: Duration,
        /// Whether the parser returned at all (a slow case rather than a hung one).
        finished: bool,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "panicked: {m}"),
            Failure::LongMessage { len, head } => write!(f, "{len}-byte error message: {head}..."),
            Failure::Hang {
                budget,
                finished: true,
            } => write!(f, "took longer than {budget:?}"),
            Failure::Hang { budget, .. } => write!(f, "still running after {budget:?} (hang)"),
        }
    }
}

/// Name prefix of the threads [`run_case`] starts; the panic hook stays quiet on them.
const CASE_THREAD: &str = "mutate-case";

thread_local! {
    /// Where the last panic on this thread happened, recorded by the quiet hook.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records where a case panicked instead of printing a
/// backtrace per case; panics on every other thread go to the previous hook unchanged (a
/// test's own failed assertion still prints).
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_case = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(CASE_THREAD));
            if on_case {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "<non-string payload>".into())
}

/// Runs `parse` on a thread of its own (8 MiB of stack, like a main thread) under
/// `catch_unwind` and waits at most `budget` for it; classifies what it returned.
///
/// A hung parser's thread is left running (a thread cannot be killed): the caller should
/// stop after a [`Failure::Hang`] with `finished == false`.
pub fn run_case<F>(budget: Duration, parse: F) -> Outcome
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    install_quiet_hook();
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let spawned = std::thread::Builder::new()
        .name(format!("{CASE_THREAD}-worker"))
        .stack_size(8 << 20)
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(parse)).map_err(|panic| {
                let at = PANIC_AT.with(|p| p.borrow_mut().take());
                let msg = panic_message(panic.as_ref());
                match at {
                    Some(at) => format!("{msg} at {at}"),
                    None => msg,
                }
            });
            // The receiver is gone only when the case already counted as a hang.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Outcome::Failure(Failure::Panic(format!("could not start a thread: {e}")));
    }
    let result = match rx.recv_timeout(budget) {
        Ok(result) => result,
        Err(_) => {
            return Outcome::Failure(Failure::Hang {
                budget,
                finished: false,
            })
        }
    };
    if started.elapsed() > budget {
        return Outcome::Failure(Failure::Hang {
            budget,
            finished: true,
        });
    }
    match result {
        Err(panic) => Outcome::Failure(Failure::Panic(panic)),
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(message)) if message.len() > MAX_MESSAGE => Outcome::Failure(Failure::LongMessage {
            len: message.len(),
            head: message.chars().take(200).collect(),
        }),
        Ok(Err(message)) => Outcome::Err(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_a_pure_function_of_seed_and_index() {
        let m = Mutator::new(b"{\"a\": 12, \"b\": [1, 2]}\n{\"c\": 3}\n", 64, Style::Text);
        for i in 0..50 {
            assert_eq!(m.case(7, i), m.case(7, i));
        }
        let distinct: std::collections::HashSet<Vec<u8>> =
            (0..200).map(|i| m.case(7, i).bytes).collect();
        assert!(distinct.len() > 100, "{} distinct cases", distinct.len());
        assert!((0..200).any(|i| m.case(7, i) != m.case(8, i)));
    }

    #[test]
    fn every_kind_of_mutation_occurs() {
        let mut bin = b"HEAD".to_vec();
        bin.extend(5u64.to_le_bytes());
        bin.extend(3u32.to_le_bytes());
        bin.extend([0u8; 40]);
        let text = b"a = 1\nb = \"x\"\n[c]\nd = 2.5\n";
        let mut seen = String::new();
        for (good, style) in [(&bin[..], Style::Binary), (&text[..], Style::Text)] {
            let m = Mutator::new(good, 16, style);
            for i in 0..2000 {
                seen.push_str(&m.case(1, i).what);
                seen.push('\n');
            }
        }
        for kind in [
            "bit flips",
            "truncated",
            "u64 0x",
            "u32 0x",
            "byte deleted",
            "byte duplicated",
            "inserted at",
            "line at",
            "invalid UTF-8",
            "replaced by",
            "nested",
        ] {
            assert!(seen.contains(kind), "no `{kind}` mutation");
        }
    }

    #[test]
    fn cases_stay_under_the_size_cap() {
        // A binary input with one long "line": stacked 200x copies must not multiply.
        let mut big = vec![7u8; 40_000];
        big[20] = b'\n';
        let m = Mutator::new(&big, 1000, Style::Text);
        let mut largest = 0;
        for i in 0..20_000 {
            largest = largest.max(m.case(5, i).bytes.len());
        }
        assert!(largest <= MAX_CASE_BYTES, "{largest}");
        assert!(
            largest > 1 << 20,
            "the duplications still grow inputs: {largest}"
        );
    }

    #[test]
    fn length_fields_are_found() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        assert!(small_fields::<8>(&b).contains(&8));
        assert!(small_fields::<4>(&b).contains(&4));
        assert_eq!(numbers(b"x1 = 12, y = -3.5e2"), [(5, 7), (14, 19)]);
        assert!(small_fields::<8>(b"abc").is_empty());
        // Tiny and empty inputs mutate without panicking.
        for good in [&b""[..], b"1", b"{}"] {
            for style in [Style::Binary, Style::Text] {
                let m = Mutator::new(good, 8, style);
                for i in 0..200 {
                    m.case(3, i);
                }
            }
        }
    }

    #[test]
    fn run_case_classifies_outcomes() {
        let budget = Duration::from_secs(5);
        assert_eq!(run_case(budget, || Ok(())), Outcome::Ok);
        assert_eq!(
            run_case(budget, || Err("bad".into())),
            Outcome::Err("bad".into())
        );
        match run_case(budget, || Err("x".repeat(MAX_MESSAGE + 1))) {
            Outcome::Failure(Failure::LongMessage { len, .. }) => assert_eq!(len, MAX_MESSAGE + 1),
            other => panic!("{other:?}"),
        }
        match run_case(budget, || {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            Err(format!("{}", v[i]))
        }) {
            Outcome::Failure(Failure::Panic(m)) => {
                assert!(m.contains("index out of bounds"), "{m}");
                assert!(m.contains("mutate.rs:"), "the location is reported: {m}");
            }
            other => panic!("{other:?}"),
        }
        match run_case(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        }) {
            Outcome::Failure(Failure::Hang {
                finished: false, ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
