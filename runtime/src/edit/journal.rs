//! Writing an edit's files, and taking the last one back.
//!
//! Before any file is written, an entry goes to `.hearth/undo/` with every file's old bytes (or that it did not
//! exist), the SHA-256 of its new bytes and the directories it creates. `hearth undo` restores the newest entry's
//! files — only if each is still exactly what the edit wrote, so undo never throws away work done since — removes
//! the files and directories the edit created (directories only while empty) and then the entry; entries older than
//! the newest [`KEEP`] are pruned. Files are written with [`write_atomic`], so a crash leaves each file old or new;
//! if a write fails midway, the files already written are put back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{FileError, inside_root};
use crate::fsutil::write_atomic;

/// How many edits can be undone, newest first.
pub const KEEP: usize = 20;

/// A file to write: its path relative to the root, the bytes it had when the edit read it (None: it did not
/// exist), and its new bytes.
#[derive(Clone, Debug)]
pub struct Write<'a> {
    /// Relative to the root, `/`-separated.
    pub path: &'a str,
    /// The bytes it had when read (None: it did not exist).
    pub before: Option<&'a [u8]>,
    /// The bytes to write.
    pub after: &'a [u8],
}

/// Why writing or undoing failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A path may not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A file is no longer what the edit (or undo) expects; nothing was written.
    #[error("{path} changed since {when}; nothing was written")]
    Changed {
        /// The file, relative to the root.
        path: String,
        /// Since when.
        when: &'static str,
    },
    /// The journal is empty.
    #[error("there is no edit to undo in {}", .0.display())]
    Nothing(PathBuf),
    /// Reading or writing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A journal entry cannot be read.
    #[error("the undo journal {} is damaged: {reason}", .path.display())]
    Damaged {
        /// The entry.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Entry {
    /// What the edit was (the instruction, or "complete FILE:LINE").
    label: String,
    files: Vec<EntryFile>,
    /// Directories the edit created for new files, relative to the root, parents before children.
    #[serde(default)]
    created_dirs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct EntryFile {
    path: String,
    /// The old text; None when the edit created the file. (Edits only touch UTF-8 files, so text is exact.)
    before: Option<String>,
    /// SHA-256 of what the edit wrote, hex.
    after_sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn journal_dir(root: &Path) -> PathBuf {
    root.join(".hearth").join("undo")
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The file's bytes now (None: it does not exist).
fn current(full: &Path) -> Result<Option<Vec<u8>>, JournalError> {
    match fs::read(full) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(full)(e)),
    }
}

/// Writes `writes` under `root` after checking that no file changed since it was read, journaling them first so
/// that [`undo`] can take them back. `label` says what the edit was.
pub fn write(root: &Path, label: &str, writes: &[Write<'_>]) -> Result<(), JournalError> {
    let mut targets = Vec::with_capacity(writes.len());
    for w in writes {
        let full = inside_root(root, w.path)?;
        if current(&full)?.as_deref() != w.before {
            return Err(JournalError::Changed {
                path: w.path.to_owned(),
                when: "hearth read it",
            });
        }
        targets.push(full);
    }
    let created_dirs = missing_dirs(root, writes);
    let entry = Entry {
        label: label.to_owned(),
        files: writes
            .iter()
            .map(|w| EntryFile {
                path: w.path.to_owned(),
                before: w.before.map(|b| String::from_utf8_lossy(b).into_owned()),
                after_sha256: sha256_hex(w.after),
            })
            .collect(),
        created_dirs: created_dirs.clone(),
    };
    let dir = journal_dir(root);
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let entry_path = dir.join(format!("{nanos:024}.json"));
    let json = serde_json::to_vec_pretty(&entry).map_err(|e| io_error(&entry_path)(io::Error::other(e)))?;
    write_atomic(&entry_path, &json).map_err(io_error(&entry_path))?;
    for (i, (w, full)) in writes.iter().zip(&targets).enumerate() {
        let written = full
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| write_atomic(full, w.after));
        if let Err(e) = written {
            // Put back what was written so far; the error that matters is this one.
            for (done, done_path) in writes[..i].iter().zip(&targets) {
                let _ = match done.before {
                    Some(bytes) => write_atomic(done_path, bytes),
                    None => fs::remove_file(done_path),
                };
            }
            remove_empty_dirs(root, &created_dirs);
            let _ = fs::remove_file(&entry_path);
            return Err(io_error(full)(e));
        }
    }
    prune(&dir)
}

/// The journal entries, oldest first.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let mut paths: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(read) => read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(dir)(e)),
    };
    paths.sort();
    Ok(paths)
}

fn prune(dir: &Path) -> Result<(), JournalError> {
    let paths = entries(dir)?;
    for old in &paths[..paths.len().saturating_sub(KEEP)] {
        fs::remove_file(old).map_err(io_error(old))?;
    }
    Ok(())
}

/// What [`undo`] restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undone {
    /// What the edit was.
    pub label: String,
    /// Files put back as they were.
    pub restored: Vec<String>,
    /// Files the edit had created, now removed.
    pub removed: Vec<String>,
}

