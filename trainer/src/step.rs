//! One example through the whole model: its loss, and the adapter's gradients of it.
//!
//! ```text
//! x₀ = embed(inputs) [· √dim]   x_{l+1} = block_l(x_l)   h = norm(x_L)   loss = CE(h·headᵀ, targets)
//! ```
//! The embedding table, the norms and the head are frozen, so the backward stops at `x₀`. With gradient
//! checkpointing only the block inputs `x_l` (`[n_tokens, dim]` each) live through the forward, and each block runs
//! again, keeping its activations, just before its backward; without it every block's activations are kept (for
//! Qwen2.5-1.5B at 512 tokens, some 2 GB instead of 90 MB).

use hearth_kernel::ops::matmul::MatmulScratch;
use hearth_kernel::ops::{act, norm, team};
use hearth_kernel::simd::Isa;
use hearth_runtime::Progress;
use hearth_runtime::lora::LoraAdapter;
use hearth_runtime::model::{Arch, Model};
use hearth_runtime::progress::Unit;

use crate::TrainError;
use crate::block::{Block, LayerRequantized, Saved, requantize};
use crate::ops::linear::{Frozen, Requantized};
use crate::ops::loss::{Loss, cross_entropy};
use crate::ops::norm::rms_norm_backward;

/// A training sequence: `inputs[i]` is followed by `targets[i]`, which counts in the loss when it is `Some` (a chat
/// example counts only the assistant's tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Token ids fed to the model.
    pub inputs: Vec<u32>,
    /// The next token after each input, or `None` where it is not learned.
    pub targets: Vec<Option<u32>>,
}

impl Example {
    /// Next-token prediction over `tokens`, learning the tokens at positions where `learned(i)` holds (position 0
    /// is never a target: nothing precedes it).
    pub fn next_tokens(tokens: &[u32], learned: impl Fn(usize) -> bool) -> Self {
        let n = tokens.len().saturating_sub(1);
        Example {
            inputs: tokens[..n].to_vec(),
            targets: (1..=n).map(|i| learned(i).then_some(tokens[i])).collect(),
        }
    }

    /// Tokens that count in the loss.
    pub fn learned_tokens(&self) -> usize {
        self.targets.iter().flatten().count()
    }
}

/// How the forward pass keeps what the backward needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Keep each block's input only; recompute its activations before its backward (about one more forward pass).
    Checkpointed,
    /// Keep every block's activations.
    KeepAll,
}

/// How gradients flow back through the frozen weights (see [`crate::ops::linear`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputGradients {
    /// Through each quantized matrix's transpose requantized to 8 bits, as the kernel's int8 matmul: the forward's
    /// own arithmetic, run backwards. Where the ISA multiplies tiles (AMX), the forward too runs on a copy of each
    /// matrix requantized to 8 bits ([`Requantized`]).
    #[default]
    Int8,
    /// In f32, through the weights exactly as they dequantize (slower; no transposed copy of the weights).
    Float,
}

/// The frozen model an adapter trains on, the transposes of its weights that input gradients read, and the buffers
/// its passes reuse.
#[derive(Debug)]
pub struct Trainee<'m, 'a> {
    base: Base<'m, 'a>,
    scratch: MatmulScratch,
}

/// The frozen part of a [`Trainee`] (borrowed by its blocks while the passes use the scratch).
#[derive(Debug)]
struct Base<'m, 'a> {
    model: &'m Model<'a>,
    isa: Isa,
    /// Each block's projections' copies.
    requantized: Vec<LayerRequantized>,
    /// The output head's.
    head: Requantized,
}

impl<'a> Base<'_, 'a> {
    fn block(&self, index: usize) -> Block<'_, 'a> {
        let config = self.model.config();
        Block {
            layer: &self.model.layers()[index],
            config,
            attention: &config.layers[index],
            requantized: &self.requantized[index],
            isa: self.isa,
        }
    }

    /// The output head.
    fn head(&self) -> Frozen<'_, 'a> {
        self.head.frozen(self.model.output())
    }

    /// `x₀`: the embedding rows of `inputs`, `[n_tokens, dim]`.
    fn embed(&self, inputs: &[u32]) -> Result<Vec<f32>, TrainError> {
        let config = self.model.config();
        let dim = config.dim;
        let table = self.model.embedding();
        if inputs.is_empty() {
            return Err(TrainError::EmptyExample);
        }
        let mut x = vec![0.0; inputs.len() * dim];
        for (&token, row) in inputs.iter().zip(x.chunks_exact_mut(dim)) {
            if token as usize >= table.n_out {
                return Err(TrainError::BadToken(token));
            }
            table.dequantize_row(token as usize, row)?;
        }
        if config.arch == Arch::Gemma3 {
            act::scale(&mut x, (dim as f32).sqrt());
        }
        Ok(x)
    }

    /// The final hidden states `norm(x_L)`.
    fn head_input(&self, x: &[f32]) -> Result<Vec<f32>, TrainError> {
        let mut h = vec![0.0; x.len()];
        norm::rms_norm_into(x, self.model.output_norm(), self.model.config().eps, &mut h)?;
        Ok(h)
    }
}

