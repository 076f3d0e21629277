//! A whole greedy generation loop on a real LLaMA-architecture GGUF model using only hearth-kernel (plus memmap2 to
//! map the file): how another tool would embed the kernel.
//!
//! ```sh
//! cargo run --release -p hearth-kernel --example embed -- MODEL.gguf [-n TOKENS] TOKEN_ID...
//! # e.g. with SmolLM2 from the store: "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
//! cargo run --release -p hearth-kernel --example embed -- "$(hearth models path smollm2-135m-instruct)" \
//!     -n 8 1 4093 198 1780 314 216 34 27 34 47 2 198 1 520 9531 198
//! ```
//! It prints the generated token ids and their text ("The answer is: 4<|im_end|>…", as llama.cpp answers).
//! Tokenization is the runtime's job; this example takes ids. hearth-runtime's tests run it against llama.cpp's
//! greedy output (testdata/golden/kernel-example.json).

use std::error::Error;
use std::fs::File;

use hearth_kernel::gguf::{Gguf, Value};
use hearth_kernel::ops::attention::{AttentionParams, attention};
use hearth_kernel::ops::kv::{KvCache, KvType};
use hearth_kernel::ops::matmul::{MatmulScratch, Weights, matmul};
use hearth_kernel::ops::rope::{Rope, RopeStyle};
use hearth_kernel::ops::{act, norm};
use hearth_kernel::quant;
use hearth_kernel::simd::Isa;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// LLaMA hyper-parameters from `llama.*` metadata.
struct Config {
    n_layers: usize,
    dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
    ff_dim: usize,
    eps: f32,
    rope: Rope,
}

impl Config {
    fn read(file: &Gguf<'_>) -> Result<Self> {
        let arch = file.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
        if arch != "llama" {
            return Err(format!("this example runs llama-architecture models; the file is '{arch}'").into());
        }
        let int = |key: &str| -> Result<usize> {
            let v = file
                .get(&format!("llama.{key}"))
                .and_then(|v| v.as_u64())
                .ok_or(format!("missing llama.{key}"))?;
            Ok(usize::try_from(v)?)
        };
        let float = |key: &str, default: f32| {
            file.get(&format!("llama.{key}"))
                .and_then(|v| v.as_f64())
                .map_or(default, |v| v as f32)
        };
        let (dim, n_heads) = (int("embedding_length")?, int("attention.head_count")?);
        Ok(Config {
            n_layers: int("block_count")?,
            dim,
            n_heads,
            n_kv_heads: int("attention.head_count_kv").unwrap_or(n_heads),
            ff_dim: int("feed_forward_length")?,
            eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope: Rope {
                n_rot: int("rope.dimension_count").unwrap_or(dim / n_heads),
                base: float("rope.freq_base", 10000.0),
                freq_scale: 1.0,
                style: RopeStyle::Normal,
            },
        })
    }

    fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
}

struct Layer<'a> {
    attn_norm: Vec<f32>,
    wq: Weights<'a>,
    wk: Weights<'a>,
    wv: Weights<'a>,
    wo: Weights<'a>,
    ffn_norm: Vec<f32>,
    gate: Weights<'a>,
    up: Weights<'a>,
    down: Weights<'a>,
}

struct Model<'a> {
    config: Config,
    embed: Weights<'a>,
    layers: Vec<Layer<'a>>,
    out_norm: Vec<f32>,
    output: Weights<'a>,
}

fn weights<'a>(file: &Gguf<'a>, name: &str) -> Result<Weights<'a>> {
    let t = file.tensor(name).ok_or(format!("missing tensor {name}"))?;
    Ok(Weights::from_tensor(t)?)
}

fn vector(file: &Gguf<'_>, name: &str) -> Result<Vec<f32>> {
    let t = file.tensor(name).ok_or(format!("missing tensor {name}"))?;
    let mut out = vec![0f32; t.n_elems()];
    quant::dequantize(t.dtype, t.data, &mut out)?;
    Ok(out)
}

