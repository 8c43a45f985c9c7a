//! The framework-independent parts of radit's training runtime.
//!
//! - [`recipe`]: TOML recipes with `--set a.b=value` overrides and errors that name the key.
//! - [`checkpoint`]: atomic, checksummed checkpoint directories with retention and
//!   newest-valid lookup for `--resume`.
//! - [`schedule`]: learning-rate schedules as pure functions of the step.
//! - [`metrics`]: TensorBoard, JSONL and console sinks behind a logger that never fails.
//! - [`signals`]: SIGTERM/SIGINT as a flag polled by the loop.
//! - [`rng`]: a seedable RNG whose full state fits in a checkpoint.
//! - [`guard`]: stop at the first non-finite loss, naming the last good checkpoint.
//!
//! Nothing here depends on burn, so this crate builds in seconds and is tested on its own;
//! the optimizer, the loop and the trainers build on it.

#![deny(missing_docs)]

pub mod checkpoint;
mod fsutil;
pub mod guard;
pub mod metrics;
pub mod recipe;
pub mod rng;
pub mod schedule;
pub mod signals;
