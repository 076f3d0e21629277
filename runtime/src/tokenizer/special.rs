//! Splitting text at special tokens, as llama.cpp does before tokenizing: tokens are tried longest first, each one
//! splitting every remaining piece of text at all its occurrences.

use super::TokenType;

/// A piece of the input: text still to tokenize, or a special token already recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

#[derive(Debug)]
struct Special {
    text: String,
    id: u32,
    /// Control and unknown tokens are matched only when special tokens are parsed; user-defined ones always.
    only_when_parsing: bool,
}

/// The special tokens of a vocabulary, longest first.
#[derive(Debug)]
pub(super) struct SpecialTokens(Vec<Special>);

impl SpecialTokens {
    pub fn new(tokens: &[&str], types: &[TokenType]) -> Self {
        let mut specials: Vec<Special> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (t, ty))| {
                !t.is_empty() && matches!(ty, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
            })
            .map(|(id, (t, ty))| Special {
                text: (*t).to_owned(),
                id: id as u32,
                only_when_parsing: *ty != TokenType::UserDefined,
            })
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
        SpecialTokens(specials)
    }

    pub fn split<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for special in self.0.iter().filter(|s| parse_special || !s.only_when_parsing) {
            let mut next = Vec::with_capacity(fragments.len());
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    next.push(fragment);
                    continue;
                };
                while let Some(at) = rest.find(&special.text) {
                    if at > 0 {
                        next.push(Fragment::Text(&rest[..at]));
                    }
                    next.push(Fragment::Token(special.id));
                    rest = &rest[at + special.text.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            fragments = next;
        }
        fragments
    }
}
