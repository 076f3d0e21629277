//! Fill-in-the-middle prompts: the text before and after the cursor, optionally preceded by other files of the
//! project, laid out as code models are trained on them (prefix–suffix–middle order; repo-level context as
//! `<|repo_name|>name\n<|file_sep|>path\ntext…` before the current file, as Qwen2.5-Coder documents it).
//!
//! User text is never parsed for special tokens: a file that happens to contain `<|fim_middle|>` is code, not a
//! command to the model.

use crate::tokenizer::Tokenizer;

/// Another file shown to the model before the one being completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextFile {
    /// Its path, as the model should see it (relative to the project).
    pub path: String,
    /// Its text (or the part of it that matters).
    pub text: String,
}

/// What to fill in.
#[derive(Clone, Copy, Debug, Default)]
pub struct FimRequest<'a> {
    /// Text before the cursor.
    pub prefix: &'a str,
    /// Text after the cursor.
    pub suffix: &'a str,
    /// The project's name, for repo-level prompts.
    pub repo_name: Option<&'a str>,
    /// The current file's path, for repo-level prompts.
    pub path: Option<&'a str>,
    /// Other files, shown first.
    pub context: &'a [ContextFile],
}

/// Why a fill-in-the-middle prompt cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FimError {
    /// The vocabulary lacks the prefix, suffix or middle token.
    #[error("this model has no fill-in-the-middle tokens (it was not trained for completion inside a file)")]
    Unsupported,
}

/// Token ids of a fill-in-the-middle prompt for `request`. Repo-level context is included when the model has the
/// file separator token; without it, context files are left out (the model would read them as part of the prefix).
pub fn fim_prompt(tokenizer: &Tokenizer, request: &FimRequest<'_>) -> Result<Vec<u32>, FimError> {
    let fim = tokenizer.fim();
    let Some((prefix, suffix, middle)) = fim.infill() else {
        return Err(FimError::Unsupported);
    };
    let text = |s: &str| tokenizer.encode(s, false, false);
    let mut ids: Vec<u32> = tokenizer.added_bos().into_iter().collect();
    if let Some(file_sep) = fim.file_sep
        && (!request.context.is_empty() || request.repo_name.is_some() || request.path.is_some())
    {
        if let (Some(repo), Some(name)) = (fim.repo, request.repo_name) {
            ids.push(repo);
            ids.extend(text(&format!("{name}\n")));
        }
        for file in request.context {
            ids.push(file_sep);
            ids.extend(text(&format!("{}\n{}", file.path, file.text)));
            if !file.text.ends_with('\n') {
                ids.extend(text("\n"));
            }
        }
        if let Some(path) = request.path {
            ids.push(file_sep);
            ids.extend(text(&format!("{path}\n")));
        }
    }
    ids.push(prefix);
    ids.extend(text(request.prefix));
    ids.push(suffix);
    ids.extend(text(request.suffix));
    ids.push(middle);
    Ok(ids)
}

/// A place in a text: 1-based line, and 1-based column in characters (None: the end of the line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters; None is the end of the line.
    pub column: Option<usize>,
}

impl Cursor {
    /// The byte offset of the cursor in `text`, or why it is not in the text.
    pub fn offset(self, text: &str) -> Result<usize, String> {
        let mut start = 0;
        let mut lines = text.split_inclusive('\n');
        for _ in 1..self.line {
            start += lines.next().map(str::len).ok_or_else(|| self.beyond(text))?;
        }
        if self.line == 0 || start > text.len() {
            return Err(self.beyond(text));
        }
        let line = text[start..].split('\n').next().unwrap_or("");
        match self.column {
            None => Ok(start + line.len()),
            Some(0) => Err("columns start at 1".to_owned()),
            Some(column) => {
                let chars = line.chars().count();
                if column > chars + 1 {
                    return Err(format!(
                        "line {} has {chars} characters; column {column} is past its end",
                        self.line
                    ));
                }
                Ok(start + line.char_indices().nth(column - 1).map_or(line.len(), |(i, _)| i))
            }
        }
    }

