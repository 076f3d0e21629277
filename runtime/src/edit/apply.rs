//! Finding the lines a SEARCH block quotes and replacing them.
//!
//! Models quote files imperfectly, so matching relaxes step by step and stops at the first step that finds the
//! lines exactly once:
//! 1. exact lines;
//! 2. lines equal but for trailing whitespace;
//! 3. lines equal but for a uniform difference in indentation (the replacement is re-indented by the same amount);
//! 4. elided middles: a SEARCH line that is only `...` (or a `# ...` / `// ...` comment) stands for any run of lines,
//!    so the block matches its first part, then its next part further down. A REPLACE with the same number of
//!    elisions replaces part by part and keeps what was elided; one without any replaces the whole span.
//!
//! Blank lines around a SEARCH block do not count. Lines found more than once are an error, not a guess: a wrong
//! guess edits the wrong place silently, while the error tells the model to quote more lines.
//!
//! All text here has `\n` line ends (see [`super::TextFile`]).

use similar::TextDiff;

/// How a block was matched (for reports: anything but `Exact` is the model quoting loosely).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strategy {
    /// The lines as quoted.
    Exact,
    /// Trailing whitespace differed.
    TrailingWhitespace,
    /// Indentation differed uniformly; the replacement was re-indented.
    Indentation,
    /// The quote elided lines in the middle.
    Elision,
    /// An empty SEARCH filled an empty (or new) file.
    NewFile,
}

/// Why a block does not apply; messages are written for the model, which gets them back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The SEARCH lines are not in the file.
    #[error("the SEARCH lines are not in the file{}", closest_text(.closest))]
    NotFound {
        /// The 1-based first line and text of the file's lines most like the SEARCH lines, when any are close.
        closest: Option<(usize, String)>,
    },
    /// The SEARCH lines are in the file more than once.
    #[error(
        "the SEARCH lines occur {} times (lines {}); quote more lines around the change so they occur once",
        .lines.len(),
        .lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The 1-based first lines of the occurrences.
        lines: Vec<usize>,
    },
    /// An empty SEARCH on a file that has text.
    #[error("the SEARCH part is empty but the file is not; quote the lines to change")]
    EmptySearch,
    /// Elisions in REPLACE that do not pair with those in SEARCH.
    #[error(
        "REPLACE elides lines with `...` ({replace} times) but SEARCH does not in the same way ({search} times); \
         write out every line of REPLACE"
    )]
    Elision {
        /// Elisions in SEARCH.
        search: usize,
        /// Elisions in REPLACE.
        replace: usize,
    },
}

fn closest_text(closest: &Option<(usize, String)>) -> String {
    match closest {
        Some((line, text)) => format!(". The most similar lines, from line {line}, are:\n{text}"),
        None => String::new(),
    }
}

/// `content` with `search` replaced by `replace`, and how the lines were found.
pub fn replace(content: &str, search: &str, replace: &str) -> Result<(String, Strategy), MatchError> {
    let file: Vec<&str> = content.lines().collect();
    let search_lines = trim_blank_edges(search.lines().collect());
    let replace_lines = replace.lines().collect::<Vec<_>>();
    if search_lines.is_empty() {
        if content.trim().is_empty() {
            return Ok((join(&replace_lines, true), Strategy::NewFile));
        }
        return Err(MatchError::EmptySearch);
    }
    let elisions = |lines: &[&str]| lines.iter().filter(|l| is_elision(l)).count();
    if let Some((found, strategy)) = find_unique(&file, &search_lines)? {
        // An elision in REPLACE that SEARCH does not have (as a real line) would delete code.
        if search_lines.iter().all(|l| !is_elision(l)) && replace_lines.iter().any(|l| is_lazy_elision(l)) {
            return Err(MatchError::Elision {
                search: 0,
                replace: elisions(&replace_lines),
            });
        }
        let replace_lines = trim_blank_edges(replace_lines);
        let new = found.reindent(&replace_lines);
        return Ok((splice(&file, found.start..found.end, &new, content), strategy));
    }
    let parts: Vec<Vec<&str>> = split_elisions(&search_lines);
    if parts.len() < 2 {
        return Err(not_found(&file, &search_lines));
    }
    // Each part must be found once, in order; the first part anchors the block.
    let mut spans: Vec<Found> = Vec::with_capacity(parts.len());
    for part in &parts {
        let from = spans.last().map_or(0, |s| s.end);
        let found = match find_unique(&file[from..], part) {
            Ok(Some((found, _))) => found.shifted(from),
            Ok(None) | Err(MatchError::Ambiguous { .. }) if !spans.is_empty() => {
                match find_first(&file[from..], part) {
                    Some(found) => found.shifted(from),
                    None => return Err(not_found(&file[from..], part).shifted_by(from)),
                }
            }
            Ok(None) => return Err(not_found(&file, part)),
            Err(e) => return Err(e),
        };
        spans.push(found);
    }
    let replace_parts = split_elisions(&trim_blank_edges(replace_lines));
    let (first, last) = (spans[0].start, spans[spans.len() - 1].end);
    let mut new: Vec<String> = Vec::new();
    if replace_parts.len() == parts.len() {
        for (i, (span, part)) in spans.iter().zip(&replace_parts).enumerate() {
            new.extend(span.reindent(part));
            if let Some(next) = spans.get(i + 1) {
                new.extend(file[span.end..next.start].iter().map(|l| l.to_string()));
            }
        }
    } else if replace_parts.len() == 1 {
        new = spans[0].reindent(&replace_parts[0]);
    } else {
        return Err(MatchError::Elision {
            search: parts.len() - 1,
            replace: replace_parts.len() - 1,
        });
    }
    Ok((splice(&file, first..last, &new, content), Strategy::Elision))
}

