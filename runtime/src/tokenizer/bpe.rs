//! Byte-level BPE encoding: the `tokenizers` crate's regex split, GPT-2 byte mapping and merges.

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use super::TokenizerError;

/// GPT-2's original split pattern.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The pre-tokenizer regexes for `tokenizer.ggml.pre`, as llama.cpp uses them (applied in sequence).
fn pre_tokenizer_regexes(pre: &str) -> Option<&'static [&'static str]> {
    Some(match pre {
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" => &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "llama-bpe" | "llama3" | "falcon3" | "pixtral" => &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "smollm" | "starcoder" | "refact" | "codeshell" => &[r"\p{N}", GPT2],
        "deepseek-coder" => &[
            r"[\r\n]",
            r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
            r"\s+$",
            r"[一-龥ࠀ-一가-퟿]+",
            r"\p{N}+",
        ],
        "gpt-2" | "gpt2" | "default" | "mpt" | "olmo" | "jais" => &[GPT2],
        _ => return None,
    })
}

/// Bytes GPT-2's byte-level mapping shows as themselves (printable Latin-1).
const fn printable(b: u32) -> bool {
    matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff)
}

/// The 68 other bytes in order: byte `UNPRINTABLE[n]` is shown as U+0100 + n.
const UNPRINTABLE: [u8; 68] = {
    let mut table = [0u8; 68];
    let (mut b, mut n) = (0u32, 0usize);
    while b < 256 {
        if !printable(b) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// Inverts GPT-2's byte-to-character mapping for one token string.
pub(super) fn unmap_bytes(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for ch in token.chars() {
        let c = ch as u32;
        if printable(c) {
            out.push(c as u8);
        } else if let Some(&b) = c.checked_sub(0x100).and_then(|n| UNPRINTABLE.get(n as usize)) {
            out.push(b);
        } else {
            // Not a byte-level character (e.g. in an added token): keep its UTF-8.
            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    out
}

/// BPE-encodes text (special tokens were split off before).
pub(super) struct Encoder {
    hf: HfTokenizer,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn new(tokens: &[&str], merges: &[&str], pre: &str) -> Result<Self, TokenizerError> {
        let regexes = pre_tokenizer_regexes(pre).ok_or_else(|| TokenizerError::Unsupported {
            what: "pre-tokenizer",
            name: pre.to_owned(),
        })?;
        let build = |e: Box<dyn std::error::Error + Send + Sync>| TokenizerError::Build(e.to_string());
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect();
        let model = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(build)?;
        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        for regex in regexes {
            let split = Split::new(
                SplitPattern::Regex((*regex).to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(build)?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        let mut hf = HfTokenizer::new(model);
        hf.with_pre_tokenizer(Some(Sequence::new(steps)));

        Ok(Encoder { hf })
    }

    /// Token ids of plain text.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        // Encoding plain text with this pipeline cannot fail (every byte maps to a vocabulary character).
        self.hf
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_mapping_inverts_gpt2s() {
        assert_eq!(unmap_bytes("Ġhello"), b" hello");
        assert_eq!(unmap_bytes("ĊĠ"), b"\n ");
        assert_eq!(unmap_bytes("Ã©"), "é".as_bytes());
    }
}
