//! Reading edits out of a model's answer, in either format hearth asks for:
//!
//! ````text
//! src/app.py                 SEARCH/REPLACE: a file name, then a fenced block holding
//! ```python                  one or more replacements of lines quoted from the file
//! <<<<<<< SEARCH
//! def old():
//! =======
//! def new():
//! >>>>>>> REPLACE
//! ```
//!
//! src/app.py                 whole file: a file name, then the file's complete new text
//! ```python
//! …
//! ```
//! ````
//!
//! Small models drift from any format, so the reader is lenient where the intent is unambiguous: fences may be
//! missing or carry the file name (```` ```python src/app.py ````), the name may be decorated (`**src/app.py**`,
//! `` `src/app.py` ``, `# File: src/app.py`, `src/app.py:`), markers may have 5–9 characters, a block without a name
//! belongs to the previous block's file (or to the only file being edited), and a name that is only the tail of a
//! file being edited means that file. What is not clear is an error naming the block, for the model to fix.

/// One replacement: lines quoted from `path` and what they become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The file, relative to the project root with `/` separators.
    pub path: String,
    /// The lines to find (each ending in `\n`; empty to create a file).
    pub search: String,
    /// What they become (each line ending in `\n`).
    pub replace: String,
}

/// A file's complete new text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WholeFile {
    /// The file, relative to the project root with `/` separators.
    pub path: String,
    /// Its new text (lines ending in `\n`).
    pub text: String,
}

/// Why an answer cannot be read; messages are written for the model, which gets them back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A block was cut off.
    #[error("block {block} is not finished: `{expected}` is missing")]
    Unfinished {
        /// 1-based.
        block: usize,
        /// The line that should have come.
        expected: &'static str,
    },
    /// A block names no file and none can be inferred.
    #[error("block {block} does not say which file it edits: put the file's path on the line before the block")]
    NoPath {
        /// 1-based.
        block: usize,
    },
    /// A file name is not a relative path inside the project.
    #[error("block {block} names `{path}`, which is not a relative path inside the project")]
    BadPath {
        /// 1-based.
        block: usize,
        /// The name as written.
        path: String,
    },
    /// Nothing to apply at all.
    #[error("the answer has no {0} blocks")]
    Empty(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Marker {
    Search,
    Divider,
    Replace,
}

/// A marker line: 5 to 9 `<`, `=` or `>` (`<<<<<<< SEARCH`, `=======`, `>>>>>>> REPLACE`).
fn marker(line: &str) -> Option<Marker> {
    let line = line.trim();
    let run = |c: char| {
        let n = line.chars().take_while(|&x| x == c).count();
        (5..=9).contains(&n).then(|| line[n..].trim())
    };
    if run('<').is_some_and(|rest| rest.eq_ignore_ascii_case("search")) {
        Some(Marker::Search)
    } else if run('=').is_some_and(str::is_empty) {
        Some(Marker::Divider)
    } else if run('>').is_some_and(|rest| rest.eq_ignore_ascii_case("replace")) {
        Some(Marker::Replace)
    } else {
        None
    }
}

/// A fence line's backtick count and info string (```` ```python app.py ```` → (3, "python app.py")).
fn fence(line: &str) -> Option<(usize, &str)> {
    let line = line.trim_end();
    let ticks = line.chars().take_while(|&c| c == '`').count();
    (ticks >= 3).then(|| (ticks, line[ticks..].trim()))
}

/// Resolves file names the model writes against the files being edited.
struct Names<'a> {
    files: &'a [String],
}

impl Names<'_> {
    /// The path a line names, if it names one: a file being edited (exactly, or by its tail), or something shaped
    /// like a relative path (no spaces, with an extension or a directory).
    fn path_in(&self, line: &str) -> Option<String> {
        let mut name = line.trim();
        for prefix in [
            "#",
            "//",
            "--",
            "File:",
            "file:",
            "Filename:",
            "filename:",
            "Path:",
            "path:",
        ] {
            name = name.strip_prefix(prefix).unwrap_or(name).trim();
        }
        let name = name.trim_matches(|c: char| matches!(c, '*' | '`' | '"' | '\'' | ':'));
        let name = name.strip_prefix("./").unwrap_or(name);
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        if let Some(known) = self.files.iter().find(|f| *f == name) {
            return Some(known.clone());
        }
        let mut tails = self.files.iter().filter(|f| f.ends_with(&format!("/{name}")));
        if let (Some(known), None) = (tails.next(), tails.next()) {
            return Some(known.clone());
        }
        // A file being edited under a directory the model made up (`src/app.py` for `app.py`).
        let file_name = name.rsplit('/').next().unwrap_or(name);
        let mut same_name = self.files.iter().filter(|f| f.rsplit('/').next() == Some(file_name));
        if let (Some(known), None) = (same_name.next(), same_name.next()) {
            return Some(known.clone());
        }
        let shaped_like_a_path = file_name.contains('.') && !file_name.ends_with('.') || name.contains('/');
        shaped_like_a_path.then(|| name.to_owned())
    }

    /// A path from a fence's info string (```` ```python app.py ````, ```` ```app.py ````, ```` ```python:app.py ````).
    fn path_in_fence(&self, info: &str) -> Option<String> {
        info.split(|c: char| c.is_whitespace() || c == ':')
            .filter(|word| word.contains('.') || word.contains('/'))
            .find_map(|word| self.path_in(word))
    }

    /// The path for block `block`: named, else the previous block's, else the only file being edited.
    fn settle(&self, block: usize, named: Option<String>, previous: Option<&String>) -> Result<String, ParseError> {
        let path = named
            .or_else(|| previous.cloned())
            .or_else(|| (self.files.len() == 1).then(|| self.files[0].clone()))
            .ok_or(ParseError::NoPath { block })?;
        if !is_relative_inside(&path) {
            return Err(ParseError::BadPath { block, path });
        }
        Ok(path)
    }
}

