//! The training loop: examples in a seeded order, gradient accumulation, clipping, AdamW on the schedule, a guard
//! against non-finite losses, and everything a checkpoint needs to continue exactly.

use hearth_kernel::simd::Isa;
use hearth_runtime::Progress;
use hearth_runtime::lora::LoraAdapter;
use hearth_runtime::model::{Model, Projection};

use crate::TrainError;
use crate::adapter::fresh_adapter;
use crate::checkpoint::Checkpoint;
use crate::optim::{AdamW, Schedule, clip_gradients};
use crate::rng::Rng;
use crate::step::{Example, InputGradients, Memory, Trainee};

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Rank of every pair.
    pub rank: usize,
    /// Scale numerator (`alpha / rank`).
    pub alpha: f32,
    /// Projections to adapt.
    pub targets: Vec<Projection>,
    /// Examples per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Warmup steps.
    pub warmup: u64,
    /// Optimizer steps of the whole run (sets the schedule's length).
    pub total_steps: u64,
    /// Largest global gradient norm.
    pub max_grad_norm: f32,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f32,
    /// Seed of the adapter's initialisation and the data order.
    pub seed: u64,
    /// Gradient checkpointing or not.
    pub memory: Memory,
    /// The arithmetic of gradients through the frozen weights.
    pub input_gradients: InputGradients,
}

impl TrainOptions {
    /// Examples one optimizer step consumes.
    pub fn examples_per_step(&self) -> usize {
        self.batch.max(1) * self.grad_accum.max(1)
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            peak: self.lr,
            warmup: self.warmup,
            total: self.total_steps,
            floor: 0.1,
        }
    }
}

/// Where a run stands: with the adapter and the optimizer, what a checkpoint saves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Examples consumed (across epochs).
    pub cursor: u64,
    /// Mean training loss of each step taken.
    pub losses: Vec<f32>,
    /// Steps skipped because the loss or the gradients were not finite.
    pub skipped: u64,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Mean loss over the step's learned tokens.
    pub loss: f64,
    /// Learned tokens in the step.
    pub tokens: usize,
    /// Gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used.
    pub lr: f32,
    /// Whether the update was skipped (a non-finite loss or gradient).
    pub skipped: bool,
}

/// Non-finite steps in a row after which training stops: the run has diverged.
const MAX_SKIPPED_IN_A_ROW: u64 = 3;

/// A training run over `examples`.
pub struct Run<'m, 'a, 'e> {
    trainee: Trainee<'m, 'a>,
    examples: &'e [Example],
    options: TrainOptions,
    /// The adapter being trained.
    pub adapter: LoraAdapter,
    /// Its optimizer state.
    pub optimizer: AdamW,
    /// Where the run stands.
    pub progress: RunState,
    grads: LoraAdapter,
    /// The current epoch's order of `examples`, and which epoch it is.
    order: (u64, Vec<usize>),
    skipped_in_a_row: u64,
}

impl std::fmt::Debug for Run<'_, '_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("options", &self.options)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// A permutation of `0..n` drawn from `rng` (Fisher–Yates).
fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order
}

impl<'m, 'a, 'e> Run<'m, 'a, 'e> {
    /// A fresh run: a new adapter (initialised from the seed) and optimizer. `preparation` shows the frozen model
    /// being made ready (see [`Trainee::new`]).
    pub fn new(
        model: &'m Model<'a>,
        isa: Isa,
        examples: &'e [Example],
        options: TrainOptions,
        preparation: &mut dyn Progress,
    ) -> Result<Self, TrainError> {
        let adapter = fresh_adapter(
            model,
            options.rank,
            options.alpha,
            &options.targets,
            &mut Rng(options.seed),
        );
        let optimizer = AdamW::new(&adapter, options.weight_decay);
        let start = Checkpoint {
            adapter,
            optimizer,
            state: RunState::default(),
        };
        Self::resume(model, isa, examples, options, start, preparation)
    }

