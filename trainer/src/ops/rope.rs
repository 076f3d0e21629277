//! RoPE backward. Each pair of dimensions is rotated by its angle, an orthogonal map, so the gradient is rotated
//! back: by the same angles with their sines negated.

use hearth_kernel::ops::rope::Rope;

use super::OpError;

/// Turns `d_out` (heads of `head_dim`, all rotated by `table` from [`Rope::angles`]) into the gradient with respect
/// to the rotation's input, in place.
pub fn rope_backward(rope: &Rope, d_out: &mut [f32], head_dim: usize, table: &[f32]) -> Result<(), OpError> {
    let inverse: Vec<f32> = table.chunks_exact(2).flat_map(|cs| [cs[0], -cs[1]]).collect();
    rope.apply(d_out, head_dim, &inverse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Rng, assert_gradient, project};
    use hearth_kernel::ops::rope::RopeStyle;

    #[test]
    fn matches_finite_differences_in_both_layouts() {
        let mut rng = Rng(2);
        for style in [RopeStyle::Normal, RopeStyle::NeoX] {
            // A partial rotation (12 of 16 dimensions) checks that the rest passes straight through.
            let rope = Rope {
                n_rot: 12,
                base: 10000.0,
                freq_scale: 1.0,
                style,
            };
            let (heads, head_dim, pos) = (3, 16, 37);
            let mut table = vec![0.0; rope.n_rot];
            rope.angles(pos, &mut table).unwrap();
            let x = rng.vec(heads * head_dim, 1.0);
            let g = rng.vec(x.len(), 1.0);
            let mut dx = g.clone();
            rope_backward(&rope, &mut dx, head_dim, &table).unwrap();
            assert_gradient("rope dx", &x, &dx, 1e-2, 1e-3, |x| {
                let mut y = x.to_vec();
                rope.apply(&mut y, head_dim, &table).unwrap();
                project(&y, &g)
            });
        }
    }
}
