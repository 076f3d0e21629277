//! A LoRA adapter for a whole model: one [`BlockAdapters`] per transformer block, with the rank and alpha that set
//! its scale (`alpha / rank`, as PEFT and llama.cpp apply it).

use hearth_runtime::model::Model;

use crate::block::{BlockAdapters, Target};
use crate::ops::lora::Lora;
use crate::rng::Rng;

/// A model's adapter (also used, with the same shapes, for its gradients and optimizer moments).
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    /// Rank of every pair.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / rank · B·A`.
    pub alpha: f32,
    /// One entry per block, first to last.
    pub blocks: Vec<BlockAdapters>,
}

impl Adapter {
    /// A fresh adapter on `targets` of every block of `model`, initialised as PEFT does (so it starts as exactly
    /// the base model), drawing `A` from `rng`.
    pub fn new(model: &Model<'_>, rank: usize, alpha: f32, targets: &[Target], rng: &mut Rng) -> Self {
        let blocks = model
            .layers()
            .iter()
            .map(|layer| {
                BlockAdapters(Target::ALL.map(|target| {
                    targets.contains(&target).then(|| {
                        let w = target.weights(layer);
                        Lora::new(w.n_in, w.n_out, rank, rng)
                    })
                }))
            })
            .collect();
        Adapter { rank, alpha, blocks }
    }

    /// The factor the low-rank product is multiplied by.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Zeros of the same shapes (gradient accumulators, optimizer moments).
    pub fn zeros_like(&self) -> Self {
        Adapter {
            blocks: self.blocks.iter().map(BlockAdapters::zeros_like).collect(),
            ..*self
        }
    }

    /// Every pair with its block index and target, in block then [`Target::ALL`] order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, Target, &Lora)> {
        self.blocks.iter().enumerate().flat_map(|(block, adapters)| {
            Target::ALL
                .into_iter()
                .filter_map(move |target| adapters.get(target).map(|lora| (block, target, lora)))
        })
    }

    /// Every trainable tensor (each pair's `A`, then its `B`), in [`Adapter::pairs`] order.
    pub fn tensors(&self) -> impl Iterator<Item = &[f32]> {
        self.pairs()
            .flat_map(|(_, _, lora)| [lora.a.as_slice(), lora.b.as_slice()])
    }

    /// [`Adapter::tensors`], mutable.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.blocks
            .iter_mut()
            .flat_map(|adapters| adapters.0.iter_mut().flatten())
            .flat_map(|lora| [lora.a.as_mut_slice(), lora.b.as_mut_slice()])
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.tensors().map(<[f32]>::len).sum()
    }

    /// Sets every value to zero (between accumulated steps).
    pub fn clear(&mut self) {
        self.tensors_mut().for_each(|t| t.fill(0.0));
    }
}