/// Takes back the newest edit under `root`, refusing (and changing nothing) if any of its files changed since.
pub fn undo(root: &Path) -> Result<Undone, JournalError> {
    let dir = journal_dir(root);
    let Some(entry_path) = entries(&dir)?.pop() else {
        return Err(JournalError::Nothing(root.to_owned()));
    };
    let bytes = fs::read(&entry_path).map_err(io_error(&entry_path))?;
    let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| JournalError::Damaged {
        path: entry_path.clone(),
        reason: e.to_string(),
    })?;
    let mut targets = Vec::with_capacity(entry.files.len());
    for file in &entry.files {
        let full = inside_root(root, &file.path)?;
        let now = current(&full)?;
        if now.as_deref().map(sha256_hex).as_deref() != Some(file.after_sha256.as_str()) {
            return Err(JournalError::Changed {
                path: file.path.clone(),
                when: "the edit wrote it (undo would lose that change)",
            });
        }
        targets.push(full);
    }
    let mut undone = Undone {
        label: entry.label,
        restored: Vec::new(),
        removed: Vec::new(),
    };
    for (file, full) in entry.files.iter().zip(&targets) {
        match &file.before {
            Some(text) => {
                write_atomic(full, text.as_bytes()).map_err(io_error(full))?;
                undone.restored.push(file.path.clone());
            }
            None => {
                fs::remove_file(full).map_err(io_error(full))?;
                undone.removed.push(file.path.clone());
            }
        }
    }
    remove_empty_dirs(root, &entry.created_dirs);
    fs::remove_file(&entry_path).map_err(io_error(&entry_path))?;
    Ok(undone)
}

/// The directories (relative to `root`, parents first) that writing `writes` under `root` would create.
fn missing_dirs(root: &Path, writes: &[Write<'_>]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for w in writes {
        let parents: Vec<&Path> = Path::new(w.path)
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        for dir in parents.into_iter().rev() {
            let dir = dir.to_string_lossy().into_owned();
            if !root.join(&dir).exists() && !missing.contains(&dir) {
                missing.push(dir);
            }
        }
    }
    missing
}

/// Removes `dirs` (relative to `root`), children first, leaving any that is not empty (someone put files there).
fn remove_empty_dirs(root: &Path, dirs: &[String]) {
    for dir in dirs.iter().rev() {
        let _ = fs::remove_dir(root.join(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_undo_restores_old_files_and_removes_created_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.py"), "old\r\n").unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        let writes = [
            Write {
                path: "a.py",
                before: Some(b"old\r\n"),
                after: b"new\r\n",
            },
            Write {
                path: "pkg/b.py",
                before: None,
                after: b"created\n",
            },
            Write {
                path: "empty/c.py",
                before: None,
                after: b"created\n",
            },
            Write {
                path: "deep/er/d.py",
                before: None,
                after: b"created\n",
            },
        ];
        write(root, "four files", &writes).unwrap();
        // Work done since in a directory the edit made keeps that directory.
        fs::write(root.join("deep/notes.txt"), "mine").unwrap();
        assert_eq!(fs::read(root.join("a.py")).unwrap(), b"new\r\n");
        assert_eq!(fs::read(root.join("pkg/b.py")).unwrap(), b"created\n");
        let undone = undo(root).unwrap();
        assert_eq!(undone.restored, ["a.py"]);
        assert_eq!(undone.removed, ["pkg/b.py", "empty/c.py", "deep/er/d.py"]);
        assert_eq!(fs::read(root.join("a.py")).unwrap(), b"old\r\n");
        assert!(!root.join("pkg").exists(), "a directory the edit made goes too");
        assert!(root.join("empty").is_dir(), "one that was there stays");
        assert!(!root.join("deep/er").exists());
        assert!(root.join("deep/notes.txt").exists());
        assert!(matches!(undo(root), Err(JournalError::Nothing(_))));
    }

    #[test]
    fn a_file_changed_since_reading_is_not_overwritten_and_one_changed_since_writing_is_not_undone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.py"), "user's newer text\n").unwrap();
        let stale = [Write {
            path: "a.py",
            before: Some(b"what hearth read\n"),
            after: b"edit\n",
        }];
        assert!(matches!(write(root, "x", &stale), Err(JournalError::Changed { .. })));
        assert_eq!(fs::read_to_string(root.join("a.py")).unwrap(), "user's newer text\n");
        let fresh = [Write {
            path: "a.py",
            before: Some(b"user's newer text\n"),
            after: b"edit\n",
        }];
        write(root, "x", &fresh).unwrap();
        fs::write(root.join("a.py"), "edited again by the user\n").unwrap();
        assert!(matches!(undo(root), Err(JournalError::Changed { .. })));
        assert_eq!(
            fs::read_to_string(root.join("a.py")).unwrap(),
            "edited again by the user\n"
        );
    }

    #[test]
    fn undo_goes_back_one_edit_at_a_time_and_old_entries_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut text = b"0\n".to_vec();
        fs::write(root.join("n.txt"), &text).unwrap();
        for i in 1..=KEEP + 2 {
            let next = format!("{i}\n").into_bytes();
            let w = [Write {
                path: "n.txt",
                before: Some(&text),
                after: &next,
            }];
            write(root, &format!("step {i}"), &w).unwrap();
            text = next;
        }
        assert_eq!(entries(&journal_dir(root)).unwrap().len(), KEEP);
        assert_eq!(undo(root).unwrap().label, format!("step {}", KEEP + 2));
        assert_eq!(
            fs::read_to_string(root.join("n.txt")).unwrap(),
            format!("{}\n", KEEP + 1)
        );
        assert_eq!(undo(root).unwrap().label, format!("step {}", KEEP + 1));
    }

    #[test]
    fn a_failed_write_puts_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.txt"), "a\n").unwrap();
        // A directory squatting on the temporary name the second write needs makes that write fail (even as root).
        fs::create_dir(root.join(format!(".b.txt.{}.tmp", std::process::id()))).unwrap();
        let writes = [
            Write {
                path: "a.txt",
                before: Some(b"a\n"),
                after: b"A\n",
            },
            Write {
                path: "b.txt",
                before: None,
                after: b"b\n",
            },
        ];
        assert!(write(root, "x", &writes).is_err());
        assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "a\n");
        assert!(matches!(undo(root), Err(JournalError::Nothing(_))));
    }
}
