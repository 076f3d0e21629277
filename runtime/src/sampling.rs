//! Turning logits into the next token: penalties, top-k, top-p, min-p, temperature, then a seeded draw — the order
//! of llama.cpp's default sampler chain. Temperature 0 is greedy.

/// Sampling settings. The defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (1: off).
    pub repeat_penalty: f32,
    /// Subtract `frequency_penalty × count` from the logits of seen tokens.
    pub frequency_penalty: f32,
    /// Subtract `presence_penalty` from the logits of seen tokens.
    pub presence_penalty: f32,
    /// How many of the latest tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Seed of the random draw: the same seed gives the same output.
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Whether any repetition, frequency or presence penalty is on.
    fn has_penalties(&self) -> bool {
        self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0
    }
}

/// SplitMix64: a tiny, well-distributed generator; sampling needs reproducibility, not cryptographic strength.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks tokens from logits.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplerParams,
    rng: SplitMix64,
    /// (token, probability) candidates, reused between calls.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler with `params`, seeded from `params.seed`.
    pub fn new(params: SamplerParams) -> Self {
        let rng = SplitMix64(params.seed);
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    /// The next token after `history` (the tokens so far, for the penalties) given `logits`.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if self.params.temperature <= 0.0 && !self.params.has_penalties() {
            // Plain greedy: no need to copy the vocabulary into candidates.
            return argmax(logits.iter().copied().enumerate());
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        self.apply_penalties(history);
        let p = &self.params;
        if p.temperature <= 0.0 {
            return self
                .candidates
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |c| c.0);
        }
        // Most likely first; top-k keeps a prefix.
        self.candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if p.top_k > 0 && p.top_k < self.candidates.len() {
            self.candidates.truncate(p.top_k);
        }
        // Probabilities of what is left (softmax without temperature, as llama.cpp's top-p/min-p see them).
        softmax_in_place(&mut self.candidates, 1.0);
        if p.top_p < 1.0 {
            let mut total = 0.0;
            let keep = self.candidates.iter().position(|c| {
                total += c.1;
                total >= p.top_p
            });
            self.candidates.truncate(keep.map_or(self.candidates.len(), |i| i + 1));
        }
        if p.min_p > 0.0 {
            let threshold = self.candidates[0].1 * p.min_p;
            let keep = self.candidates.iter().take_while(|c| c.1 >= threshold).count().max(1);
            self.candidates.truncate(keep);
        }
        // Temperature reshapes the surviving probabilities: p^(1/T), renormalised.
        for c in &mut self.candidates {
            c.1 = c.1.max(f32::MIN_POSITIVE).ln();
        }
        softmax_in_place(&mut self.candidates, p.temperature);
        let mut r = self.rng.next_f64() as f32;
        for c in &self.candidates {
            if r < c.1 {
                return c.0;
            }
            r -= c.1;
        }
        self.candidates.last().map_or(0, |c| c.0)
    }

    fn apply_penalties(&mut self, history: &[u32]) {
        let p = &self.params;
        if !p.has_penalties() {
            return;
        }
        let recent = &history[history.len().saturating_sub(p.penalty_last_n)..];
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&token, &count) in &counts {
            if let Some(c) = self.candidates.get_mut(token as usize) {
                if c.1 > 0.0 {
                    c.1 /= p.repeat_penalty;
                } else {
                    c.1 *= p.repeat_penalty;
                }
                c.1 -= count as f32 * p.frequency_penalty + p.presence_penalty;
            }
        }
    }
}

/// The index of the largest value (the last on ties), 0 for none.
fn argmax(values: impl Iterator<Item = (usize, f32)>) -> u32 {
    values
        .fold(None, |best: Option<(usize, f32)>, (i, v)| match best {
            Some((_, b)) if b > v => best,
            _ => Some((i, v)),
        })
        .map_or(0, |(i, _)| i as u32)
}

/// Replaces each candidate's logit `l` with `softmax(l / temperature)`.
fn softmax_in_place(candidates: &mut [(u32, f32)], temperature: f32) {
    let max = candidates.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for c in candidates.iter_mut() {
        c.1 = ((c.1 - max) / temperature).exp();
        sum += f64::from(c.1);
    }
    for c in candidates.iter_mut() {
        c.1 = (f64::from(c.1) / sum) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_maximum_and_penalties_can_change_it() {
        let logits = [1.0, 3.0, 2.0];
        assert_eq!(Sampler::new(SamplerParams::greedy()).sample(&logits, &[]), 1);
        let params = SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        };
        assert_eq!(Sampler::new(params).sample(&logits, &[1]), 2);
    }

    #[test]
    fn same_seed_same_draws_and_filters_restrict_the_choice() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let params = SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        };
        let draw = |params: SamplerParams| {
            let mut s = Sampler::new(params);
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(params.clone()), draw(params.clone()));
        assert_ne!(
            draw(params.clone()),
            draw(SamplerParams {
                seed: 7,
                ..params.clone()
            })
        );
        let top3 = draw(SamplerParams {
            top_k: 3,
            ..params.clone()
        });
        let mut best: Vec<u32> = (0..100).collect();
        best.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        assert!(top3.iter().all(|t| best[..3].contains(t)), "{top3:?}");
        assert!(top3.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }
}
