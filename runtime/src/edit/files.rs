//! The files an edit may touch: only text files inside the project root, read whole, with their line ends
//! remembered so that a written file keeps them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::retrieval::chunk::{Def, outline};
use crate::retrieval::{Lang, MAX_FILE_BYTES};

/// Why a file cannot be edited.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path leads outside the project root.
    #[error("{path}: outside the project root {}", .root.display())]
    OutsideRoot {
        /// The path as given.
        path: String,
        /// The project root.
        root: PathBuf,
    },
    /// The file holds NUL bytes.
    #[error("{path}: binary file (hearth edits only text)")]
    Binary {
        /// The path as given.
        path: String,
    },
    /// The file is not valid UTF-8 (writing it back from text would change bytes the edit did not touch).
    #[error("{path}: not UTF-8 text (hearth edits only UTF-8, so that nothing is lost)")]
    NotUtf8 {
        /// The path as given.
        path: String,
    },
    /// The file is larger than hearth reads into a prompt.
    #[error("{path}: larger than {} KiB", MAX_FILE_BYTES >> 10)]
    TooLarge {
        /// The path as given.
        path: String,
    },
    /// A directory, device or the like.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path as given.
        path: String,
    },
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// A text file as an edit sees it: text with `\n` line ends, and how to write it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFile {
    /// Relative to the project root, with `/` separators.
    pub path: String,
    /// The text with `\r\n` turned into `\n` (empty for a file that does not exist yet).
    pub text: String,
    /// The file's bytes as read (None: it does not exist), to tell whether it changed since.
    pub original: Option<Vec<u8>>,
    /// Whether the file's line ends are `\r\n` (most of them; a mixed file is written with its majority).
    pub crlf: bool,
}

impl TextFile {
    /// Reads `path` (relative to `root`); a file that does not exist reads as empty and new.
    pub fn read(root: &Path, path: &str) -> Result<TextFile, FileError> {
        let full = inside_root(root, path)?;
        let io_error = |source| FileError::Io {
            path: path.to_owned(),
            source,
        };
        let metadata = match fs::metadata(&full) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(TextFile {
                    path: path.to_owned(),
                    text: String::new(),
                    original: None,
                    crlf: false,
                });
            }
            Err(e) => return Err(io_error(e)),
        };
        if !metadata.is_file() {
            return Err(FileError::NotAFile { path: path.to_owned() });
        }
        if metadata.len() > MAX_FILE_BYTES {
            return Err(FileError::TooLarge { path: path.to_owned() });
        }
        let bytes = fs::read(&full).map_err(io_error)?;
        if bytes.contains(&0) {
            return Err(FileError::Binary { path: path.to_owned() });
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| FileError::NotUtf8 { path: path.to_owned() })?;
        let crlf_count = text.matches("\r\n").count();
        let crlf = crlf_count > 0 && 2 * crlf_count >= text.matches('\n').count();
        Ok(TextFile {
            path: path.to_owned(),
            text: text.replace("\r\n", "\n"),
            original: Some(bytes),
            crlf,
        })
    }

    /// Whether the file does not exist yet.
    pub fn is_new(&self) -> bool {
        self.original.is_none()
    }

    /// `text` (with `\n` line ends) as this file's bytes: with `\r\n` if the file has them.
    pub fn encode(&self, text: &str) -> Vec<u8> {
        if self.crlf {
            text.replace('\n', "\r\n").into_bytes()
        } else {
            text.as_bytes().to_vec()
        }
    }
}

/// `path` (relative, `/`-separated) under `root`, refused when it leads outside: through `..`, an absolute path,
/// or a symbolic link (of the file or of a directory on the way) pointing elsewhere.
pub fn inside_root(root: &Path, path: &str) -> Result<PathBuf, FileError> {
    let outside = || FileError::OutsideRoot {
        path: path.to_owned(),
        root: root.to_owned(),
    };
    let relative = Path::new(path);
    if path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(outside());
    }
    let root = root.canonicalize().map_err(|source| FileError::Io {
        path: root.display().to_string(),
        source,
    })?;
    let full = root.join(relative);
    // The deepest part of the path that exists, resolved, must still be under the root.
    let existing = full.ancestors().find(|p| p.symlink_metadata().is_ok()).unwrap_or(&root);
    let resolved = existing.canonicalize().map_err(|_| outside())?;
    if !resolved.starts_with(&root) {
        return Err(outside());
    }
    Ok(full)
}

