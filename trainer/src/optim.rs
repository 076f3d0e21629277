//! AdamW with decoupled weight decay, a warmup + cosine learning-rate schedule, and gradient-norm clipping.

use hearth_runtime::lora::LoraAdapter;

/// The learning rate at each optimizer step: linear warmup from 0 over `warmup` steps, then a cosine from `peak` down
/// to `peak · floor` at step `total`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Rate at the end of warmup.
    pub peak: f32,
    /// Warmup steps.
    pub warmup: u64,
    /// Steps of the whole run.
    pub total: u64,
    /// Final rate as a fraction of `peak`.
    pub floor: f32,
}

impl Schedule {
    /// The rate of step `step` (counted from 0).
    pub fn rate(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.peak * (step + 1) as f32 / self.warmup as f32;
        }
        let decay_steps = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f32 / decay_steps as f32).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
        self.peak * (self.floor + (1.0 - self.floor) * cosine)
    }
}

/// Scales `grads` down so their global L2 norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_gradients(grads: &mut LoraAdapter, max_norm: f32) -> f32 {
    let norm = grads
        .tensors()
        .flatten()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum::<f64>()
        .sqrt() as f32;
    if norm > max_norm {
        let factor = max_norm / norm;
        grads.tensors_mut().flatten().for_each(|g| *g *= factor);
    }
    norm
}

/// AdamW state: the first and second moments of every trainable value, and the step count for bias correction.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the second moment's root.
    pub eps: f32,
    /// Decoupled weight decay per unit of learning rate.
    pub weight_decay: f32,
    /// Steps taken.
    pub steps: u64,
    /// First moments, shaped like the adapter.
    pub m: LoraAdapter,
    /// Second moments, shaped like the adapter.
    pub v: LoraAdapter,
}

impl AdamW {
    /// Fresh state for `adapter`, with the usual betas (0.9, 0.999), eps 1e-8 and the given weight decay.
    pub fn new(adapter: &LoraAdapter, weight_decay: f32) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            steps: 0,
            m: adapter.zeros_like(),
            v: adapter.zeros_like(),
        }
    }

    /// One update of `params` from `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut LoraAdapter, grads: &LoraAdapter, lr: f32) {
        self.steps += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(self.steps as i32);
        let correction2 = 1.0 - b2.powi(self.steps as i32);
        let decay = 1.0 - lr * self.weight_decay;
        let tensors = params
            .tensors_mut()
            .zip(grads.tensors())
            .zip(self.m.tensors_mut())
            .zip(self.v.tensors_mut());
        for (((p, g), m), v) in tensors {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let update = (*m / correction1) / ((*v / correction2).sqrt() + self.eps);
                *p = *p * decay - lr * update;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_runtime::lora::{LayerLora, LoraPair};

    fn adapter(a: &[f32], b: &[f32]) -> LoraAdapter {
        let mut layer = LayerLora::default();
        layer.0[0] = Some(LoraPair {
            n_in: a.len(),
            n_out: b.len(),
            rank: 1,
            a: a.to_vec(),
            b: b.to_vec(),
        });
        LoraAdapter {
            alpha: 1.0,
            layers: vec![layer],
        }
    }

    #[test]
    fn schedule_warms_up_linearly_then_follows_a_cosine_to_its_floor() {
        let s = Schedule {
            peak: 1e-3,
            warmup: 4,
            total: 104,
            floor: 0.1,
        };
        let close = |a: f32, b: f32| (a - b).abs() < 1e-9;
        assert!(close(s.rate(0), 2.5e-4) && close(s.rate(3), 1e-3));
        assert!(close(s.rate(4), 1e-3));
        // Halfway through the decay the cosine is at its midpoint.
        assert!(close(s.rate(54), 1e-3 * (0.1 + 0.9 * 0.5)));
        assert!(close(s.rate(104), 1e-4) && close(s.rate(500), 1e-4));
        assert!((4..104).all(|t| s.rate(t + 1) <= s.rate(t)));
    }

    #[test]
    fn clipping_scales_the_global_norm_down_only() {
        let mut g = adapter(&[3.0, 0.0], &[4.0]);
        assert_eq!(clip_gradients(&mut g, 10.0), 5.0);
        assert_eq!(g, adapter(&[3.0, 0.0], &[4.0]));
        assert_eq!(clip_gradients(&mut g, 1.0), 5.0);
        assert_eq!(g, adapter(&[0.6, 0.0], &[0.8]));
    }

    #[test]
    fn adamw_moves_each_value_against_its_gradient_by_about_the_rate() {
        let mut params = adapter(&[1.0, -2.0], &[0.5]);
        let grads = adapter(&[0.3, -40.0], &[0.0]);
        let mut opt = AdamW::new(&params, 0.1);
        opt.step(&mut params, &grads, 0.01);
        // Bias-corrected, the first step is lr · sign(g) whatever |g| is, after decoupled decay `p · (1 − lr·wd)`.
        let expected = adapter(&[1.0 * 0.999 - 0.01, -2.0 * 0.999 + 0.01], &[0.5 * 0.999]);
        for (p, e) in params.tensors().flatten().zip(expected.tensors().flatten()) {
            assert!((p - e).abs() < 1e-6, "{p} vs {e}");
        }
        // A gradient that keeps its sign keeps the step near the rate; the moments remember the first one.
        opt.step(&mut params, &grads, 0.01);
        assert!((params.layers[0].0[0].as_ref().unwrap().a[0] - (0.989 * 0.999 - 0.01)).abs() < 1e-5);
        assert_eq!(opt.steps, 2);
    }
}
