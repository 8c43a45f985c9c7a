//! radit's training runtime, shared by every stage.
//!
//! - [`recipe`]: TOML recipes with `--set a.b=value` overrides and errors that name the key.
//! - [`checkpoint`]: atomic, checksummed checkpoint directories with retention and
//!   newest-valid lookup for `--resume`.
//! - [`schedule`]: learning-rate schedules as pure functions of the step.
//! - [`metrics`]: TensorBoard, JSONL and console sinks behind a logger that never fails.
//! - [`signals`]: SIGTERM/SIGINT as a flag polled by the loop.
//! - [`guard`]: stop at the first non-finite loss, naming the last good checkpoint.
//! - [`trainer`]: the loop (optimizer, accumulation, clipping, checkpoints, exact resume,
//!   evaluation) that a stage drives through its [`trainer::Objective`].
//!
//! Only [`trainer`] touches burn; it knows modules and tensors, never a model architecture.
//! Warnings and notices go through `tracing`; the binary installs the subscriber.

#![deny(missing_docs)]

pub mod checkpoint;
pub mod guard;
pub mod metrics;
pub mod optim_state;
pub mod recipe;
pub mod schedule;
pub mod signals;
#[cfg(test)]
mod testlog;
mod time;
pub mod trainer;