/// Where a quote was found (lines `start..end` of the file), and how its indentation relates to the file's.
#[derive(Clone, Debug)]
struct Found {
    start: usize,
    end: usize,
    /// The quote's common indentation and the file's, when they differ.
    indent: Option<(String, String)>,
}

impl Found {
    fn shifted(self, by: usize) -> Found {
        Found {
            start: self.start + by,
            end: self.end + by,
            ..self
        }
    }

    /// `lines` re-indented as the quote was: the quote's common indentation becomes the file's.
    fn reindent(&self, lines: &[&str]) -> Vec<String> {
        let Some((quoted, actual)) = &self.indent else {
            return lines.iter().map(|l| l.to_string()).collect();
        };
        lines
            .iter()
            .map(|line| {
                if line.trim().is_empty() {
                    String::new()
                } else if let Some(rest) = line.strip_prefix(quoted.as_str()) {
                    format!("{actual}{rest}")
                } else {
                    // Less indented than the quote: keep its own indentation relative to the file's.
                    let own = line.len() - line.trim_start().len();
                    let keep = actual.len().saturating_sub(quoted.len().saturating_sub(own));
                    format!("{}{}", &actual[..keep.min(actual.len())], line.trim_start())
                }
            })
            .collect()
    }
}

impl MatchError {
    fn shifted_by(self, by: usize) -> MatchError {
        match self {
            MatchError::NotFound { closest } => MatchError::NotFound {
                closest: closest.map(|(line, text)| (line + by, text)),
            },
            other => other,
        }
    }
}

/// The quote found exactly once with the strictest strategy that finds it at all; `None` when no strategy does.
fn find_unique(file: &[&str], quote: &[&str]) -> Result<Option<(Found, Strategy)>, MatchError> {
    for strategy in [Strategy::Exact, Strategy::TrailingWhitespace, Strategy::Indentation] {
        let found = find_all(file, quote, strategy);
        match found.len() {
            0 => continue,
            1 => return Ok(found.into_iter().next().map(|f| (f, strategy))),
            _ => {
                return Err(MatchError::Ambiguous {
                    lines: found.iter().map(|f| f.start + 1).collect(),
                });
            }
        }
    }
    Ok(None)
}

/// The first place the quote is found with any strategy (for the later parts of an elided quote, which follow
/// the first part and may repeat further down).
fn find_first(file: &[&str], quote: &[&str]) -> Option<Found> {
    [Strategy::Exact, Strategy::TrailingWhitespace, Strategy::Indentation]
        .into_iter()
        .find_map(|strategy| find_all(file, quote, strategy).into_iter().next())
}