    /// A run continuing from a checkpoint's adapter, optimizer and progress (`preparation` as in [`Run::new`]).
    pub fn resume(
        model: &'m Model<'a>,
        isa: Isa,
        examples: &'e [Example],
        options: TrainOptions,
        checkpoint: Checkpoint,
        preparation: &mut dyn Progress,
    ) -> Result<Self, TrainError> {
        let Checkpoint {
            adapter,
            optimizer,
            state,
        } = checkpoint;
        let grads = adapter.zeros_like();
        Ok(Run {
            trainee: Trainee::new(model, isa, options.input_gradients, preparation)?,
            examples,
            options,
            adapter,
            optimizer,
            progress: state,
            grads,
            order: (u64::MAX, Vec::new()),
            skipped_in_a_row: 0,
        })
    }

    /// The options it runs with.
    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    /// Sets the schedule's length and warmup (a time budget knows them only once a step has been timed).
    pub fn set_schedule(&mut self, total_steps: u64, warmup: u64) {
        self.options.total_steps = total_steps;
        self.options.warmup = warmup;
    }

    /// Epochs completed, as a fraction.
    pub fn epochs(&self) -> f64 {
        self.progress.cursor as f64 / self.examples.len().max(1) as f64
    }

    /// The example at the cursor: each epoch visits every example once, in an order drawn from the seed and the
    /// epoch number (so a resumed run sees exactly what an uninterrupted one would).
    fn next_example(&mut self) -> &'e Example {
        let n = self.examples.len() as u64;
        let (epoch, index) = (self.progress.cursor / n, self.progress.cursor % n);
        if self.order.0 != epoch {
            let mut rng = Rng(self.options.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            self.order = (epoch, shuffled(self.examples.len(), &mut rng));
        }
        self.progress.cursor += 1;
        &self.examples[self.order.1[index as usize]]
    }

    /// One optimizer step over the next `batch × grad_accum` examples.
    pub fn step(&mut self) -> Result<StepReport, TrainError> {
        let batch: Vec<&Example> = (0..self.options.examples_per_step())
            .map(|_| self.next_example())
            .collect();
        let tokens: usize = batch.iter().map(|e| e.learned_tokens()).sum();
        self.grads.clear();
        let mut total = 0.0;
        for example in &batch {
            // Each example's mean gradient, weighted by its share of the step's tokens: the step's mean.
            let weight = example.learned_tokens() as f32 / tokens.max(1) as f32;
            let loss = self.trainee.loss_and_gradients(
                &self.adapter,
                example,
                weight,
                self.options.memory,
                &mut self.grads,
            )?;
            total += loss.mean * loss.tokens as f64;
        }
        let loss = total / tokens.max(1) as f64;
        let grad_norm = clip_gradients(&mut self.grads, self.options.max_grad_norm);
        let lr = self.options.schedule().rate(self.progress.step);
        let skipped = !loss.is_finite() || !grad_norm.is_finite();
        if skipped {
            self.progress.skipped += 1;
            self.skipped_in_a_row += 1;
            if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW {
                return Err(TrainError::Diverged(self.progress.step));
            }
        } else {
            self.skipped_in_a_row = 0;
            self.optimizer.step(&mut self.adapter, &self.grads, lr);
            self.progress.losses.push(loss as f32);
        }
        self.progress.step += 1;
        Ok(StepReport {
            loss,
            tokens,
            grad_norm,
            lr,
            skipped,
        })
    }

    /// The mean loss per learned token over `examples` with the adapter as it is now.
    pub fn loss_over(&mut self, examples: &[Example]) -> Result<f64, TrainError> {
        let (mut total, mut tokens) = (0.0, 0);
        for example in examples {
            let loss = self.trainee.loss(&self.adapter, example)?;
            total += loss.mean * loss.tokens as f64;
            tokens += loss.tokens;
        }
        Ok(if tokens == 0 { f64::NAN } else { total / tokens as f64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_fixed_by_the_seed() {
        let a = shuffled(50, &mut Rng(4));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, shuffled(50, &mut Rng(4)));
        assert_ne!(a, shuffled(50, &mut Rng(5)));
    }
}
