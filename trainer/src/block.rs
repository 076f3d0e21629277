//! One transformer block for training: the runtime's block (same weights, same kernel ops, positions `0..n_tokens`
//! of one sequence) with LoRA adapters on its projections, a forward that can keep what the backward needs, and the
//! backward itself.
//!
//! Forward, as the runtime computes it (optional pieces in brackets):
//! ```text
//! h1 = norm(x)                      q, k, v = h1·Wᵀ (+ LoRA) [+ bias]   [q, k = head_norm(q, k)]   q, k = rope(q, k)
//! a = attention(q, k, v)            o = a·Woᵀ (+ LoRA) [post_norm]      m = x + o
//! h2 = norm(m)                      g, u = h2·Wᵀ (+ LoRA)               f = act(g)·u
//! d = f·Wdᵀ (+ LoRA) [post_norm]    y = m + d
//! ```
//! and the backward walks it in reverse. Gradient checkpointing keeps only each block's input `x` and reruns
//! [`Block::forward`] with saving on just before the block's backward.

use hearth_kernel::ops::attention::AttentionParams;
use hearth_kernel::ops::matmul::MatmulScratch;
use hearth_kernel::ops::{act, norm, try_for_each_row_group, zeroed};
use hearth_kernel::simd::Isa;
use hearth_runtime::lora::LayerLora;
use hearth_runtime::model::{Arch, Config, Layer, LayerAttention, Projection};

use crate::ops::act::{geglu_backward, geglu_smooth, swiglu_backward};
use crate::ops::attention::{attention_backward, attention_forward};
use crate::ops::linear::{Frozen, Requantized, frozen_linear_backward};
use crate::ops::lora::lora_backward;
use crate::ops::norm::rms_norm_backward;
use crate::ops::rope::invert_angles;
use crate::ops::{OpError, expect_len};

/// The activations [`Block::backward`] needs, as [`Block::forward`] saw them.
#[derive(Debug)]
pub struct Saved {
    h1: Vec<f32>,
    /// Queries and keys before the head norms (Gemma 3 only).
    q_raw: Option<Vec<f32>>,
    k_raw: Option<Vec<f32>>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    attn: Vec<f32>,
    /// The attention output before its post-norm (Gemma 3 only).
    o_raw: Option<Vec<f32>>,
    mid: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    /// The feed-forward output before its post-norm (Gemma 3 only).
    down_raw: Option<Vec<f32>>,
    /// Each adapter's `x·Aᵀ`.
    lora: [Option<Vec<f32>>; 7],
}

/// A block of a model, ready to train adapters on.
#[derive(Clone, Copy, Debug)]
pub struct Block<'l, 'a> {
    /// Its weights.
    pub layer: &'l Layer<'a>,
    /// The model's shapes.
    pub config: &'l Config,
    /// Its attention settings.
    pub attention: &'l LayerAttention,
    /// Its projections' copies ([`requantize`]).
    pub requantized: &'l LayerRequantized,
    /// The kernels it runs on.
    pub isa: Isa,
}

/// Runs `f(t, row)` on each `width`-element row of `x` (token `t`'s), tokens spread across threads.
fn for_each_token(
    x: &mut [f32],
    width: usize,
    f: impl Fn(usize, &mut [f32]) -> Result<(), OpError> + Sync + Send,
) -> Result<(), OpError> {
    if width == 0 {
        return Ok(());
    }
    try_for_each_row_group(x, width, |first, rows| {
        for (t, row) in (first..).zip(rows.chunks_exact_mut(width)) {
            f(t, row)?;
        }
        Ok(())
    })
}

/// A block's projections' copies, by [`Projection`].
pub type LayerRequantized = [Requantized; Projection::ALL.len()];

/// The copies of `layer`'s projections that training on `isa` multiplies ([`Requantized::of`]).
pub fn requantize(layer: &Layer<'_>, isa: Isa) -> Result<LayerRequantized, OpError> {
    let mut out = LayerRequantized::default();
    for projection in Projection::ALL {
        out[projection as usize] = Requantized::of(projection.weights(layer), isa)?;
    }
    Ok(out)
}

