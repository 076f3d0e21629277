//! RoPE backward. Each pair of dimensions is rotated by its angle, an orthogonal map, so the gradient is rotated
//! back: by the same angles with their sines negated.

/// Turns a table of rotations (`[cos, sin]` pairs from [`Rope::angles`](hearth_kernel::ops::rope::Rope::angles), of
/// any number of positions) into their inverses, in place: [`Rope::apply`](hearth_kernel::ops::rope::Rope::apply)
/// with the inverses turns the gradient of a rotation's output into that of its input.
pub fn invert_angles(table: &mut [f32]) {
    for pair in table.chunks_exact_mut(2) {
        pair[1] = -pair[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Rng, assert_gradient, project};
    use hearth_kernel::ops::rope::{Rope, RopeStyle};

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
            let (mut dx, mut inverse) = (g.clone(), table.clone());
            invert_angles(&mut inverse);
            rope.apply(&mut dx, head_dim, &inverse).unwrap();
            assert_gradient("rope dx", &x, &dx, 1e-2, 1e-3, |x| {
                let mut y = x.to_vec();
                rope.apply(&mut y, head_dim, &table).unwrap();
                project(&y, &g)
            });
        }
    }
}