impl<'m, 'a> Trainee<'m, 'a> {
    /// Trains on `model`, computing with `isa`. With [`InputGradients::Int8`], requantizes the weights first
    /// (seconds; memory about the size of the model in Q8_0 for the transposes, twice that on AMX, which keeps the
    /// weights in tiles too), a block at a time on `progress`.
    pub fn new(
        model: &'m Model<'a>,
        isa: Isa,
        input_gradients: InputGradients,
        progress: &mut dyn Progress,
    ) -> Result<Self, TrainError> {
        let (requantized, head) = match input_gradients {
            InputGradients::Int8 => {
                let layers = model.layers();
                let what = if isa.multiplies_tiles() {
                    "requantizing the weights for AMX (blocks and head)"
                } else {
                    "transposing the weights for the backward pass (blocks and head)"
                };
                progress.stage(what, Some(layers.len() as u64 + 1), Unit::Items);
                let requantized = layers
                    .iter()
                    .map(|layer| {
                        let copies = requantize(layer, isa);
                        progress.advance(1);
                        copies
                    })
                    .collect::<Result<_, _>>()
                    .and_then(|layers| Ok((layers, Requantized::of(model.output(), isa)?)));
                // Closed whether or not it succeeded.
                progress.finish_stage();
                requantized?
            }
            InputGradients::Float => (
                model.layers().iter().map(|_| Default::default()).collect(),
                Requantized::default(),
            ),
        };
        let base = Base {
            model,
            isa,
            requantized,
            head,
        };
        Ok(Trainee {
            base,
            scratch: MatmulScratch::default(),
        })
    }

    /// The frozen model.
    pub fn model(&self) -> &'m Model<'a> {
        self.base.model
    }

    /// The mean loss of `example` with `adapter` applied, without gradients.
    pub fn loss(&mut self, adapter: &LoraAdapter, example: &Example) -> Result<Loss, TrainError> {
        team::region(|| self.loss_in_region(adapter, example))
    }

    /// [`Self::loss`] inside its parallel region.
    fn loss_in_region(&mut self, adapter: &LoraAdapter, example: &Example) -> Result<Loss, TrainError> {
        let mut x = self.base.embed(&example.inputs)?;
        for index in 0..self.base.model.layers().len() {
            let block = self.base.block(index);
            x = block
                .forward(&adapter.layers[index], adapter.alpha, &x, false, &mut self.scratch)?
                .0;
        }
        let h = self.base.head_input(&x)?;
        Ok(cross_entropy(
            self.base.isa,
            self.base.head(),
            &h,
            &example.targets,
            None,
            &mut self.scratch,
        )?)
    }

    /// The mean loss of `example` with `adapter` applied, adding `weight ×` its gradient with respect to the adapter
    /// to `grads` (a batch weights each example by its share of the batch's learned tokens, so the sum is the
    /// gradient of the batch's mean).
    pub fn loss_and_gradients(
        &mut self,
        adapter: &LoraAdapter,
        example: &Example,
        weight: f32,
        memory: Memory,
        grads: &mut LoraAdapter,
    ) -> Result<Loss, TrainError> {
        // One region per example: a step's thousands of parallel loops are shared by threads that stay awake between
        // them (see `team`), rather than each loop waking the pool.
        team::region(|| self.loss_and_gradients_in_region(adapter, example, weight, memory, grads))
    }

    /// [`Self::loss_and_gradients`] inside its parallel region.
    fn loss_and_gradients_in_region(
        &mut self,
        adapter: &LoraAdapter,
        example: &Example,
        weight: f32,
        memory: Memory,
        grads: &mut LoraAdapter,
    ) -> Result<Loss, TrainError> {
        let n_blocks = self.base.model.layers().len();
        let alpha = adapter.alpha;
        // Inputs of every block, and (without checkpointing) what each block's backward needs.
        let mut inputs = vec![self.base.embed(&example.inputs)?];
        let mut saved: Vec<Saved> = Vec::new();
        for index in 0..n_blocks {
            let block = self.base.block(index);
            let keep = memory == Memory::KeepAll;
            let (y, activations) =
                block.forward(&adapter.layers[index], alpha, &inputs[index], keep, &mut self.scratch)?;
            saved.extend(activations);
            inputs.push(y);
        }
        let last = inputs.pop().expect("the embedding is always there");
        let h = self.base.head_input(&last)?;
        let mut dh = vec![0.0; h.len()];
        let loss = cross_entropy(
            self.base.isa,
            self.base.head(),
            &h,
            &example.targets,
            Some(&mut dh),
            &mut self.scratch,
        )?;
        act::scale(&mut dh, weight);
        let mut dx = vec![0.0; last.len()];
        rms_norm_backward(
            &last,
            self.base.model.output_norm(),
            self.base.model.config().eps,
            &dh,
            &mut dx,
        )?;
        drop((last, h, dh));
        for index in (0..n_blocks).rev() {
            let block = self.base.block(index);
            let x = inputs.pop().expect("one input per block");
            let activations = match saved.pop() {
                Some(activations) => activations,
                None => {
                    let (_, activations) = block.forward(&adapter.layers[index], alpha, &x, true, &mut self.scratch)?;
                    activations.expect("asked to save")
                }
            };
            dx = block.backward(
                &adapter.layers[index],
                alpha,
                &x,
                &activations,
                &dx,
                &mut grads.layers[index],
                &mut self.scratch,
            )?;
        }
        Ok(loss)
    }
}
