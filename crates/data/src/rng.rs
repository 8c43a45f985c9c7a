//! Stateless, seed-derived randomness: every draw is a pure function of (seed, purpose,
//! indices), so resuming never needs a saved generator state. The generator and the
//! hashing live in radit-util; this module holds radit-data's purpose tags.

pub(crate) use radit_util::rng::{mix, splitmix64};
use radit_util::rng::{SplitMix64, GAMMA};

/// Purpose tags keep the streams for different decisions independent.
pub(crate) const TAG_MARKERS: u64 = 1;
pub(crate) const TAG_MIXTURE: u64 = 2;
pub(crate) const TAG_ORDER: u64 = 3;
pub(crate) const TAG_HOLDOUT: u64 = 4;

/// The generator for a derived seed (usually from [`mix`]).
///
/// Started one increment past `seed` because radit-data's streams always have been (its
/// old generator hashed `state + GAMMA` after advancing the state: the standard stream
/// shifted by one draw), so sampler order, mixtures, corpus pairs and holdout splits stay
/// bit-identical, and with them resumed runs.
pub(crate) fn stream(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed.wrapping_add(GAMMA))
}
