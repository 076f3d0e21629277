//! The stored index: one record per file, brought up to date incrementally and saved atomically.
//!
//! Layout under the project root:
//! ```text
//! .hearth/index.bin      magic "HEARTHIX", u32 LE format version, postcard-encoded `Vec<FileRecord>`
//! .hearth/.gitignore     keeps hearth's own files out of `git status` (a project's config.toml can be committed)
//! ```
//! A file is re-read only when its size or modification time differs from its record. The new index is written to a
//! temporary file and renamed over the old one, so a crash or a concurrent indexer never leaves a torn index; an
//! index that cannot be read (another version, damage) is rebuilt from scratch.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tree_sitter::Parser;

use super::bm25::ChunkTerms;
use super::chunk::{Chunk, Outline, outline};
use super::lang::Lang;
use super::{IndexReport, RetrievalError, Skipped};
use crate::progress::{Progress, Unit};

/// Directory, under the project root, that holds hearth's files.
pub const HEARTH_DIR: &str = ".hearth";
const INDEX_FILE: &str = "index.bin";
/// What `.hearth/.gitignore` ignores: the index and temporary files of atomic writes.
pub const GITIGNORE: &str = "# hearth's own files, rebuilt on demand\nindex.bin\nundo/\n.*.tmp\n";
const MAGIC: &[u8; 8] = b"HEARTHIX";
/// Bumped whenever the record layout or the chunking/term rules change (old indexes are then rebuilt).
const FORMAT_VERSION: u32 = 2;
/// Files larger than this are skipped: generated code, data and bundles, not something to quote.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// How much of a file is checked for NUL bytes to call it binary.
const BINARY_SNIFF_BYTES: usize = 8 << 10;
/// File names that are text but only noise for search.
const NOISE_SUFFIXES: &[&str] = &[".lock", "-lock.json", ".min.js", ".min.css", ".map", ".svg"];

/// Everything the index keeps about one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the project root, `/`-separated.
    pub path: String,
    /// Size in bytes when it was read.
    pub size: u64,
    /// Modification time (nanoseconds since the Unix epoch) when it was read.
    pub modified: u64,
    /// Its language, when it is code.
    pub lang: Option<Lang>,
    /// Chunks, definitions and references.
    pub outline: Outline,
    /// Search terms of each chunk (parallel to `outline.chunks`).
    pub terms: Vec<ChunkTerms>,
    /// Why it holds no chunks, when it was read but not indexed (binary).
    pub skipped: Option<String>,
}

impl FileRecord {
    /// Chunks with their terms.
    pub fn chunks(&self) -> impl Iterator<Item = (&Chunk, &ChunkTerms)> {
        self.outline.chunks.iter().zip(&self.terms)
    }
}

/// A file found by the walk, with the metadata that decides whether its record is current.
struct Found {
    absolute: PathBuf,
    path: String,
    size: u64,
    modified: u64,
}

/// Loads the saved records of `root` (none if there is no readable index; `progress` hears why).
pub fn load(root: &Path, progress: &mut dyn Progress) -> Vec<FileRecord> {
    let path = root.join(HEARTH_DIR).join(INDEX_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            progress.note(&format!("cannot read {}: {e}; rebuilding the index", path.display()));
            return Vec::new();
        }
    };
    let decoded = bytes
        .strip_prefix(MAGIC.as_slice())
        .and_then(|rest| rest.split_first_chunk::<4>())
        .filter(|(version, _)| u32::from_le_bytes(**version) == FORMAT_VERSION)
        .and_then(|(_, payload)| postcard::from_bytes(payload).ok());
    decoded.unwrap_or_else(|| {
        progress.note(&format!(
            "{} is from another version or damaged; rebuilding the index",
            path.display()
        ));
        Vec::new()
    })
}

/// Whether `root` has a saved index.
pub fn exists(root: &Path) -> bool {
    root.join(HEARTH_DIR).join(INDEX_FILE).is_file()
}

/// Saves records atomically (a crash or a concurrent indexer never leaves a torn index: the last complete write
/// wins); returns the size of the index file.
pub fn save(root: &Path, records: &[FileRecord]) -> Result<u64, RetrievalError> {
    let dir = root.join(HEARTH_DIR);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| RetrievalError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        fs::write(&ignore, GITIGNORE).map_err(io_error(&ignore))?;
    }
    let payload = postcard::to_stdvec(records).map_err(|e| RetrievalError::Io {
        path: dir.clone(),
        source: io::Error::other(format!("cannot encode the index: {e}")),
    })?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&payload);
    let path = dir.join(INDEX_FILE);
    crate::fsutil::write_atomic(&path, &bytes).map_err(io_error(&path))?;
    Ok(bytes.len() as u64)
}

