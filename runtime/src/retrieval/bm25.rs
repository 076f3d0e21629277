//! BM25 ranking of chunks over identifier-aware terms, with symbol names boosted.
//!
//! A chunk's terms come from three fields folded into one weighted count (a simple BM25F): its own lines, its
//! qualified symbol (counted [`SYMBOL_WEIGHT`] times: a question naming `redirect` should find `resolve_redirects`
//! before a function that merely mentions one) and its file's path (so "cookies" finds `cookies.py`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::chunk::Chunk;
use super::terms::for_each_term;

/// How much a term in a chunk's symbol counts against one in its body.
const SYMBOL_WEIGHT: u32 = 4;
/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation.
const B: f32 = 0.75;

/// A chunk's weighted term counts, as stored in the index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkTerms {
    /// Distinct terms with their weighted counts, sorted by term.
    pub counts: Vec<(String, u32)>,
    /// Sum of the weighted counts (the document length BM25 normalises by).
    pub length: u32,
}

impl ChunkTerms {
    /// The terms of `chunk` in the file at `path` whose text is `source`.
    pub fn of(path: &str, chunk: &Chunk, source: &str) -> ChunkTerms {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut add = |text: &str, weight: u32| for_each_term(text, |t| *counts.entry(t).or_default() += weight);
        for (_, line) in chunk.own_lines(source) {
            add(line, 1);
        }
        if let Some(symbol) = &chunk.symbol {
            add(symbol, SYMBOL_WEIGHT);
        }
        add(path.rsplit_once('.').map_or(path, |(stem, _)| stem), 1);
        let mut counts: Vec<(String, u32)> = counts.into_iter().collect();
        counts.sort_unstable();
        let length = counts.iter().map(|(_, n)| n).sum();
        ChunkTerms { counts, length }
    }
}

/// An inverted index over every chunk of a project, built in memory from the stored term counts.
#[derive(Debug, Default)]
pub struct Bm25 {
    vocabulary: HashMap<String, u32>,
    /// For each term id: the chunks holding it, with the weighted count.
    postings: Vec<Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    /// Per chunk: a multiplier on its score (see [`Bm25::build`]).
    priors: Vec<f32>,
    average_length: f32,
}

impl Bm25 {
    /// Indexes chunks, each with a prior that multiplies its scores; chunk ids are positions in the iteration order.
    pub fn build<'a>(chunks: impl Iterator<Item = (&'a ChunkTerms, f32)>) -> Bm25 {
        let mut index = Bm25::default();
        for (id, (terms, prior)) in chunks.enumerate() {
            index.priors.push(prior);
            for (term, count) in &terms.counts {
                let next = index.postings.len() as u32;
                let term_id = *index.vocabulary.entry(term.clone()).or_insert(next);
                if term_id == next {
                    index.postings.push(Vec::new());
                }
                index.postings[term_id as usize].push((id as u32, *count));
            }
            index.lengths.push(terms.length);
        }
        let total: u64 = index.lengths.iter().map(|&l| u64::from(l)).sum();
        index.average_length = total as f32 / index.lengths.len().max(1) as f32;
        index
    }

    /// The `k` best chunks for `query` as (chunk id, score), best first; chunks matching no term are left out.
    pub fn search(&self, query: &str, k: usize, mut keep: impl FnMut(u32) -> bool) -> Vec<(u32, f32)> {
        let mut query_terms = Vec::new();
        for_each_term(query, |t| query_terms.push(t));
        query_terms.sort_unstable();
        query_terms.dedup();

        let chunks = self.lengths.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for term in &query_terms {
            let Some(&term_id) = self.vocabulary.get(term) else {
                continue;
            };
            let postings = &self.postings[term_id as usize];
            let df = postings.len() as f32;
            let idf = (1.0 + (chunks - df + 0.5) / (df + 0.5)).ln();
            for &(chunk, count) in postings {
                let tf = count as f32;
                let norm = 1.0 - B + B * self.lengths[chunk as usize] as f32 / self.average_length;
                let prior = self.priors[chunk as usize];
                *scores.entry(chunk).or_default() += prior * idf * tf * (K1 + 1.0) / (tf + K1 * norm);
            }
        }
        let mut ranked: Vec<(u32, f32)> = scores.into_iter().filter(|&(id, _)| keep(id)).collect();
        // Ties broken by position so that results are reproducible.
        ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::chunk::{ChunkKind, Lines};

    fn chunk(symbol: &str, start: u32, end: u32) -> Chunk {
        Chunk {
            lines: Lines { start, end },
            holes: Vec::new(),
            kind: ChunkKind::Function,
            symbol: Some(symbol.into()),
        }
    }

    #[test]
    fn symbol_matches_outrank_body_mentions_and_absent_terms_score_nothing() {
        let source = "def resolve_redirects(resp):\n    return follow(resp)\n\
                      def send(req):\n    # may be followed by a redirect\n    return transmit(req)\n\
                      def close():\n    pass\n";
        let a = ChunkTerms::of("sessions.py", &chunk("resolve_redirects", 1, 2), source);
        let b = ChunkTerms::of("sessions.py", &chunk("send", 3, 5), source);
        let c = ChunkTerms::of("sessions.py", &chunk("close", 6, 7), source);
        let index = Bm25::build([(&a, 1.0), (&b, 1.0), (&c, 1.0)].into_iter());
        let hits = index.search("how are redirects followed?", 10, |_| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [0, 1]);
        assert!(hits[0].1 > hits[1].1);
        assert!(index.search("nothing matches zebra", 10, |_| true).is_empty());
        assert_eq!(index.search("redirect", 10, |id| id != 0).len(), 1);
    }
}
