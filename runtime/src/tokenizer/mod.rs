//! Tokenizers built from GGUF metadata (`tokenizer.ggml.*`), behaving as llama.cpp's do.
//!
//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): text is split at special tokens, then by the pre-tokenizer
//! regexes that `tokenizer.ggml.pre` names (applied one after another, each splitting the pieces of the previous one),
//! bytes are mapped to GPT-2's printable characters, and merges are applied by rank. The `tokenizers` crate does the
//! encoding. SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`, e.g. Gemma) merges by score (see `spm.rs`).
//! Both first split the text at special tokens as llama.cpp does (`special.rs`). Decoding maps each token back to
//! its bytes here, so streaming never splits a UTF-8 character.

mod bpe;
mod special;
mod spm;
mod stream;

use hearth_kernel::gguf::{Gguf, Value};

pub use stream::StreamDecoder;

/// Token kinds as GGUF numbers them (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// Ordinary text.
    Normal,
    /// The unknown token.
    Unknown,
    /// Control tokens (`<|im_start|>`, BOS, EOS…): only matched in text when special tokens are parsed.
    Control,
    /// Added tokens that are always matched in text.
    UserDefined,
    /// Reserved, never produced.
    Unused,
    /// `<0xNN>` byte tokens of SentencePiece vocabularies.
    Byte,
}

impl TokenType {
    fn from_gguf(v: i64) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

/// Why a tokenizer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required metadata key is missing or has the wrong type.
    #[error("the model's tokenizer metadata has no usable {0}")]
    Missing(&'static str),
    /// A tokenizer model or pre-tokenizer hearth does not implement.
    #[error("tokenizer {what} '{name}' is not supported")]
    Unsupported {
        /// `model` or `pre-tokenizer`.
        what: &'static str,
        /// The name in the file.
        name: String,
    },
    /// The vocabulary could not be turned into a tokenizer.
    #[error("cannot build the tokenizer: {0}")]
    Build(String),
}

/// Token texts that end generation wherever they appear in a vocabulary (llama.cpp's list). They are also treated as
/// control tokens, whatever type the file gives them.
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens, in the order of [`FimTokens`]'s fields, with the texts llama.cpp recognises for each;
/// the first token (by id) with one of the texts becomes a control token. Pad, repo and separator tokens also end
/// generation.
const FIM_ROLES: [(&[&str], bool); 6] = [
    (
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
        false,
    ),
    (
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
        false,
    ),
    (
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
        false,
    ),
    (&["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"], true),
    (
        &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
        true,
    ),
    (&["<|file_sep|>"], true),
];

/// A model's fill-in-the-middle tokens (each absent when its vocabulary has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FimTokens {
    /// Opens the text before the cursor.
    pub prefix: Option<u32>,
    /// Opens the text after the cursor.
    pub suffix: Option<u32>,
    /// Asks for the middle.
    pub middle: Option<u32>,
    /// Padding (ends generation).
    pub pad: Option<u32>,
    /// Opens the repository name in repo-level prompts.
    pub repo: Option<u32>,
    /// Separates files in repo-level prompts.
    pub file_sep: Option<u32>,
}

impl FimTokens {
    /// The prefix, suffix and middle tokens, if the model has all three (what fill-in-the-middle needs).
    pub fn infill(&self) -> Option<(u32, u32, u32)> {
        Some((self.prefix?, self.suffix?, self.middle?))
    }
}

/// Applies llama.cpp's by-name corrections to the token types; returns the FIM tokens and the end-of-generation ids.
fn promote_known_tokens(tokens: &[&str], types: &mut [TokenType], eos: Option<u32>) -> (FimTokens, Vec<u32>) {
    let mut end = Vec::new();
    let [prefix, suffix, middle, pad, repo, file_sep] = FIM_ROLES.map(|(texts, ends)| {
        let id = tokens.iter().position(|t| texts.contains(t))?;
        types[id] = TokenType::Control;
        if ends {
            end.push(id as u32);
        }
        Some(id as u32)
    });
    for (id, t) in tokens.iter().enumerate() {
        if END_OF_GENERATION.contains(t) {
            types[id] = TokenType::Control;
            end.push(id as u32);
        }
    }
    end.extend(eos);
    end.sort_unstable();
    end.dedup();
    let fim = FimTokens {
        prefix,
        suffix,
        middle,
        pad,
        repo,
        file_sep,
    };
    (fim, end)
}

/// The model that turns plain text (special tokens already split off) into ids.
#[derive(Debug)]
enum Encoder {
    Bpe(Box<bpe::Encoder>),
    Spm(Box<spm::Encoder>),
}

