//! [`SplitMix64`]: the one small, seedable, deterministic generator of the workspace.
//!
//! Fault injection (testkit's stores, transports and simulation plans, the replica's
//! faulty shards) draws from it, so a seed printed by a failing test replays the same
//! faults. It lives here, in the crate every other one depends on, and is not `rand`:
//! `rand`'s seedable generators (`StdRng`, `SmallRng`) may change their streams between
//! versions and platforms, which would silently change what a recorded seed replays.

/// The golden-ratio increment of SplitMix64's state.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64 (Steele, Lea and Flood, 2014).
///
/// Every seed, zero included, gives a good stream, and the same seed always gives the
/// same stream on every platform and version. Each draw is a few arithmetic
/// instructions on a 64-bit state. Not for cryptography.
///
/// # Examples
///
/// ```
/// use strata_controller_api::rng::SplitMix64;
///
/// let mut a = SplitMix64::new(7);
/// let mut b = SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// assert!((0.0..1.0).contains(&a.next_f64()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream `seed` fully determines.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform draw from `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A draw from `0..n` (0 when `n` is 0). The modulo bias is below `n / 2^64`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// SplitMix64's finaliser: a bijective, well-spread hash of 64 bits.
///
/// A stateless generator draws the value at stream position `p` of seed `s` as
/// `mix64(s ^ p.wrapping_mul(GOLDEN_GAMMA))`, so it can start anywhere in its stream.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value at `position` of a stateless stream seeded by `seed` (see [`mix64`]).
pub fn mix_at(seed: u64, position: u64) -> u64 {
    mix64(seed ^ position.wrapping_mul(GOLDEN_GAMMA))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_stream() {
        // The first outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64::new(1_234_567);
        let expected = [
            6_457_827_717_110_365_317_u64,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want);
        }
    }

    #[test]
    fn floats_stay_in_the_unit_interval() {
        let mut rng = SplitMix64::new(0);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn below_stays_below_and_zero_is_zero() {
        let mut rng = SplitMix64::new(42);
        assert_eq!(rng.below(0), 0);
        for n in 1..200 {
            assert!(rng.below(n) < n);
        }
    }

    #[test]
    fn the_stateless_stream_at_the_first_positions_is_the_generators() {
        // For seed 0, position p of the stateless stream is the generator's p-th draw.
        let mut rng = SplitMix64::new(0);
        for position in 1..50 {
            assert_eq!(mix_at(0, position), rng.next_u64(), "{position}");
        }
    }
}
