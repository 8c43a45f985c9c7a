//! SplitMix64 and the seed derivation built on it.
//!
//! SplitMix64 (Steele, Lea and Flood 2014, with Stafford's "Mix13" output function) is
//! tiny, seedable from any `u64` (0 included), identical on every platform and passes
//! BigCrush: ample for shuffles, samples and test weights. It is not cryptographic.
//!
//! Every seeded stream in radit runs through this file, and resume and determinism tests
//! compare them bit for bit; `tests::pinned_streams` pins the outputs, so any change to the
//! arithmetic here fails loudly instead of silently reshuffling data.

/// The Weyl-sequence increment (2^64 / φ, odd): the generator's state advances by it per draw.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective avalanche mix of one word.
///
/// Exposed for hashes that scramble a word directly (e.g. the HNSW level of a node) rather
/// than draw from a stream.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stateless SplitMix64: the first output of [`SplitMix64::new(x)`](SplitMix64::new).
///
/// A good one-word hash; [`mix`] and radit-data's n-gram hashing are built on it.
pub const fn splitmix64(x: u64) -> u64 {
    mix64(x.wrapping_add(GAMMA))
}

/// Hashes a sequence of words (a seed, a purpose tag, indices) into one well-mixed seed.
///
/// Seeds derived this way make every draw a pure function of its inputs, so a resumed run
/// needs no saved generator state. `mix(&[])` is the fixed initial value.
pub fn mix(parts: &[u64]) -> u64 {
    // The initial value is π's fractional hex digits: any constant works, this one must stay.
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |h, &p| splitmix64(h ^ splitmix64(p)))
}

/// A SplitMix64 generator; `Clone` forks an identical stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with the given seed (any value is fine).
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)` with 53 random bits (every value a multiple of 2^-53).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `(0, 1]` with 53 random bits: safe to take the logarithm of.
    pub fn next_f64_nonzero(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal (Box–Muller from two [`next_f64`](Self::next_f64) draws, the first
    /// clamped away from 0), identical on every platform as far as `ln` and `cos` are.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform in `0..n` without modulo bias (draws above the largest multiple of `n` are
    /// rejected); `n == 0` gives 0 without drawing.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// In `0..n` from exactly one draw (the high word of `draw · n`), biased by less than
    /// `n / 2^64`; `n == 0` gives 0.
    ///
    /// Not the same values as [`below`](Self::below): the bootstrap resampler has always
    /// drawn this way, and switching would move every published interval. Prefer `below`.
    pub fn below_biased(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Shuffles in place (Fisher–Yates, from the back, with [`below`](Self::below)).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed from the seven implementations this module replaced (radit-models'
    /// `SplitMix64` and init normals, radit-data's `SplitMix`, `mix` and `splitmix64`,
    /// radit-eval's bootstrap `below`, radit-docstore's HNSW level hash) before they were
    /// deleted. A failure here means every seeded stream in radit changed.
    #[test]
    fn pinned_streams() {
        let mut r = SplitMix64::new(42);
        let u: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(
            u,
            [
                0xbdd7_3226_2feb_6e95,
                0x28ef_e333_b266_f103,
                0x4752_6757_130f_9f52,
                0x581c_e1ff_0e4a_e394
            ]
        );

        let mut r = SplitMix64::new(42);
        let f: Vec<u64> = (0..3).map(|_| r.next_f64().to_bits()).collect();
        assert_eq!(
            f,
            [
                0x3fe7_bae6_44c5_fd6d,
                0x3fc4_77f1_99d9_3378,
                0x3fd1_d499_d5c4_c3e6
            ]
        );

        // radit-models' init: `next_normal() as f32 * std`.
        let mut r = SplitMix64::new(42);
        let n: Vec<u32> = (0..3).map(|_| (r.next_normal() as f32).to_bits()).collect();
        assert_eq!(n, [0x3ed4_5626, 0xbf64_52a8, 0x3fdd_634e]);

        // radit-eval's bootstrap resampler.
        let mut r = SplitMix64::new(42);
        let b: Vec<u64> = (0..8).map(|_| r.below_biased(10)).collect();
        assert_eq!(b, [7, 1, 2, 3, 0, 8, 2, 8]);

        // radit-data's old `SplitMix::new(s)` stream is `SplitMix64::new(s + GAMMA)`.
        let mut r = SplitMix64::new(42u64.wrapping_add(GAMMA));
        assert_eq!(r.next_u64(), 0x28ef_e333_b266_f103);
        let mut r = SplitMix64::new(42u64.wrapping_add(GAMMA));
        let d: Vec<u64> = (0..8).map(|_| r.below(10)).collect();
        assert_eq!(d, [1, 8, 4, 0, 2, 5, 8, 5]);
        let mut v: Vec<u32> = (0..10).collect();
        SplitMix64::new(42u64.wrapping_add(GAMMA)).shuffle(&mut v);
        assert_eq!(v, [2, 3, 9, 7, 5, 8, 6, 4, 0, 1]);

        assert_eq!(mix(&[]), 0x243f_6a88_85a3_08d3);
        assert_eq!(mix(&[42, 3, 7]), 0x00b1_01b1_8fb1_9f14);
        assert_eq!(splitmix64(42), 0xbdd7_3226_2feb_6e95);
        assert_eq!(mix64(42 ^ 5u64.wrapping_mul(GAMMA)), 0x3a37_9037_1a46_687b);
    }

    #[test]
    fn published_sequence_for_seed_zero() {
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn ranges_and_edge_cases() {
        let mut r = SplitMix64::new(3);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[r.below(3) as usize] += 1;
            assert!((0.0..1.0).contains(&r.next_f64()));
            let x = r.next_f64_nonzero();
            assert!(x > 0.0 && x <= 1.0);
            assert!(r.below_biased(7) < 7);
            assert!(r.next_normal().is_finite());
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let before = r.clone();
        assert_eq!(r.below(0), 0);
        assert_eq!(r, before, "below(0) must not draw");
        assert_eq!(r.below(1), 0);
        assert_eq!(r.below_biased(0), 0);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let perm = |seed| {
            let mut v: Vec<usize> = (0..1000).collect();
            SplitMix64::new(seed).shuffle(&mut v);
            v
        };
        assert_eq!(perm(7), perm(7));
        assert_ne!(perm(7), perm(8));
        let mut sorted = perm(7);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        SplitMix64::new(1).shuffle(&mut empty);
    }
}