/// A tokenizer for one model.
#[derive(Debug)]
pub struct Tokenizer {
    encoder: Encoder,
    specials: special::SpecialTokens,
    /// The bytes each token stands for (special tokens: their text).
    pieces: Vec<Vec<u8>>,
    types: Vec<TokenType>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Tokens that end generation (sorted).
    end_of_generation: Vec<u32>,
    fim: FimTokens,
}

fn special_id(file: &Gguf<'_>, role: &str) -> Option<u32> {
    file.get(&format!("tokenizer.ggml.{role}_token_id"))
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self, TokenizerError> {
        let model = file
            .get("tokenizer.ggml.model")
            .and_then(|v| v.as_str())
            .ok_or(TokenizerError::Missing("tokenizer.ggml.model"))?;
        let tokens: Vec<&str> = file
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .and_then(|a| a.strs().map(|s| s.collect()))
            .ok_or(TokenizerError::Missing("tokenizer.ggml.tokens"))?;
        let mut types: Vec<TokenType> = match file.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| TokenType::from_gguf(v.as_i64().unwrap_or(1)))
                .collect(),
            _ => vec![TokenType::Normal; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Missing(
                "tokenizer.ggml.token_type of the vocabulary's length",
            ));
        }
        let flag = |key: &str, default: bool| file.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
        let eos = special_id(file, "eos");
        let (fim, end_of_generation) = promote_known_tokens(&tokens, &mut types, eos);
        let (encoder, pieces): (Encoder, Vec<Vec<u8>>) = match model {
            "gpt2" => {
                let merges: Vec<&str> = file
                    .get("tokenizer.ggml.merges")
                    .and_then(|v| v.as_array())
                    .and_then(|a| a.strs().map(|s| s.collect()))
                    .ok_or(TokenizerError::Missing("tokenizer.ggml.merges"))?;
                let pre = file
                    .get("tokenizer.ggml.pre")
                    .and_then(|v| v.as_str())
                    .unwrap_or("default");
                let pieces = tokens
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| match ty {
                        TokenType::Normal => bpe::unmap_bytes(t),
                        _ => t.as_bytes().to_vec(),
                    })
                    .collect();
                (
                    Encoder::Bpe(Box::new(bpe::Encoder::new(&tokens, &merges, pre)?)),
                    pieces,
                )
            }
            "llama" => {
                let scores: Vec<f32> = match file.get("tokenizer.ggml.scores") {
                    Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
                    _ => return Err(TokenizerError::Missing("tokenizer.ggml.scores")),
                };
                let pieces = tokens
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| spm::piece_bytes(t, *ty))
                    .collect();
                let add_space_prefix = flag("tokenizer.ggml.add_space_prefix", true);
                (
                    Encoder::Spm(Box::new(spm::Encoder::new(&tokens, scores, add_space_prefix))),
                    pieces,
                )
            }
            other => {
                return Err(TokenizerError::Unsupported {
                    what: "model",
                    name: other.to_owned(),
                });
            }
        };
        Ok(Tokenizer {
            encoder,
            specials: special::SpecialTokens::new(&tokens, &types),
            pieces,
            types,
            bos: special_id(file, "bos"),
            eos,
            add_bos: flag("tokenizer.ggml.add_bos_token", model == "llama"),
            add_eos: flag("tokenizer.ggml.add_eos_token", false),
            end_of_generation,
            fim,
        })
    }

    /// Token ids of `text`. `add_special` adds BOS/EOS as the model asks; `parse_special` lets control tokens written
    /// in the text (e.g. `<|im_start|>`) become those tokens rather than their characters.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        // SentencePiece models with a space prefix give it to the first text piece and to each piece after a special
        // token, as llama.cpp does.
        let mut after_special = true;
        for fragment in self.specials.split(text, parse_special) {
            match fragment {
                special::Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                special::Fragment::Text(t) => {
                    match &self.encoder {
                        Encoder::Bpe(bpe) => ids.extend(bpe.encode(t)),
                        Encoder::Spm(spm) if spm.adds_space_prefix() && after_special => {
                            ids.extend(spm.encode(&format!(" {t}")))
                        }
                        Encoder::Spm(spm) => ids.extend(spm.encode(t)),
                    }
                    after_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        ids
    }

    /// The bytes of token `id` (special tokens render as their text); empty for ids outside the vocabulary.
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The text of `ids` (invalid UTF-8, which only arises from cut-off sequences, becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.piece(id).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The kind of token `id`.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The BOS token that encoding with `add_special` starts with, if the model adds one.
    pub fn added_bos(&self) -> Option<u32> {
        self.bos.filter(|_| self.add_bos)
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `id` ends generation: EOS, end-of-turn/end-of-text tokens, and the FIM pad/repo/separator tokens
    /// (the same set as llama.cpp's).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    /// The model's fill-in-the-middle tokens.
    pub fn fim(&self) -> FimTokens {
        self.fim
    }
}