fn find_all(file: &[&str], quote: &[&str], strategy: Strategy) -> Vec<Found> {
    if quote.len() > file.len() {
        return Vec::new();
    }
    let quote_indent = common_indent(quote);
    (0..=file.len() - quote.len())
        .filter_map(|start| {
            let window = &file[start..start + quote.len()];
            let matches = |indent: Option<(String, String)>| Found {
                start,
                end: start + quote.len(),
                indent,
            };
            match strategy {
                Strategy::Exact => (window == quote).then(|| matches(None)),
                Strategy::TrailingWhitespace => window
                    .iter()
                    .zip(quote)
                    .all(|(a, b)| a.trim_end() == b.trim_end())
                    .then(|| matches(None)),
                _ => {
                    let file_indent = common_indent(window);
                    let same = window.iter().zip(quote).all(|(a, b)| {
                        let (a, b) = (a.trim_end(), b.trim_end());
                        match (a.is_empty(), b.is_empty()) {
                            (true, true) => true,
                            (false, false) => a.strip_prefix(file_indent) == b.strip_prefix(quote_indent),
                            _ => false,
                        }
                    });
                    same.then(|| matches(Some((quote_indent.to_owned(), file_indent.to_owned()))))
                }
            }
        })
        .collect()
}

/// The leading whitespace all non-blank lines share.
fn common_indent<'t>(lines: &[&'t str]) -> &'t str {
    let mut common: Option<&str> = None;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let own = &line[..line.len() - line.trim_start().len()];
        common = Some(match common {
            None => own,
            Some(c) => {
                let n = c.bytes().zip(own.bytes()).take_while(|(a, b)| a == b).count();
                &c[..n]
            }
        });
    }
    common.unwrap_or("")
}

/// A line standing for elided lines: `...`, `…`, or a comment that starts with `...`.
fn is_elision(line: &str) -> bool {
    let line = line.trim();
    matches!(line, "..." | "…") || is_lazy_elision(line)
}

/// A comment saying lines were left out (`# ... rest unchanged`, `// ... existing code ...`): unlike a bare `...`
/// (a Python stub body), never a real line of code.
fn is_lazy_elision(line: &str) -> bool {
    let line = line.trim();
    ["#", "//", "/*", "<!--", "--"].iter().any(|open| {
        line.strip_prefix(open)
            .is_some_and(|rest| rest.trim_start().starts_with("...") || rest.trim_start().starts_with('…'))
    })
}

fn split_elisions<'t>(lines: &[&'t str]) -> Vec<Vec<&'t str>> {
    lines
        .split(|l| is_elision(l))
        .map(|part| trim_blank_edges(part.to_vec()))
        .filter(|part| !part.is_empty())
        .collect()
}

fn trim_blank_edges(mut lines: Vec<&str>) -> Vec<&str> {
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let leading = lines.iter().take_while(|l| l.trim().is_empty()).count();
    lines.drain(..leading);
    lines
}

/// The file with lines `range` replaced by `new`; the file's final newline (or its absence) is kept.
fn splice(file: &[&str], range: std::ops::Range<usize>, new: &[String], content: &str) -> String {
    let mut lines: Vec<&str> = Vec::with_capacity(file.len() + new.len());
    lines.extend(&file[..range.start]);
    lines.extend(new.iter().map(String::as_str));
    lines.extend(&file[range.end..]);
    join(&lines, content.is_empty() || content.ends_with('\n'))
}

fn join<S: AsRef<str>>(lines: &[S], final_newline: bool) -> String {
    let mut text = lines.iter().map(AsRef::as_ref).collect::<Vec<_>>().join("\n");
    if final_newline && !lines.is_empty() {
        text.push('\n');
    }
    text
}