/// Brings `records` up to date with the files under `root`: unchanged files keep their records, new and changed
/// ones are read and outlined (in parallel), vanished ones are dropped. Returns whether anything changed.
pub fn update(
    root: &Path,
    records: &mut Vec<FileRecord>,
    report: &mut IndexReport,
    progress: &mut dyn Progress,
) -> bool {
    let found = walk(root, report);
    let mut old: HashMap<String, FileRecord> = records.drain(..).map(|r| (r.path.clone(), r)).collect();
    let mut stale = Vec::new();
    for file in found {
        match old.remove(&file.path) {
            Some(record) if record.size == file.size && record.modified == file.modified => {
                if let Some(reason) = &record.skipped {
                    report.skipped.push(Skipped {
                        path: Some(record.path.clone()),
                        reason: reason.clone(),
                    });
                }
                records.push(record);
            }
            _ => stale.push(file),
        }
    }
    report.removed = old.len();
    report.reused = records.len();
    let changed = !stale.is_empty() || !old.is_empty();

    progress.stage("Indexing", Some(stale.len() as u64), Unit::Items);
    // Batches keep the progress bar moving without sharing it across threads.
    for batch in stale.chunks(64) {
        let results: Vec<Result<FileRecord, Skipped>> = batch
            .par_iter()
            .map_init(Parser::new, |parser, file| read_record(file, parser))
            .collect();
        for result in results {
            match result {
                Ok(record) => {
                    if let Some(reason) = &record.skipped {
                        report.skipped.push(Skipped {
                            path: Some(record.path.clone()),
                            reason: reason.clone(),
                        });
                    } else {
                        report.parsed += 1;
                    }
                    records.push(record);
                }
                Err(skip) => report.skipped.push(skip),
            }
        }
        progress.advance(batch.len() as u64);
    }
    progress.finish_stage();
    records.sort_by(|a, b| a.path.cmp(&b.path));
    changed
}

/// Every candidate file under `root`, honouring .gitignore, .ignore and .hearthignore files (even outside a git
/// repository), skipping hidden files, symlinks, noise and files over [`MAX_FILE_BYTES`].
fn walk(root: &Path, report: &mut IndexReport) -> Vec<Found> {
    let mut found = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .require_git(false)
        .add_custom_ignore_filename(".hearthignore")
        // Not following links keeps the walk inside the project and makes link cycles impossible.
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                report.skipped.push(Skipped {
                    path: None,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some(path) = relative_path(root, entry.path()) else {
            continue;
        };
        if NOISE_SUFFIXES.iter().any(|s| path.ends_with(s)) {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(e) => {
                report.skipped.push(Skipped {
                    path: Some(path),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if metadata.len() > MAX_FILE_BYTES {
            report.skipped.push(Skipped {
                path: Some(path),
                reason: format!("larger than {} KiB", MAX_FILE_BYTES >> 10),
            });
            continue;
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        found.push(Found {
            absolute: entry.into_path(),
            path,
            size: metadata.len(),
            modified,
        });
    }
    found
}

/// `path` relative to `root` with `/` separators (None for non-UTF-8 names, which cannot be quoted to a model).
fn relative_path(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Reads and outlines one file. The record carries the metadata seen *before* reading, so a file that changes while
/// it is read is read again by the next update.
fn read_record(file: &Found, parser: &mut Parser) -> Result<FileRecord, Skipped> {
    let bytes = fs::read(&file.absolute).map_err(|e| Skipped {
        path: Some(file.path.clone()),
        reason: e.to_string(),
    })?;
    let mut record = FileRecord {
        path: file.path.clone(),
        size: file.size,
        modified: file.modified,
        lang: None,
        outline: Outline::default(),
        terms: Vec::new(),
        skipped: None,
    };
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        record.skipped = Some("binary".to_owned());
        return Ok(record);
    }
    // Invalid UTF-8 (a stray Latin-1 byte) costs a replacement character, not the file.
    let source = String::from_utf8_lossy(&bytes);
    record.lang = Lang::of_path(Path::new(&file.path));
    record.outline = outline(record.lang, &source, parser);
    record.terms = record
        .outline
        .chunks
        .iter()
        .map(|c| ChunkTerms::of(&file.path, c, &source))
        .collect();
    Ok(record)
}
