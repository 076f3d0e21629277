//! Rotary position embedding. Each pair of dimensions `(a, b)` of a head is rotated by `pos · θ_i`, with
//! `θ_i = freq_scale · base^(-2i/n_rot)`. In the `Normal` layout (LLaMA) pairs are adjacent, `(2i, 2i+1)`; in the
//! `NeoX` layout (Qwen2, Gemma) they are `(i, i + n_rot/2)`. Dimensions past `n_rot` are left alone.

use super::{OpError, expect_len};

/// How rotated dimensions are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i + 1)`.
    Normal,
    /// Split halves `(i, i + n_rot/2)`.
    NeoX,
}

/// RoPE parameters of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// Dimensions rotated at the start of each head (even, at most the head size).
    pub n_rot: usize,
    /// Frequency base.
    pub base: f32,
    /// Linear position scaling (1 for none).
    pub freq_scale: f32,
    /// Pairing of dimensions.
    pub style: RopeStyle,
}

impl Rope {
    /// Writes `(cos, sin)` of each pair's angle at position `pos` into `table[..n_rot]` as `[cos0, sin0, cos1, …]`.
    /// Angles are built by repeated multiplication, as the reference does, so they match it to the bit.
    pub fn angles(&self, pos: usize, table: &mut [f32]) -> Result<(), OpError> {
        expect_len("rope table", table.len(), self.n_rot)?;
        let theta_scale = libm::powf(self.base, -2.0 / self.n_rot as f32);
        let mut theta = pos as f32;
        for pair in table.chunks_exact_mut(2) {
            let angle = self.freq_scale * theta;
            pair[0] = libm::cosf(angle);
            pair[1] = libm::sinf(angle);
            theta *= theta_scale;
        }
        Ok(())
    }

    /// Rotates every `head_dim`-sized head in `x` by the angles in `table` (from [`Rope::angles`]).
    pub fn apply(&self, x: &mut [f32], head_dim: usize, table: &[f32]) -> Result<(), OpError> {
        expect_len("rope table", table.len(), self.n_rot)?;
        if head_dim < self.n_rot || head_dim == 0 || !x.len().is_multiple_of(head_dim) {
            return Err(OpError::Shape {
                what: "rope input",
                expected: head_dim,
                got: x.len(),
            });
        }
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for (i, cs) in table.chunks_exact(2).enumerate() {
                let (a, b) = match self.style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::NeoX => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cs[0] - x1 * cs[1];
                head[b] = x0 * cs[1] + x1 * cs[0];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_preserves_pair_norms_and_position_zero_is_identity() {
        for style in [RopeStyle::Normal, RopeStyle::NeoX] {
            let rope = Rope {
                n_rot: 8,
                base: 10000.0,
                freq_scale: 1.0,
                style,
            };
            let mut table = [0f32; 8];
            rope.angles(0, &mut table).unwrap();
            let mut x: alloc::vec::Vec<f32> = (0..20).map(|i| i as f32 * 0.1 - 1.0).collect();
            let original = x.clone();
            rope.apply(&mut x, 10, &table).unwrap();
            assert_eq!(x, original);
            rope.angles(17, &mut table).unwrap();
            rope.apply(&mut x, 10, &table).unwrap();
            // The last 2 dims of each 10-dim head are not rotated.
            assert_eq!(&x[8..10], &original[8..10]);
            let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
            assert!((norm(&x[..10]) - norm(&original[..10])).abs() < 1e-4);
            assert_ne!(&x[..8], &original[..8]);
        }
    }

    #[test]
    fn neox_pairs_halves_and_normal_pairs_neighbours() {
        let table = [0.0f32, 1.0, 1.0, 0.0]; // pair 0 rotated by 90°, pair 1 untouched
        let mut normal = [1.0f32, 2.0, 3.0, 4.0];
        Rope {
            n_rot: 4,
            base: 1.0,
            freq_scale: 1.0,
            style: RopeStyle::Normal,
        }
        .apply(&mut normal, 4, &table)
        .unwrap();
        assert_eq!(normal, [-2.0, 1.0, 3.0, 4.0]);
        let mut neox = [1.0f32, 2.0, 3.0, 4.0];
        Rope {
            n_rot: 4,
            base: 1.0,
            freq_scale: 1.0,
            style: RopeStyle::NeoX,
        }
        .apply(&mut neox, 4, &table)
        .unwrap();
        assert_eq!(neox, [-3.0, 2.0, 1.0, 4.0]);
    }
}
