//! A small, seedable, serializable RNG for data order and dropout seeds.
//!
//! SplitMix64: its whole state is one `u64`, so a checkpoint stores it exactly and a resumed
//! run draws the same numbers an uninterrupted one would. It passes BigCrush and is far more
//! than enough for shuffling and seeding; it is not cryptographic.

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"sm64";
/// Length of [`Rng::to_bytes`].
pub const RNG_STATE_LEN: usize = 12;

/// Bytes that are not an [`Rng`] state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RngError {
    /// Wrong length.
    #[error("RNG state must be {RNG_STATE_LEN} bytes, got {0}")]
    Length(usize),
    /// Wrong magic prefix (not written by [`Rng::to_bytes`]).
    #[error("RNG state does not start with the `sm64` tag")]
    Magic,
}

/// SplitMix64 generator; `Clone` forks an identical stream, [`Rng::derive`] an independent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included, is fine).
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The full state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// A generator continuing from a saved [`Rng::state`].
    pub fn from_state(state: u64) -> Self {
        Rng { state }
    }

    /// An independent generator for sub-stream `stream` (an epoch, a dataset, a worker),
    /// a pure function of this generator's state: deriving does not advance `self`.
    pub fn derive(&self, stream: u64) -> Rng {
        Rng::new(mix(self.state ^ mix(stream.wrapping_add(GAMMA))))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` without modulo bias (Lemire's method); `n == 0` gives 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }

    /// The state as bytes: the tag `sm64` then the state, little-endian.
    pub fn to_bytes(&self) -> [u8; RNG_STATE_LEN] {
        let mut out = [0u8; RNG_STATE_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4..].copy_from_slice(&self.state.to_le_bytes());
        out
    }

    /// Restores a generator from [`Rng::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Rng, RngError> {
        if bytes.len() != RNG_STATE_LEN {
            return Err(RngError::Length(bytes.len()));
        }
        if &bytes[..4] != MAGIC {
            return Err(RngError::Magic);
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&bytes[4..]);
        Ok(Rng::from_state(u64::from_le_bytes(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // The published SplitMix64 sequence for seed 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn resume_continues_the_same_sequence() {
        let mut a = Rng::new(1234);
        let head: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let saved = a.to_bytes();
        let tail_a: Vec<u64> = (0..1000).map(|_| a.next_u64()).collect();
        let mut b = Rng::from_bytes(&saved).unwrap();
        let tail_b: Vec<u64> = (0..1000).map(|_| b.next_u64()).collect();
        assert_eq!(tail_a, tail_b);
        let mut c = Rng::new(1234);
        let head_c: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(head, head_c);
        let json = serde_json::to_string(&c).unwrap();
        let d: Rng = serde_json::from_str(&json).unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn shuffle_is_deterministic_and_a_permutation() {
        let p1 = Rng::new(7).permutation(1000);
        let p2 = Rng::new(7).permutation(1000);
        assert_eq!(p1, p2);
        assert_ne!(p1, Rng::new(8).permutation(1000));
        let mut sorted = p1.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn derive_streams_differ_and_do_not_advance() {
        let r = Rng::new(42);
        let (mut s0, mut s1) = (r.derive(0), r.derive(1));
        assert_ne!(s0.next_u64(), s1.next_u64());
        assert_eq!(r, Rng::new(42));
        assert_eq!(r.derive(5), r.derive(5));
    }

    #[test]
    fn below_and_f64_ranges() {
        let mut r = Rng::new(3);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[r.below(3) as usize] += 1;
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn bad_bytes() {
        assert_eq!(Rng::from_bytes(&[0; 3]), Err(RngError::Length(3)));
        assert_eq!(Rng::from_bytes(&[0; 12]), Err(RngError::Magic));
    }
}