fn norm_backward(x: &[f32], weight: &[f32], eps: f32, d_out: &[f32]) -> Result<Vec<f32>, OpError> {
    let mut dx = zeroed(x.len());
    rms_norm_backward(x, weight, eps, d_out, &mut dx)?;
    Ok(dx)
}

impl<'a> Block<'_, 'a> {
    /// `projection`'s weights with their copies.
    fn frozen(&self, projection: Projection) -> Frozen<'_, 'a> {
        self.requantized[projection as usize].frozen(projection.weights(self.layer))
    }

    fn attention_params(&self) -> AttentionParams {
        let c = self.config;
        AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale,
            window: self.attention.window,
            softcap: None,
        }
    }

    /// RoPE angles of every position `0..n_tokens`, `[n_tokens, n_rot]`.
    fn angles(&self, n_tokens: usize) -> Result<Vec<f32>, OpError> {
        let rope = &self.attention.rope;
        let mut table = zeroed(n_tokens * rope.n_rot);
        for_each_token(&mut table, rope.n_rot, |pos, row| rope.angles(pos, row))?;
        Ok(table)
    }

    /// Rotates the queries `q: [n_tokens, q_dim]` and keys `k: [n_tokens, kv_dim]` of each position by its row of
    /// `table` ([`Block::angles`], or their inverses in the backward).
    fn rotate(&self, q: &mut [f32], k: &mut [f32], table: &[f32]) -> Result<(), OpError> {
        let (rope, hd) = (&self.attention.rope, self.config.head_dim);
        let n_rot = rope.n_rot;
        for (x, width) in [(q, self.config.q_dim()), (k, self.config.kv_dim())] {
            for_each_token(x, width, |t, row| rope.apply(row, hd, &table[t * n_rot..][..n_rot]))?;
        }
        Ok(())
    }

    /// Runs the block on `x: [n_tokens, dim]` (positions `0..n_tokens`) with `adapters` (each pair's update scaled
    /// by `alpha / rank`), returning its output and, when `save`, what the backward needs.
    pub fn forward(
        &self,
        adapters: &LayerLora,
        alpha: f32,
        x: &[f32],
        save: bool,
        scratch: &mut MatmulScratch,
    ) -> Result<(Vec<f32>, Option<Saved>), OpError> {
        let (c, layer, isa) = (self.config, self.layer, self.isa);
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
        if dim == 0 || !x.len().is_multiple_of(dim) {
            return Err(OpError::Shape {
                what: "block input",
                expected: dim,
                got: x.len(),
            });
        }
        let n = x.len() / dim;
        let mut lora: [Option<Vec<f32>>; 7] = Default::default();
        // `out = input·Wᵀ + scale·LoRA(input)` through `projection`, keeping the adapter's `input·Aᵀ`.
        let mut run = |projection: Projection, input: &[f32], out: &mut [f32]| -> Result<(), OpError> {
            self.frozen(projection).forward(isa, input, out, scratch)?;
            lora[projection as usize] = adapters
                .get(projection)
                .map(|l| l.forward(isa, l.scale(alpha), input, out))
                .transpose()?;
            Ok(())
        };

        let mut h1 = zeroed(n * dim);
        norm::rms_norm_into(x, &layer.attn_norm, c.eps, &mut h1)?;
        let (mut q, mut k, mut v) = (zeroed(n * q_dim), zeroed(n * kv_dim), zeroed(n * kv_dim));
        run(Projection::Q, &h1, &mut q)?;
        run(Projection::K, &h1, &mut k)?;
        run(Projection::V, &h1, &mut v)?;
        for (buf, bias) in [
            (&mut q, &layer.q_bias),
            (&mut k, &layer.k_bias),
            (&mut v, &layer.v_bias),
        ] {
            if let Some(bias) = bias {
                act::add_to_rows(buf, bias)?;
            }
        }
        let (mut q_raw, mut k_raw) = (None, None);
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q_raw = Some(q.clone());
            k_raw = Some(k.clone());
            norm::rms_norm(&mut q, qn, c.eps)?;
            norm::rms_norm(&mut k, kn, c.eps)?;
        }
        self.rotate(&mut q, &mut k, &self.angles(n)?)?;
        let mut attn = zeroed(n * q_dim);
        let probs = attention_forward(isa, &self.attention_params(), &q, &k, &v, &mut attn)?;
        let mut o = zeroed(n * dim);
        run(Projection::O, &attn, &mut o)?;
        let o_raw = match &layer.post_attn_norm {
            Some(post) => {
                let raw = o.clone();
                norm::rms_norm(&mut o, post, c.eps)?;
                Some(raw)
            }
            None => None,
        };
        act::add_assign(&mut o, x)?;
        let mid = o;

        let mut h2 = zeroed(n * dim);
        norm::rms_norm_into(&mid, &layer.ffn_norm, c.eps, &mut h2)?;
        let (mut gate, mut up) = (zeroed(n * c.ff_dim), zeroed(n * c.ff_dim));
        run(Projection::Gate, &h2, &mut gate)?;
        run(Projection::Up, &h2, &mut up)?;
        let mut activated = gate.clone();
        if c.arch == Arch::Gemma3 {
            geglu_smooth(&mut activated, &up)?;
        } else {
            act::swiglu(isa, &mut activated, &up)?;
        }
        let mut down = zeroed(n * dim);
        run(Projection::Down, &activated, &mut down)?;
        let down_raw = match &layer.post_ffn_norm {
            Some(post) => {
                let raw = down.clone();
                norm::rms_norm(&mut down, post, c.eps)?;
                Some(raw)
            }
            None => None,
        };
        act::add_assign(&mut down, &mid)?;
        let y = down;
        let saved = save.then_some(Saved {
            h1,
            q_raw,
            k_raw,
            q,
            k,
            v,
            probs,
            attn,
            o_raw,
            mid,
            h2,
            gate,
            up,
            act: activated,
            down_raw,
            lora,
        });
        Ok((y, saved))
    }

    /// The gradient with respect to the block's input `x`, from `d_out` (the output's), adding the adapters'
    /// gradients to `grads`. `saved` comes from [`Block::forward`] on the same `x`.
    #[allow(clippy::too_many_arguments)] // The adapters and their alpha, the input and what its forward saved, the output's gradient, the adapters' gradients and the matmuls' buffers.
    pub fn backward(
        &self,
        adapters: &LayerLora,
        alpha: f32,
        x: &[f32],
        saved: &Saved,
        d_out: &[f32],
        grads: &mut LayerLora,
        scratch: &mut MatmulScratch,
    ) -> Result<Vec<f32>, OpError> {
        let (c, layer, isa) = (self.config, self.layer, self.isa);
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
        expect_len("block output gradient", d_out.len(), x.len())?;
        let n = x.len() / dim;
        // Adds the gradient through `projection`'s weights and adapter (whose input was `input`) to `dx`.
        let mut through = |projection: Projection, input: &[f32], d: &[f32], dx: &mut [f32]| -> Result<(), OpError> {
            let i = projection as usize;
            frozen_linear_backward(isa, self.frozen(projection), d, dx, scratch)?;
            if let (Some(lora), Some(grad), Some(ax)) = (&adapters.0[i], &mut grads.0[i], &saved.lora[i]) {
                lora_backward(isa, lora, lora.scale(alpha), input, ax, d, grad, dx)?;
            }
            Ok(())
        };

        // Feed-forward branch.
        let d_down_normed;
        let d_down = match (&layer.post_ffn_norm, &saved.down_raw) {
            (Some(post), Some(raw)) => {
                d_down_normed = norm_backward(raw, post, c.eps, d_out)?;
                &d_down_normed
            }
            _ => d_out,
        };
        let mut d_act = zeroed(n * c.ff_dim);
        through(Projection::Down, &saved.act, d_down, &mut d_act)?;
        let (mut d_gate, mut d_up) = (zeroed(d_act.len()), zeroed(d_act.len()));
        if c.arch == Arch::Gemma3 {
            geglu_backward(&saved.gate, &saved.up, &d_act, &mut d_gate, &mut d_up)?;
        } else {
            swiglu_backward(&saved.gate, &saved.up, &d_act, &mut d_gate, &mut d_up)?;
        }
        let mut d_h2 = zeroed(n * dim);
        through(Projection::Gate, &saved.h2, &d_gate, &mut d_h2)?;
        through(Projection::Up, &saved.h2, &d_up, &mut d_h2)?;
        let mut d_mid = norm_backward(&saved.mid, &layer.ffn_norm, c.eps, &d_h2)?;
        act::add_assign(&mut d_mid, d_out)?;

        // Attention branch.
        let d_o_normed;
        let d_o = match (&layer.post_attn_norm, &saved.o_raw) {
            (Some(post), Some(raw)) => {
                d_o_normed = norm_backward(raw, post, c.eps, &d_mid)?;
                &d_o_normed
            }
            _ => &d_mid,
        };
        let mut d_attn = zeroed(n * q_dim);
        through(Projection::O, &saved.attn, d_o, &mut d_attn)?;
        let (mut dq, mut dk, mut dv) = (zeroed(n * q_dim), zeroed(n * kv_dim), zeroed(n * kv_dim));
        let params = self.attention_params();
        attention_backward(
            isa,
            &params,
            &saved.q,
            &saved.k,
            &saved.v,
            &saved.probs,
            &d_attn,
            &mut dq,
            &mut dk,
            &mut dv,
        )?;
        let mut inverse = self.angles(n)?;
        invert_angles(&mut inverse);
        self.rotate(&mut dq, &mut dk, &inverse)?;
        if let (Some(qn), Some(kn), Some(q_raw), Some(k_raw)) =
            (&layer.q_norm, &layer.k_norm, &saved.q_raw, &saved.k_raw)
        {
            dq = norm_backward(q_raw, qn, c.eps, &dq)?;
            dk = norm_backward(k_raw, kn, c.eps, &dk)?;
        }
        let mut d_h1 = zeroed(n * dim);
        through(Projection::Q, &saved.h1, &dq, &mut d_h1)?;
        through(Projection::K, &saved.h1, &dk, &mut d_h1)?;
        through(Projection::V, &saved.h1, &dv, &mut d_h1)?;
        let mut dx = norm_backward(x, &layer.attn_norm, c.eps, &d_h1)?;
        act::add_assign(&mut dx, &d_mid)?;
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{Quantized, Rng, assert_gradient_every, project as projected};
    use crate::ops::lora::fresh_pair;
    use hearth_kernel::GgmlType;
    use hearth_kernel::ops::matmul::Weights;
    use hearth_kernel::ops::rope::{Rope, RopeStyle};
    use hearth_runtime::lora::LoraPair;

    /// Shapes of a small block.
    struct Shape {
        dim: usize,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        ff_dim: usize,
    }

    /// How a test block stores its weights.
    #[derive(Clone, Copy)]
    enum Storage {
        /// Quantized to this type.
        Quantized(GgmlType),
        /// Quantized to this type, then dequantized into F32 weights (the same values, computed in float).
        Dequantized(GgmlType),
    }

    /// Runs `check(block, adapters)` on a block of random weights shaped like `arch`'s (the same `seed` draws the same
    /// values whatever the storage).
    fn with_block<R>(
        arch: Arch,
        storage: Storage,
        s: &Shape,
        seed: u64,
        check: impl FnOnce(&Block<'_, '_>, &LayerLora) -> R,
    ) -> R {
        let mut rng = Rng(seed);
        let (q_dim, kv_dim) = (s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim);
        let shapes = [
            (s.dim, q_dim),
            (s.dim, kv_dim),
            (s.dim, kv_dim),
            (q_dim, s.dim),
            (s.dim, s.ff_dim),
            (s.dim, s.ff_dim),
            (s.ff_dim, s.dim),
        ];
        let dtype = match storage {
            Storage::Quantized(dtype) => dtype,
            Storage::Dequantized(_) => GgmlType::F32,
        };
        let encoded: Vec<Quantized> = shapes
            .iter()
            .map(|&(n_in, n_out)| {
                let values = rng.vec(n_in * n_out, 1.0 / (n_in as f32).sqrt());
                match storage {
                    Storage::Quantized(dtype) => Quantized::new(dtype, &values),
                    Storage::Dequantized(dtype) => {
                        let mut float = vec![0.0; values.len()];
                        hearth_kernel::quant::dequantize(dtype, Quantized::new(dtype, &values).bytes(), &mut float)
                            .unwrap();
                        Quantized::new(GgmlType::F32, &float)
                    }
                }
            })
            .collect();
        let w = |i: usize| Weights::new(dtype, shapes[i].0, shapes[i].1, encoded[i].bytes()).unwrap();
        let mut norm = |n: usize| -> Vec<f32> { rng.vec(n, 0.3).iter().map(|v| 1.0 + v).collect() };
        let gemma = arch == Arch::Gemma3;
        let qwen = arch == Arch::Qwen2;
        let layer = Layer {
            attn_norm: norm(s.dim),
            wq: w(0),
            wk: w(1),
            wv: w(2),
            wo: w(3),
            q_bias: qwen.then(|| norm(q_dim)),
            k_bias: qwen.then(|| norm(kv_dim)),
            v_bias: qwen.then(|| norm(kv_dim)),
            q_norm: gemma.then(|| norm(s.head_dim)),
            k_norm: gemma.then(|| norm(s.head_dim)),
            post_attn_norm: gemma.then(|| norm(s.dim)),
            ffn_norm: norm(s.dim),
            gate: w(4),
            up: w(5),
            down: w(6),
            post_ffn_norm: gemma.then(|| norm(s.dim)),
        };
        let attention = LayerAttention {
            rope: Rope {
                n_rot: s.head_dim,
                base: 10000.0,
                freq_scale: 1.0,
                style: if arch == Arch::Llama {
                    RopeStyle::Normal
                } else {
                    RopeStyle::NeoX
                },
            },
            window: gemma.then_some(3),
        };
        let config = Config {
            arch,
            n_layers: 1,
            dim: s.dim,
            n_heads: s.n_heads,
            n_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
            ff_dim: s.ff_dim,
            eps: 1e-6,
            context_length: 64,
            attn_scale: 1.0 / (s.head_dim as f32).sqrt(),
            layers: vec![attention],
        };
        // Every target adapted, B random (a fresh B of zeros would leave A without a gradient).
        let adapters = LayerLora(Projection::ALL.map(|t| {
            let w = t.weights(&layer);
            let mut lora = fresh_pair(w.n_in, w.n_out, 2, &mut rng);
            lora.b = rng.vec(lora.b.len(), 0.3);
            Some(lora)
        }));
        let requantized = requantize(&layer, Isa::best()).unwrap();
        let block = Block {
            layer: &layer,
            config: &config,
            attention: &config.layers[0],
            requantized: &requantized,
            isa: Isa::best(),
        };
        check(&block, &adapters)
    }

    /// With rank 2, a scale of 1.5.
    const ALPHA: f32 = 3.0;
    const N_TOKENS: usize = 5;

    /// A block input and an output gradient (`∂(Σ y·g)/∂y = g`).
    fn probe(dim: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng(99);
        (rng.vec(N_TOKENS * dim, 1.0), rng.vec(N_TOKENS * dim, 1.0))
    }

    /// The analytic gradients of `Σ y·g`: with respect to the input, and the adapters'.
    fn gradients(block: &Block<'_, '_>, adapters: &LayerLora) -> (Vec<f32>, LayerLora) {
        let (x, g) = probe(block.config.dim);
        let mut scratch = MatmulScratch::default();
        let (_, saved) = block.forward(adapters, ALPHA, &x, true, &mut scratch).unwrap();
        let mut grads = adapters.zeros_like();
        let dx = block
            .backward(adapters, ALPHA, &x, &saved.unwrap(), &g, &mut grads, &mut scratch)
            .unwrap();
        (dx, grads)
    }

    /// Checks the input gradient and every adapter's gradients against finite differences, probing every
    /// `step`-th element.
    fn check_gradients(block: &Block<'_, '_>, adapters: &LayerLora, step: usize, tol: f64) {
        let (x, g) = probe(block.config.dim);
        let (dx, grads) = gradients(block, adapters);
        let alpha = ALPHA;
        let mut scratch = MatmulScratch::default();
        let mut loss = |adapters: &LayerLora, x: &[f32]| {
            let (y, _) = block.forward(adapters, alpha, x, false, &mut scratch).unwrap();
            projected(&y, &g)
        };
        let arch = block.config.arch;
        assert_gradient_every(step, &format!("{arch:?} dx"), &x, &dx, 1e-2, tol, |x| loss(adapters, x));
        for target in Projection::ALL {
            let i = target as usize;
            let (lora, grad) = (adapters.0[i].as_ref().unwrap(), grads.0[i].as_ref().unwrap());
            let with = |lora: LoraPair| {
                let mut adapters = adapters.clone();
                adapters.0[i] = Some(lora);
                adapters
            };
            let name = format!("{arch:?} {} A", target.name());
            assert_gradient_every(step, &name, &lora.a, &grad.a, 1e-2, tol, |a| {
                loss(
                    &with(LoraPair {
                        a: a.to_vec(),
                        ..lora.clone()
                    }),
                    &x,
                )
            });
            let name = format!("{arch:?} {} B", target.name());
            assert_gradient_every(step, &name, &lora.b, &grad.b, 1e-2, tol, |b| {
                loss(
                    &with(LoraPair {
                        b: b.to_vec(),
                        ..lora.clone()
                    }),
                    &x,
                )
            });
        }
    }

    #[test]
    fn each_architectures_block_matches_finite_differences_with_float_weights() {
        let shape = Shape {
            dim: 16,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 4,
            ff_dim: 24,
        };
        for (seed, arch) in [Arch::Llama, Arch::Qwen2, Arch::Gemma3].into_iter().enumerate() {
            with_block(
                arch,
                Storage::Quantized(GgmlType::F32),
                &shape,
                seed as u64,
                |block, adapters| check_gradients(block, adapters, 1, 3e-3),
            );
        }
    }

    /// Asserts `a ≈ b` within `tol` of `b`'s largest magnitude.
    fn assert_close(name: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{name}: shape");
        let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(largest > 0.0, "{name}: all zero");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * largest,
                "{name}[{i}]: {x} vs {y} (largest {largest})"
            );
        }
    }

    /// The kernel's quantized matmul rounds activations to 8 bits, which makes finite differences on a quantized
    /// block meaningless; instead its gradients must match those of the same weights in float (checked above), within
    /// what that rounding moves them (up to 2 % of the largest here).
    #[test]
    fn quantized_weights_give_the_gradients_of_their_float_values() {
        for (dtype, shape) in [
            (
                GgmlType::Q8_0,
                Shape {
                    dim: 32,
                    n_heads: 4,
                    n_kv_heads: 2,
                    head_dim: 8,
                    ff_dim: 64,
                },
            ),
            (
                GgmlType::Q4_K,
                Shape {
                    dim: 256,
                    n_heads: 4,
                    n_kv_heads: 2,
                    head_dim: 64,
                    ff_dim: 256,
                },
            ),
            (
                GgmlType::Q6_K,
                Shape {
                    dim: 256,
                    n_heads: 4,
                    n_kv_heads: 1,
                    head_dim: 64,
                    ff_dim: 256,
                },
            ),
        ] {
            let (dx, grads) = with_block(Arch::Qwen2, Storage::Quantized(dtype), &shape, 7, gradients);
            let (float_dx, float_grads) = with_block(Arch::Qwen2, Storage::Dequantized(dtype), &shape, 7, gradients);
            assert_close(&format!("{dtype:?} dx"), &dx, &float_dx, 5e-2);
            for target in Projection::ALL {
                let (q, f) = (grads.get(target).unwrap(), float_grads.get(target).unwrap());
                assert_close(&format!("{dtype:?} {} A", target.name()), &q.a, &f.a, 5e-2);
                assert_close(&format!("{dtype:?} {} B", target.name()), &q.b, &f.b, 5e-2);
            }
        }
    }
}