/// The error for a quote not found, with the file's most similar lines when any are close enough to help.
fn not_found(file: &[&str], quote: &[&str]) -> MatchError {
    const MIN_SIMILARITY: f32 = 0.5;
    let quote_text = quote.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n");
    let n = quote.len().min(file.len());
    let best = (0..=file.len() - n)
        .map(|start| {
            let window = file[start..start + n]
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("\n");
            (
                start,
                TextDiff::from_chars(window.as_str(), quote_text.as_str()).ratio(),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let closest = best
        .filter(|&(_, ratio)| ratio >= MIN_SIMILARITY)
        .map(|(start, _)| (start + 1, join(&file[start..start + n], true)));
    MatchError::NotFound { closest }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(content: &str, search: &str, replace_with: &str) -> (String, Strategy) {
        replace(content, search, replace_with).unwrap()
    }

    const PY: &str =
        "class A:\n    def f(self):\n        x = 1\n        return x\n\n    def g(self):\n        return 2\n";

    #[test]
    fn exact_lines_are_replaced_and_the_rest_kept() {
        let (out, how) = apply(PY, "        x = 1\n", "        x = 10\n");
        assert_eq!(out, PY.replace("x = 1\n", "x = 10\n"));
        assert_eq!(how, Strategy::Exact);
    }

    #[test]
    fn indentation_drift_is_matched_and_the_replacement_reindented() {
        // The model quoted the method at top level and wrote its new version the same way.
        let (out, how) = apply(
            PY,
            "def g(self):\n    return 2\n",
            "def g(self):\n    if True:\n        return 3\n",
        );
        assert_eq!(how, Strategy::Indentation);
        assert!(
            out.ends_with("    def g(self):\n        if True:\n            return 3\n"),
            "{out}"
        );
        // And quoted too deep.
        let (out, how) = apply(
            PY,
            "            x = 1\n            return x\n",
            "            return 1\n",
        );
        assert_eq!(how, Strategy::Indentation);
        assert!(out.contains("    def f(self):\n        return 1\n\n"), "{out}");
    }

    #[test]
    fn trailing_whitespace_and_blank_edges_do_not_matter() {
        let (out, how) = apply(PY, "\n\n        x = 1   \n\n", "        x = 5\n");
        assert_eq!(how, Strategy::TrailingWhitespace);
        assert_eq!(out, PY.replace("x = 1\n", "x = 5\n"));
    }

    #[test]
    fn repeated_snippets_are_refused_with_their_lines() {
        let content = "a()\nb()\na()\n";
        assert_eq!(
            replace(content, "a()\n", "c()\n"),
            Err(MatchError::Ambiguous { lines: vec![1, 3] })
        );
        // More context makes it unique.
        assert_eq!(apply(content, "b()\na()\n", "b()\nc()\n").0, "a()\nb()\nc()\n");
    }

    #[test]
    fn elided_middles_replace_the_span_or_part_by_part() {
        let content = "def f():\n    a = 1\n    b = 2\n    c = 3\n    return a\n";
        let (out, how) = apply(
            content,
            "def f():\n    ...\n    return a\n",
            "def f():\n    ...\n    return a + c\n",
        );
        assert_eq!(how, Strategy::Elision);
        assert_eq!(out, "def f():\n    a = 1\n    b = 2\n    c = 3\n    return a + c\n");
        let (out, _) = apply(
            content,
            "def f():\n    # ... body\n    return a\n",
            "def f():\n    return 0\n",
        );
        assert_eq!(out, "def f():\n    return 0\n");
        // A Python stub body is a real line, found exactly.
        let (out, how) = apply("def f():\n    ...\n", "def f():\n    ...\n", "def f():\n    return 1\n");
        assert_eq!((out.as_str(), how), ("def f():\n    return 1\n", Strategy::Exact));
    }

    #[test]
    fn lazy_elisions_in_replace_are_refused() {
        let err = replace(PY, "        x = 1\n", "        x = 2\n        # ... rest unchanged\n").unwrap_err();
        assert!(matches!(err, MatchError::Elision { search: 0, replace: 1 }), "{err}");
    }

    #[test]
    fn empty_search_fills_only_an_empty_file() {
        assert_eq!(apply("", "", "print(1)\n"), ("print(1)\n".into(), Strategy::NewFile));
        assert_eq!(replace(PY, "\n", "x\n"), Err(MatchError::EmptySearch));
    }

    #[test]
    fn a_missing_quote_reports_the_closest_lines() {
        let err = replace(PY, "    def g(self):\n        return 3\n", "").unwrap_err();
        assert_eq!(
            err,
            MatchError::NotFound {
                closest: Some((6, "    def g(self):\n        return 2\n".into()))
            }
        );
        assert!(err.to_string().contains("from line 6"));
        assert_eq!(
            replace(PY, "something else entirely\n", ""),
            Err(MatchError::NotFound { closest: None })
        );
    }

    #[test]
    fn the_final_newline_is_kept_either_way() {
        assert_eq!(apply("a\nb", "b\n", "c\n").0, "a\nc");
        assert_eq!(apply("a\nb\n", "a", "z").0, "z\nb\n");
    }
}