/// Whether `path` is relative and stays inside the directory it is relative to (no `..`, no root, no drive).
fn is_relative_inside(path: &str) -> bool {
    !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains(':')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// The SEARCH/REPLACE blocks of `answer`, in order. `files` are the files being edited, for resolving names.
pub fn parse_replacements(answer: &str, files: &[String]) -> Result<Vec<Replacement>, ParseError> {
    let names = Names { files };
    let mut blocks: Vec<Replacement> = Vec::new();
    // The last line outside blocks that could name a file, and the path a fence opened since then carries.
    let mut named: Option<String> = None;
    let mut lines = answer.lines();
    while let Some(line) = lines.next() {
        match marker(line) {
            Some(Marker::Search) => {}
            _ => {
                if let Some((_, info)) = fence(line) {
                    if let Some(path) = names.path_in_fence(info) {
                        named = Some(path);
                    }
                } else if !line.trim().is_empty() {
                    named = names.path_in(line);
                }
                continue;
            }
        }
        let block = blocks.len() + 1;
        let path = names.settle(block, named.take(), blocks.last().map(|b| &b.path))?;
        let (mut search, mut replace) = (String::new(), String::new());
        let mut in_replace = false;
        let mut finished = false;
        for line in lines.by_ref() {
            match marker(line) {
                Some(Marker::Divider) if !in_replace => in_replace = true,
                Some(Marker::Replace) if in_replace => {
                    finished = true;
                    break;
                }
                _ => {
                    let part = if in_replace { &mut replace } else { &mut search };
                    part.push_str(line);
                    part.push('\n');
                }
            }
        }
        if !finished {
            let expected = if in_replace { ">>>>>>> REPLACE" } else { "=======" };
            return Err(ParseError::Unfinished { block, expected });
        }
        blocks.push(Replacement { path, search, replace });
    }
    if blocks.is_empty() {
        return Err(ParseError::Empty("SEARCH/REPLACE"));
    }
    Ok(blocks)
}

/// The whole-file blocks of `answer`: each fenced block is a file's new text, named on the line before it or in the
/// fence. `files` are the files being edited, for resolving names.
pub fn parse_whole_files(answer: &str, files: &[String]) -> Result<Vec<WholeFile>, ParseError> {
    let names = Names { files };
    let mut blocks: Vec<WholeFile> = Vec::new();
    let mut named: Option<String> = None;
    let mut lines = answer.lines();
    while let Some(line) = lines.next() {
        let Some((ticks, info)) = fence(line) else {
            if !line.trim().is_empty() {
                named = names.path_in(line);
            }
            continue;
        };
        let block = blocks.len() + 1;
        let named = names.path_in_fence(info).or(named.take());
        // After the first file, a block without a name is an example or a command, not a file.
        let path = match named {
            None if !blocks.is_empty() => None,
            named => Some(names.settle(block, named, None)?),
        };
        let mut text = String::new();
        let mut finished = false;
        for line in lines.by_ref() {
            // A closing fence is at least as long as the opening one and carries no info string.
            if fence(line).is_some_and(|(n, info)| n >= ticks && info.is_empty()) {
                finished = true;
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        if !finished {
            return Err(ParseError::Unfinished {
                block,
                expected: "the closing ```",
            });
        }
        if let Some(path) = path {
            blocks.push(WholeFile { path, text });
        }
    }
    if blocks.is_empty() {
        return Err(ParseError::Empty("fenced file"));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn replacement(path: &str, search: &str, replace: &str) -> Replacement {
        Replacement {
            path: path.into(),
            search: search.into(),
            replace: replace.into(),
        }
    }

    #[test]
    fn reads_the_canonical_format_with_several_blocks_and_files() {
        let answer = "Here you go.\n\nsrc/a.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n\n\
                      src/b.py\n```python\n<<<<<<< SEARCH\n=======\nnew\n>>>>>>> REPLACE\n```\n";
        let blocks = parse_replacements(answer, &files(&["src/a.py"])).unwrap();
        assert_eq!(
            blocks,
            [
                replacement("src/a.py", "x = 1\n", "x = 2\n"),
                replacement("src/b.py", "", "new\n")
            ]
        );
    }

    #[test]
    fn file_name_variants_all_resolve() {
        let known = files(&["pkg/util/text.py", "pkg/main.py"]);
        for line in [
            "pkg/util/text.py",
            "**pkg/util/text.py**",
            "`pkg/util/text.py`",
            "# File: pkg/util/text.py",
            "pkg/util/text.py:",
            "./pkg/util/text.py",
            "util/text.py",
            "text.py",
            "src/pkg/util/text.py",
            "lib/text.py",
        ] {
            let answer = format!("{line}\n```python\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n");
            let blocks = parse_replacements(&answer, &known).unwrap();
            assert_eq!(blocks[0].path, "pkg/util/text.py", "{line}");
        }
        let answer = "```python pkg/main.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n";
        assert_eq!(parse_replacements(answer, &known).unwrap()[0].path, "pkg/main.py");
    }

    #[test]
    fn missing_fences_odd_marker_lengths_and_unnamed_follow_up_blocks() {
        let answer = "app.py\n<<<<<<<< SEARCH\nold\n========\nnew\n>>>>>>>> REPLACE\n\n<<<<<<< SEARCH\nx\n=======\n\
                      y\n>>>>>>> REPLACE\n";
        let blocks = parse_replacements(answer, &files(&["app.py", "other.py"])).unwrap();
        assert_eq!(
            blocks,
            [
                replacement("app.py", "old\n", "new\n"),
                replacement("app.py", "x\n", "y\n")
            ]
        );
    }

    #[test]
    fn a_single_file_needs_no_name_and_prose_is_not_a_name() {
        let answer = "Change it like this:\n```\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n";
        assert_eq!(
            parse_replacements(answer, &files(&["only.rs"])).unwrap()[0].path,
            "only.rs"
        );
        assert_eq!(
            parse_replacements(answer, &files(&["a.rs", "b.rs"])),
            Err(ParseError::NoPath { block: 1 })
        );
    }

    #[test]
    fn cut_off_blocks_unsafe_paths_and_empty_answers_are_errors() {
        let cut = "a.py\n<<<<<<< SEARCH\nx\n=======\ny\n";
        assert_eq!(
            parse_replacements(cut, &[]),
            Err(ParseError::Unfinished {
                block: 1,
                expected: ">>>>>>> REPLACE"
            })
        );
        for path in ["../etc/passwd", "/etc/passwd", "a/../../b.py", "C:\\x.py"] {
            let answer = format!("```python {path}\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n```\n");
            assert!(
                matches!(
                    parse_replacements(&answer, &[]),
                    Err(ParseError::BadPath { .. }) | Err(ParseError::NoPath { .. })
                ),
                "{path}"
            );
        }
        assert_eq!(
            parse_replacements("no edits", &[]),
            Err(ParseError::Empty("SEARCH/REPLACE"))
        );
    }

    #[test]
    fn marker_text_inside_replacement_content_is_kept() {
        // A divider inside REPLACE (e.g. an RST underline) is content, not a marker.
        let answer = "doc.rst\n<<<<<<< SEARCH\nTitle\n=======\nTitle\n=======\n>>>>>>> REPLACE\n";
        let blocks = parse_replacements(answer, &files(&["doc.rst"])).unwrap();
        assert_eq!(blocks, [replacement("doc.rst", "Title\n", "Title\n=======\n")]);
    }

    #[test]
    fn whole_files_take_longer_fences_and_names_from_either_place() {
        let answer = "README.md\n````markdown\n# T\n```sh\nrun\n```\n````\n\n```python src/x.py\nprint(1)\n```\n";
        let blocks = parse_whole_files(answer, &files(&["README.md", "src/x.py"])).unwrap();
        assert_eq!(
            blocks,
            [
                WholeFile {
                    path: "README.md".into(),
                    text: "# T\n```sh\nrun\n```\n".into()
                },
                WholeFile {
                    path: "src/x.py".into(),
                    text: "print(1)\n".into()
                }
            ]
        );
        // A later unnamed block is an example, not the file again.
        let answer = "x.py\n```python\ndef f(): pass\n```\nUse it like this:\n```python\nf()\n```\n";
        let blocks = parse_whole_files(answer, &files(&["x.py"])).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].text, "def f(): pass\n");
        assert_eq!(
            parse_whole_files("x.py\n```python\nprint(1)\n", &[]),
            Err(ParseError::Unfinished {
                block: 1,
                expected: "the closing ```"
            })
        );
    }
}
