//! A fresh adapter for a whole model (the adapter type itself, [`LoraAdapter`], is the runtime's: the trainer makes
//! and updates what inference applies and saves).

use hearth_runtime::lora::{LayerLora, LoraAdapter};
use hearth_runtime::model::{Model, Projection};

use crate::ops::lora::fresh_pair;
use crate::rng::Rng;

/// An adapter of rank `rank` on `targets` of every block of `model`, initialised as PEFT does (so it starts as
/// exactly the base model), drawing `A` from `rng`.
pub fn fresh_adapter(model: &Model<'_>, rank: usize, alpha: f32, targets: &[Projection], rng: &mut Rng) -> LoraAdapter {
    let layers = model
        .layers()
        .iter()
        .map(|layer| {
            LayerLora(Projection::ALL.map(|projection| {
                targets.contains(&projection).then(|| {
                    let w = projection.weights(layer);
                    fresh_pair(w.n_in, w.n_out, rank, rng)
                })
            }))
        })
        .collect();
    LoraAdapter { alpha, layers }
}
