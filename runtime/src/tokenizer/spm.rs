//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`, e.g. Gemma), as llama.cpp implements it: spaces become
//! U+2581, the text is split into UTF-8 characters, and the adjacent pair whose merged piece has the highest score is
//! merged until none is in the vocabulary; pieces left outside it fall back to `<0xNN>` byte tokens.

use std::collections::{BinaryHeap, HashMap};

use super::TokenType;

/// The bytes a SentencePiece token stands for: `<0xNN>` byte tokens are that byte, U+2581 is a space.
pub(super) fn piece_bytes(token: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Byte => token
            .strip_prefix("<0x")
            .and_then(|h| h.strip_suffix('>'))
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .map_or_else(|| token.as_bytes().to_vec(), |b| vec![b]),
        TokenType::Normal => token.replace('\u{2581}', " ").into_bytes(),
        _ => token.as_bytes().to_vec(),
    }
}

/// A candidate merge of two adjacent symbols.
#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Highest score first; on ties, the leftmost pair.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A run of the input: `len` bytes from `start`, linked to its neighbours (merged-away symbols have `len == 0`).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Debug)]
pub(super) struct Encoder {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    bytes: [Option<u32>; 256],
    add_space_prefix: bool,
}

impl Encoder {
    pub fn new(tokens: &[&str], scores: Vec<f32>, add_space_prefix: bool) -> Self {
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), i as u32))
            .collect();
        let bytes = std::array::from_fn(|b| ids.get(&format!("<0x{b:02X}>")).copied());
        Encoder {
            ids,
            scores,
            bytes,
            add_space_prefix,
        }
    }

    /// Whether a text fragment gets a leading space (the first fragment, or one right after a special token).
    pub fn adds_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = text.replace(' ', "\u{2581}");
        let mut symbols: Vec<Symbol> = Vec::new();
        for (i, (start, ch)) in text.char_indices().enumerate() {
            let end = start + ch.len_utf8();
            symbols.push(Symbol {
                start,
                len: ch.len_utf8(),
                prev: i.checked_sub(1),
                next: (end < text.len()).then_some(i + 1),
            });
        }
        let mut queue = BinaryHeap::new();
        // Only pairs whose merged piece is a token are queued, so every merged symbol is a token.
        let try_add =
            |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
                let (Some(left), Some(right)) = (left, right) else {
                    return;
                };
                let (l, r) = (symbols[left], symbols[right]);
                let piece = &text[l.start..r.start + r.len];
                if let Some(&id) = self.ids.get(piece) {
                    let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
                    queue.push(Bigram {
                        score,
                        left,
                        right,
                        size: piece.len(),
                    });
                }
            };
        for i in 1..symbols.len() {
            try_add(&mut queue, &symbols, Some(i - 1), Some(i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Skip pairs whose symbols changed since they were queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            let (prev, next) = (symbols[b.left].prev, symbols[b.left].next);
            try_add(&mut queue, &symbols, prev, Some(b.left));
            try_add(&mut queue, &symbols, Some(b.left), next);
        }
        // Merged symbols are tokens; single characters outside the vocabulary fall back to byte tokens.
        let mut out = Vec::new();
        let mut at = (!symbols.is_empty()).then_some(0);
        while let Some(i) = at {
            let piece = &text[symbols[i].start..symbols[i].start + symbols[i].len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.bytes[b as usize])),
            }
            at = symbols[i].next;
        }
        out
    }
}