impl<'a> Model<'a> {
    fn bind(file: &Gguf<'a>) -> Result<Self> {
        let config = Config::read(file)?;
        let layers = (0..config.n_layers)
            .map(|i| {
                let w = |n: &str| weights(file, &format!("blk.{i}.{n}.weight"));
                Ok(Layer {
                    attn_norm: vector(file, &format!("blk.{i}.attn_norm.weight"))?,
                    wq: w("attn_q")?,
                    wk: w("attn_k")?,
                    wv: w("attn_v")?,
                    wo: w("attn_output")?,
                    ffn_norm: vector(file, &format!("blk.{i}.ffn_norm.weight"))?,
                    gate: w("ffn_gate")?,
                    up: w("ffn_up")?,
                    down: w("ffn_down")?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = weights(file, "token_embd.weight")?;
        // Without an output matrix the head is tied to the embedding table.
        let output = weights(file, "output.weight").unwrap_or(embed);
        Ok(Model {
            config,
            embed,
            layers,
            out_norm: vector(file, "output_norm.weight")?,
            output,
        })
    }

    /// Runs `tokens` at positions `first_pos..` and returns the logits of the last one.
    fn forward(&self, tokens: &[u32], first_pos: usize, kv: &mut KvCache, isa: Isa) -> Result<Vec<f32>> {
        let c = &self.config;
        let (n, hd) = (tokens.len(), c.head_dim());
        let kv_dim = c.n_kv_heads * hd;
        let mut scratch = MatmulScratch::default();
        let mut x = vec![0f32; n * c.dim];
        for (t, &token) in tokens.iter().enumerate() {
            self.embed
                .dequantize_row(token as usize, &mut x[t * c.dim..][..c.dim])?;
        }
        let (mut h, mut q, mut attn, mut proj) = (
            vec![0f32; n * c.dim],
            vec![0f32; n * c.dim],
            vec![0f32; n * c.dim],
            vec![0f32; n * c.dim],
        );
        let (mut k, mut v) = (vec![0f32; n * kv_dim], vec![0f32; n * kv_dim]);
        let (mut gate, mut up) = (vec![0f32; n * c.ff_dim], vec![0f32; n * c.ff_dim]);
        let mut angles = vec![0f32; c.rope.n_rot];
        let params = AttentionParams::global(c.n_heads, c.n_kv_heads, hd);
        for (li, layer) in self.layers.iter().enumerate() {
            norm::rms_norm_into(&x, &layer.attn_norm, c.eps, &mut h)?;
            matmul(isa, &layer.wq, &h, &mut q, &mut scratch)?;
            matmul(isa, &layer.wk, &h, &mut k, &mut scratch)?;
            matmul(isa, &layer.wv, &h, &mut v, &mut scratch)?;
            for t in 0..n {
                c.rope.angles(first_pos + t, &mut angles)?;
                c.rope.apply(&mut q[t * c.dim..][..c.dim], hd, &angles)?;
                c.rope.apply(&mut k[t * kv_dim..][..kv_dim], hd, &angles)?;
                kv.store(
                    li,
                    first_pos + t,
                    &k[t * kv_dim..][..kv_dim],
                    &v[t * kv_dim..][..kv_dim],
                )?;
            }
            attention(isa, &params, &q, kv, li, first_pos, &mut attn)?;
            matmul(isa, &layer.wo, &attn, &mut proj, &mut scratch)?;
            act::add_assign(&mut x, &proj)?;

            norm::rms_norm_into(&x, &layer.ffn_norm, c.eps, &mut h)?;
            matmul(isa, &layer.gate, &h, &mut gate, &mut scratch)?;
            matmul(isa, &layer.up, &h, &mut up, &mut scratch)?;
            act::swiglu(isa, &mut gate, &up)?;
            matmul(isa, &layer.down, &gate, &mut proj, &mut scratch)?;
            act::add_assign(&mut x, &proj)?;
        }
        let last = &mut x[(n - 1) * c.dim..];
        norm::rms_norm(last, &self.out_norm, c.eps)?;
        let mut logits = vec![0f32; self.output.n_out];
        matmul(isa, &self.output, last, &mut logits, &mut scratch)?;
        Ok(logits)
    }
}

/// GPT-2 byte-level BPE shows bytes as printable characters (space as 'Ġ', newline as 'Ċ'); map them back.
fn token_text(piece: &str) -> String {
    let bytes: Vec<u8> = piece
        .chars()
        .map(|ch| {
            let c = ch as u32;
            match c {
                0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => c as u8,
                0x100..=0x143 => {
                    // The 68 bytes that are not printable, in order, were shifted to U+0100...
                    let unprintable = (0u32..=255).filter(|b| !matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff));
                    unprintable.clone().nth((c - 0x100) as usize).unwrap_or(b'?' as u32) as u8
                }
                _ => b'?',
            }
        })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Greedy generation: the ids of `n_generate` tokens after `prompt`, and their text.
pub fn generate(path: &str, prompt: &[u32], n_generate: usize, isa: Isa) -> Result<(Vec<u32>, String)> {
    if prompt.is_empty() {
        return Err("give at least one prompt token id".into());
    }
    let file = File::open(path)?;
    // SAFETY: the file is mapped read-only and not modified while this program runs.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let gguf = Gguf::parse(&map)?;
    let model = Model::bind(&gguf)?;
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= model.embed.n_out) {
        return Err(format!("token id {bad} is outside the vocabulary of {}", model.embed.n_out).into());
    }
    let c = &model.config;
    let mut kv = KvCache::new(
        KvType::F16,
        c.n_layers,
        c.n_kv_heads,
        c.head_dim(),
        prompt.len() + n_generate,
    )?;

    let start = std::time::Instant::now();
    let mut logits = model.forward(prompt, 0, &mut kv, isa)?;
    let prefill = start.elapsed();
    let mut generated = Vec::new();
    let decode_start = std::time::Instant::now();
    for step in 0..n_generate {
        let next = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32);
        generated.push(next);
        if step + 1 < n_generate {
            logits = model.forward(&[next], prompt.len() + step, &mut kv, isa)?;
        }
    }
    let decode = decode_start.elapsed();
    eprintln!(
        "isa {isa}; prefill {} tokens in {:.1} ms; {} tokens decoded at {:.1} tokens/s",
        prompt.len(),
        prefill.as_secs_f64() * 1e3,
        n_generate,
        (n_generate.saturating_sub(1)) as f64 / decode.as_secs_f64()
    );
    let vocab: Vec<&str> = match gguf.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.strs().map(|s| s.collect()).unwrap_or_default(),
        _ => Vec::new(),
    };
    let text = generated
        .iter()
        .map(|&t| vocab.get(t as usize).map_or(String::new(), |p| token_text(p)))
        .collect();
    Ok((generated, text))
}

#[allow(dead_code)] // unused where tests include this file for `generate`
fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: embed MODEL.gguf [-n TOKENS] TOKEN_ID...")?;
    let mut n_generate = 16;
    let mut prompt = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "-n" {
            n_generate = args.next().ok_or("-n needs a number")?.parse()?;
        } else {
            prompt.push(arg.parse::<u32>()?);
        }
    }
    let (ids, text) = generate(&path, &prompt, n_generate, Isa::selected())?;
    println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    println!("{text}");
    Ok(())
}
