//! SplitMix64: a small, well-distributed generator. Training needs reproducibility from a seed (adapter
//! initialisation, data order), not cryptographic strength.

/// The generator's state.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[-bound, bound)`.
    pub fn symmetric(&mut self, bound: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound
    }

    /// `n` values uniform in `[-bound, bound)`.
    pub fn vec(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| self.symmetric(bound)).collect()
    }
}
