//! Identifier-aware search terms: the one tokenizer both indexed code and queries go through.
//!
//! Code names carry their meaning in their parts, so `parseHttpRequest`, `parse_http_request` and `ParseHTTPRequest`
//! all yield `parse`, `http`, `request`, plus the whole name (`parsehttprequest`) so that an exact identifier in a
//! query outranks a loose match of its parts. Terms are lower-cased and lightly stemmed ("requests" → "request",
//! "parsing" → "pars", "parsed" → "pars" — the same crude stem on both sides is all matching needs), and common
//! English words and language keywords are dropped on both sides.

/// Calls `emit` with each term of `text`, in order (repeats included).
pub fn for_each_term(text: &str, mut emit: impl FnMut(String)) {
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let word = word.trim_matches('_');
        if word.is_empty() {
            continue;
        }
        let mut parts = 0;
        for part in identifier_parts(word) {
            parts += 1;
            push_term(part, &mut emit);
        }
        if parts > 1 {
            push_term(&word.replace('_', ""), &mut emit);
        }
    }
}

/// The terms of `text` as a vector (repeats included).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text, |t| out.push(t));
    out
}

/// Splits one identifier at underscores, lower→upper case changes, the end of an acronym (`HTTPRequest` →
/// `HTTP`, `Request`) and letter↔digit changes.
fn identifier_parts(word: &str) -> impl Iterator<Item = &str> {
    word.split('_').filter(|p| !p.is_empty()).flat_map(|piece| {
        let chars: Vec<(usize, char)> = piece.char_indices().collect();
        let mut cuts = vec![0];
        for i in 1..chars.len() {
            let (at, c) = chars[i];
            let prev = chars[i - 1].1;
            let next_is_lower = chars.get(i + 1).is_some_and(|&(_, n)| n.is_lowercase());
            let camel = prev.is_lowercase() && c.is_uppercase();
            let acronym_end = prev.is_uppercase() && c.is_uppercase() && next_is_lower;
            let digits = prev.is_ascii_digit() != c.is_ascii_digit();
            if camel || acronym_end || digits {
                cuts.push(at);
            }
        }
        cuts.push(piece.len());
        cuts.windows(2).map(|w| &piece[w[0]..w[1]]).collect::<Vec<_>>()
    })
}

fn push_term(raw: &str, emit: &mut impl FnMut(String)) {
    let lower = raw.to_lowercase();
    // Single characters and bare numbers match everything and mean nothing.
    if lower.chars().count() < 2
        || lower.chars().all(|c| c.is_ascii_digit())
        || STOP_WORDS.binary_search(&&*lower).is_ok()
    {
        return;
    }
    let stemmed = stem(lower);
    match ABBREVIATIONS.binary_search_by_key(&stemmed.as_str(), |&(word, _)| word) {
        Ok(at) => emit(ABBREVIATIONS[at].1.to_owned()),
        Err(_) => emit(stemmed),
    }
}

/// Strips the commonest English inflections. Deliberately crude: it only has to map a word's forms onto one key,
/// identically for documents and queries.
fn stem(mut word: String) -> String {
    let len = word.len();
    if len > 4 && word.ends_with("ies") {
        word.truncate(len - 3);
        word.push('y');
    } else if len > 5 && word.ends_with("ing") {
        word.truncate(len - 3);
        undouble(&mut word);
    } else if len > 4 && word.ends_with("ed") {
        word.truncate(len - 2);
        undouble(&mut word);
    } else if len > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        word.truncate(len - 1);
    }
    if word.len() > 4 && word.ends_with('e') {
        word.pop();
    }
    word
}

/// `skipp` (from "skipping", "skipped") → `skip`: a doubled final consonant left by a stripped suffix is one letter
/// in the stem ("ll", "ss" and "zz" stay, as in "called", "passed", "buzzed").
fn undouble(word: &mut String) {
    let bytes = word.as_bytes();
    if let [.., a, b] = bytes
        && a == b
        && a.is_ascii_alphabetic()
        && !b"aeiouylsz".contains(a)
    {
        word.pop();
    }
}

/// Spelled-out words and the abbreviations code uses for them, both sides mapped to one term (keyed by stem,
/// sorted for binary search): a question says "directory" and "maximum", the code says `dir` and `max`.
static ABBREVIATIONS: &[(&str, &str)] = &[
    ("argument", "arg"),
    ("attribute", "attr"),
    ("authentication", "auth"),
    ("authorization", "auth"),
    ("buffer", "buf"),
    ("callback", "cb"),
    ("configuration", "config"),
    ("context", "ctx"),
    ("database", "db"),
    ("deep", "depth"),
    ("destination", "dst"),
    ("directory", "dir"),
    ("environment", "env"),
    ("error", "err"),
    ("initializ", "init"),
    ("length", "len"),
    ("library", "lib"),
    ("maximum", "max"),
    ("message", "msg"),
    ("minimum", "min"),
    ("number", "num"),
    ("package", "pkg"),
    ("parameter", "param"),
    ("previou", "prev"),
    ("repository", "repo"),
    ("source", "src"),
    ("symlink", "link"),
    ("temporary", "tmp"),
    ("utility", "util"),
];

/// Words too common in questions or code to tell chunks apart (sorted, for binary search).
static STOP_WORDS: &[&str] = &[
    "about", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "const", "def", "do", "does",
    "else", "fn", "for", "from", "function", "get", "has", "have", "how", "if", "impl", "import", "in", "into", "is",
    "it", "its", "let", "mut", "none", "not", "of", "on", "or", "pass", "pub", "return", "self", "should", "so",
    "that", "the", "their", "then", "there", "these", "this", "to", "use", "was", "we", "what", "when", "where",
    "which", "while", "who", "why", "will", "with", "would", "you",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_into_parts_plus_the_whole_name() {
        assert_eq!(
            terms("parseHttpRequest"),
            ["pars", "http", "request", "parsehttprequest"]
        );
        assert_eq!(
            terms("parse_http_request"),
            ["pars", "http", "request", "parsehttprequest"]
        );
        assert_eq!(
            terms("ParseHTTPRequest"),
            ["pars", "http", "request", "parsehttprequest"]
        );
        assert_eq!(terms("utf8_decode"), ["utf", "decod", "utf8decod"]);
        assert_eq!(terms("src/retrieval/bm25.rs"), ["src", "retrieval", "bm", "bm25", "rs"]);
    }

    #[test]
    fn questions_and_code_meet_on_stems_and_drop_filler() {
        assert_eq!(terms("How does it handle redirects?"), ["handl", "redirect"]);
        assert_eq!(
            terms("fn handle_redirect(&self)"),
            ["handl", "redirect", "handleredirect"]
        );
        assert_eq!(terms("parsed parsing parses"), ["pars", "pars", "pars"]);
        assert_eq!(terms("policies policy"), ["policy", "policy"]);
        assert_eq!(terms("skip skipped skipping"), ["skip", "skip", "skip"]);
        assert_eq!(terms("called passed"), ["call", "pass"]);
    }

    #[test]
    fn abbreviations_and_spelled_out_words_meet() {
        assert_eq!(terms("max_depth")[..2], terms("maximum depth"));
        assert_eq!(terms("directories"), ["dir"]);
        assert_eq!(terms("symlink loop"), ["link", "loop"]);
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(ABBREVIATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