/// Lines (1-based) where tree-sitter finds syntax errors in `text`, for languages it knows (None for others).
pub fn syntax_errors(path: &str, text: &str) -> Option<Vec<usize>> {
    let lang = Lang::of_path(Path::new(path))?;
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&lang.grammar()).ok()?;
    let tree = parser.parse(text, None)?;
    let mut lines = Vec::new();
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        if node.is_error() || node.is_missing() {
            lines.push(node.start_position().row + 1);
        } else if node.has_error() && cursor.goto_first_child() {
            continue;
        }
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    Some(lines)
}

/// The definitions (functions, classes, methods… as retrieval's outline finds them) of `text`, for languages
/// tree-sitter knows.
fn definitions(path: &str, text: &str) -> Option<Vec<Def>> {
    let lang = Lang::of_path(Path::new(path))?;
    Some(outline(Some(lang), text, &mut tree_sitter::Parser::new()).defs)
}

/// Definitions of `before` that `after` has fewer of, by name, for languages tree-sitter knows. A whole-file answer
/// that stops early, or skips a class it was not asked to touch, shows up here.
pub fn lost_definitions(path: &str, before: &str, after: &str) -> Vec<String> {
    let (Some(before), Some(after)) = (definitions(path, before), definitions(path, after)) else {
        return Vec::new();
    };
    let counts = |defs: Vec<Def>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for def in defs {
            *counts.entry(def.name).or_default() += 1;
        }
        counts
    };
    let (before, after) = (counts(before), counts(after));
    before
        .into_iter()
        .filter(|(name, n)| after.get(name).copied().unwrap_or(0) < *n)
        .map(|(name, _)| name)
        .collect()
}