    fn beyond(self, text: &str) -> String {
        format!(
            "the file has {} lines; line {} is not in it",
            text.lines().count(),
            self.line
        )
    }
}

/// The text around `offset` that goes into a prompt: whole lines before it up to about `prefix_tokens`, and after it
/// up to about `suffix_tokens` (the cursor's own line is always whole).
pub fn window(text: &str, offset: usize, prefix_tokens: usize, suffix_tokens: usize) -> (&str, &str) {
    let (before, after) = text.split_at(offset);
    let mut start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut spent = crate::retrieval::approximate_tokens(&before[start..]);
    while start > 0 {
        let line_start = before[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        spent += crate::retrieval::approximate_tokens(&before[line_start..start]);
        if spent > prefix_tokens {
            break;
        }
        start = line_start;
    }
    let mut end = after.find('\n').map_or(after.len(), |i| i + 1);
    let mut spent = crate::retrieval::approximate_tokens(&after[..end]);
    while end < after.len() {
        let line_end = after[end..].find('\n').map_or(after.len(), |i| end + i + 1);
        spent += crate::retrieval::approximate_tokens(&after[end..line_end]);
        if spent > suffix_tokens {
            break;
        }
        end = line_end;
    }
    (&before[start..], &after[..end])
}

/// `completion` cut where it starts to repeat the text after the cursor: models often finish the middle and go on
/// to write the suffix's next line again. A line counts when it equals the suffix's first non-blank line (trimmed)
/// and that line is specific enough (at least 4 characters) not to be a coincidence like `}`.
pub fn trim_repeated_suffix<'c>(completion: &'c str, suffix: &str) -> &'c str {
    let Some(next) = suffix.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return completion;
    };
    if next.chars().count() < 4 {
        return completion;
    }
    let mut start = 0;
    for line in completion.split_inclusive('\n') {
        // The first line continues the cursor's line; only whole lines after it can repeat the suffix.
        if start > 0 && line.trim() == next {
            return &completion[..start];
        }
        start += line.len();
    }
    completion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_address_lines_and_character_columns() {
        let text = "ab\nçd\n";
        let at = |line, column| Cursor { line, column }.offset(text);
        assert_eq!(at(1, None), Ok(2));
        assert_eq!(at(2, Some(2)), Ok(5));
        assert_eq!(at(2, Some(3)), Ok(6));
        assert_eq!(at(3, None), Ok(7));
        assert!(at(4, None).is_err());
        assert!(at(2, Some(4)).unwrap_err().contains("past its end"));
        assert!(at(0, None).is_err());
    }

    #[test]
    fn windows_keep_whole_lines_within_budget() {
        let text = "line one\nline two\nline three\nCURSOR here\nafter one\nafter two\n";
        let offset = text.find("CURSOR").unwrap() + 6;
        let (prefix, suffix) = window(text, offset, 1000, 1000);
        assert_eq!((prefix.len() + suffix.len()), text.len());
        let (prefix, suffix) = window(text, offset, 4, 4);
        assert_eq!((prefix, suffix), ("CURSOR", " here\n"));
        let (prefix, suffix) = window(text, offset, 5, 5);
        assert_eq!((prefix, suffix), ("line three\nCURSOR", " here\nafter one\n"));
    }

    #[test]
    fn completions_stop_before_repeating_the_suffix() {
        let suffix = "\n    return total\n";
        assert_eq!(
            trim_repeated_suffix("total += x\n    return total\n", suffix),
            "total += x\n"
        );
        assert_eq!(trim_repeated_suffix("total += x", suffix), "total += x");
        // Short closers repeat by coincidence and are kept.
        assert_eq!(trim_repeated_suffix("x\n}\n", "\n}\n"), "x\n}\n");
    }
}