/// `after` with the tail of `before` it left out put back: small models writing a whole file often stop after the
/// part they changed. The tail starts at the first top-level (unindented) definition of `before` that `after` lacks
/// and runs to the end of the file, with the blank lines before it. None unless that restores every definition
/// `after` lost without repeating a top-level definition `after` has.
pub fn restore_lost_tail(path: &str, before: &str, after: &str) -> Option<String> {
    let lost = lost_definitions(path, before, after);
    let lines: Vec<&str> = before.lines().collect();
    let top_level = |def: &Def| {
        let line = lines.get(def.line as usize - 1).copied().unwrap_or_default();
        !line.starts_with(char::is_whitespace)
    };
    let before_defs = definitions(path, before)?;
    let start = before_defs
        .iter()
        .find(|d| top_level(d) && lost.contains(&d.name))?
        .line as usize
        - 1;
    let after_top: Vec<String> = definitions(path, after)?
        .into_iter()
        .filter(|d| {
            !after
                .lines()
                .nth(d.line as usize - 1)
                .unwrap_or_default()
                .starts_with(char::is_whitespace)
        })
        .map(|d| d.name)
        .collect();
    let tail_repeats = before_defs
        .iter()
        .any(|d| d.line as usize > start && top_level(d) && after_top.contains(&d.name));
    if tail_repeats {
        return None;
    }
    // The tail keeps the blank lines that separated it from what came before.
    let from = lines[..start]
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    let mut restored = after.trim_end().to_owned();
    restored.push('\n');
    for line in &lines[from..] {
        restored.push_str(line);
        restored.push('\n');
    }
    lost_definitions(path, before, &restored).is_empty().then_some(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_files_read_as_lf_and_write_back_as_crlf() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("w.py"), "a\r\nb\r\n").unwrap();
        let file = TextFile::read(dir.path(), "w.py").unwrap();
        assert_eq!((file.text.as_str(), file.crlf), ("a\nb\n", true));
        assert_eq!(file.encode("a\nc\n"), b"a\r\nc\r\n");
        fs::write(dir.path().join("u.py"), "a\nb\n").unwrap();
        let file = TextFile::read(dir.path(), "u.py").unwrap();
        assert_eq!(file.encode("x\n"), b"x\n");
        let new = TextFile::read(dir.path(), "sub/new.py").unwrap();
        assert!(new.is_new() && new.text.is_empty());
    }

    #[test]
    fn binary_non_utf8_outside_and_linked_out_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("img.png"), b"\x89PNG\0\0").unwrap();
        fs::write(root.join("latin1.txt"), b"caf\xe9\n").unwrap();
        fs::write(dir.path().join("secret.txt"), "s").unwrap();
        assert!(matches!(
            TextFile::read(&root, "img.png"),
            Err(FileError::Binary { .. })
        ));
        assert!(matches!(
            TextFile::read(&root, "latin1.txt"),
            Err(FileError::NotUtf8 { .. })
        ));
        for path in ["../secret.txt", "/etc/passwd", "a/../../secret.txt", ""] {
            assert!(
                matches!(TextFile::read(&root, path), Err(FileError::OutsideRoot { .. })),
                "{path}"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), root.join("out")).unwrap();
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("s.txt")).unwrap();
            for path in ["out/secret.txt", "out/new.txt", "s.txt"] {
                assert!(
                    matches!(TextFile::read(&root, path), Err(FileError::OutsideRoot { .. })),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn definitions_left_out_of_a_new_text_are_named() {
        let before =
            "class A:\n    def __init__(self):\n        pass\n\n\nclass B:\n    def __init__(self):\n        pass\n";
        let renamed = before.replace("class A", "class C");
        assert_eq!(lost_definitions("m.py", before, &renamed), ["A"]);
        let cut = &before[..before.find("class B").unwrap()];
        assert_eq!(lost_definitions("m.py", before, cut), ["B", "__init__"]);
        assert!(lost_definitions("m.py", before, &format!("{before}def extra():\n    pass\n")).is_empty());
        assert!(lost_definitions("notes.txt", before, "").is_empty());
    }

    #[test]
    fn a_whole_file_that_stops_early_gets_its_tail_back() {
        let before = "import os\n\n\nclass A:\n    def get(self):\n        return 1\n\n\nclass B:\n    def get(self):\n        return 2\n\n\ndef helper():\n    return 3\n";
        // The answer changed A (adding a method) and stopped.
        let answer =
            "import os\n\n\nclass A:\n    def get(self):\n        return 10\n\n    def put(self):\n        pass\n";
        let restored = restore_lost_tail("m.py", before, answer).unwrap();
        assert_eq!(
            restored,
            format!("{answer}\n\nclass B:\n    def get(self):\n        return 2\n\n\ndef helper():\n    return 3\n")
        );
        // Nothing lost, a lost middle, or a tail the answer also has: no repair.
        assert_eq!(restore_lost_tail("m.py", before, before), None);
        let middle_lost = before.replace("class B:\n    def get(self):\n        return 2\n", "");
        assert_eq!(restore_lost_tail("m.py", before, &middle_lost), None);
        let moved = "import os\n\n\ndef helper():\n    return 3\n\n\nclass A:\n    def get(self):\n        return 1\n";
        assert_eq!(restore_lost_tail("m.py", before, moved), None);
        assert_eq!(restore_lost_tail("notes.txt", before, "x"), None);
    }

    #[test]
    fn syntax_errors_are_located() {
        assert_eq!(syntax_errors("a.py", "def f():\n    return 1\n"), Some(vec![]));
        let broken = syntax_errors("a.py", "def f():\n    return (1\n\nx = 2\n").unwrap();
        assert!(!broken.is_empty());
        assert_eq!(syntax_errors("notes.txt", "anything ((("), None);
    }
}
