//! Project retrieval: put the right code in front of the model within a token budget.
//!
//! ```text
//! walk (ignore) → outline each file (tree-sitter tag queries: chunks, definitions, references)
//!              → terms per chunk (identifier-aware) → .hearth/index.bin (incremental, atomic)
//! query → BM25 over chunks ─┐
//! files in play → repo map ─┴→ context: quoted chunks + map, with their sources
//! ```
//! [`Project::index`] opens a project and brings its index up to date (only changed files are re-read); the
//! searches, the map and [`Project::context`] then work in memory.

mod bm25;
pub mod chunk;
mod index;
pub mod lang;
pub mod repomap;
pub mod terms;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use self::bm25::Bm25;
pub use self::chunk::{Chunk, ChunkKind, Lines};
pub use self::index::{FileRecord, GITIGNORE, HEARTH_DIR, MAX_FILE_BYTES};
pub use self::lang::Lang;
pub use self::repomap::{Focus, MapEntry, RepoMap};
use crate::progress::Progress;

/// Why retrieval failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// The project root is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// Reading the project or writing the index failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// A file (or walk step) the index left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    /// The file, relative to the root (absent when the walk itself failed, e.g. an unreadable directory).
    pub path: Option<String>,
    /// Why.
    pub reason: String,
}

/// What an index update did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexReport {
    /// Files indexed (files read but left out, such as binary ones, are in `skipped`).
    pub files: usize,
    /// Chunks in the index.
    pub chunks: usize,
    /// Files read and outlined by this update.
    pub parsed: usize,
    /// Files whose records were current (not read again).
    pub reused: usize,
    /// Records dropped because their files are gone.
    pub removed: usize,
    /// Files left out.
    pub skipped: Vec<Skipped>,
    /// Size of the index file, when this update wrote it.
    pub written_bytes: Option<u64>,
    /// Wall time of the update.
    pub elapsed: Duration,
}

/// A chunk found by search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// File, relative to the project root.
    pub path: String,
    /// Its language, when it is code.
    pub lang: Option<Lang>,
    /// The chunk.
    pub chunk: Chunk,
    /// BM25 score (higher is better; only comparable within one query).
    pub score: f32,
}

/// What [`Project::context`] should find.
#[derive(Clone, Debug, Default)]
pub struct ContextRequest<'a> {
    /// The user's message (and anything else that says what is wanted).
    pub query: &'a str,
    /// Files already in front of the model (relative paths): they steer the map and are not quoted again.
    pub files: &'a [String],
    /// Tokens the context may take.
    pub budget: usize,
}

/// Context to insert into a prompt, with where it came from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Context {
    /// The text: quoted chunks, then the repo map.
    pub text: String,
    /// The chunks quoted, in order.
    pub sources: Vec<Hit>,
    /// The definitions the map lists.
    pub map: Vec<MapEntry>,
}

/// An indexed project.
#[derive(Debug)]
pub struct Project {
    root: PathBuf,
    records: Vec<FileRecord>,
    bm25: Bm25,
    /// For each BM25 chunk id: (record index, chunk index).
    chunk_ids: Vec<(u32, u32)>,
}

/// The repo map takes at most 1/MAP_SHARE of a context budget; quoted chunks the rest.
const MAP_SHARE: usize = 4;
/// Chunks scoring below this fraction of the best match are left out even when there is room: weak matches cost
/// prompt-processing time (the slowest part of a turn on a CPU) and distract a small model.
const MIN_RELATIVE_SCORE: f32 = 0.5;
/// Search results considered for a context.
const CONTEXT_CANDIDATES: usize = 24;

impl Project {
    /// Opens the project at `root` and brings its index (`root/.hearth/index.bin`) up to date, writing it back if
    /// anything changed.
    pub fn index(root: &Path, progress: &mut dyn Progress) -> Result<(Project, IndexReport), RetrievalError> {
        if !root.is_dir() {
            return Err(RetrievalError::NotADirectory(root.to_owned()));
        }
        let root = root.canonicalize().map_err(|source| RetrievalError::Io {
            path: root.to_owned(),
            source,
        })?;
        let records = index::load(&root, progress);
        let mut project = Project {
            root,
            records,
            bm25: Bm25::default(),
            chunk_ids: Vec::new(),
        };
        let report = project.refresh(progress)?;
        Ok((project, report))
    }

    /// Brings the index up to date with the files as they are now (files edited since the last update are read
    /// again), saving it if anything changed.
    pub fn refresh(&mut self, progress: &mut dyn Progress) -> Result<IndexReport, RetrievalError> {
        let started = Instant::now();
        let mut report = IndexReport::default();
        let changed = index::update(&self.root, &mut self.records, &mut report, progress);
        if changed || !index::exists(&self.root) {
            report.written_bytes = Some(index::save(&self.root, &self.records)?);
        }
        if changed || self.chunk_ids.is_empty() {
            self.rebuild_search();
        }
        report.files = self.records.iter().filter(|r| r.skipped.is_none()).count();
        report.chunks = self.chunk_ids.len();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    fn rebuild_search(&mut self) {
        self.chunk_ids.clear();
        for (file, record) in self.records.iter().enumerate() {
            self.chunk_ids
                .extend((0..record.terms.len()).map(|chunk| (file as u32, chunk as u32)));
        }
        self.bm25 = Bm25::build(
            self.records
                .iter()
                .flat_map(|r| r.chunks().map(|(chunk, terms)| (terms, prior(&r.path, chunk)))),
        );
    }

    /// The project root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The indexed files, by path.
    pub fn files(&self) -> &[FileRecord] {
        &self.records
    }

    /// The `k` chunks that best match `query`, best first.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        self.search_outside(query, k, &[])
    }

    fn search_outside(&self, query: &str, k: usize, excluded: &[String]) -> Vec<Hit> {
        let keep = |id: u32| {
            let (file, _) = self.chunk_ids[id as usize];
            !excluded.contains(&self.records[file as usize].path)
        };
        self.bm25
            .search(query, k, keep)
            .into_iter()
            .map(|(id, score)| {
                let (file, chunk) = self.chunk_ids[id as usize];
                let record = &self.records[file as usize];
                Hit {
                    path: record.path.clone(),
                    lang: record.lang,
                    chunk: record.outline.chunks[chunk as usize].clone(),
                    score,
                }
            })
            .collect()
    }

    /// The repo map for `focus`, fitted to `budget` tokens as measured by `count_tokens`.
    pub fn repo_map(&self, focus: &Focus<'_>, budget: usize, count_tokens: &dyn Fn(&str) -> usize) -> RepoMap {
        repomap::repo_map(&self.records, focus, budget, count_tokens)
    }

    /// The text of a hit as it stands on disk now: its own lines, with `⋮` where nested chunks were left out.
    pub fn quote(&self, hit: &Hit) -> Result<String, RetrievalError> {
        let path = self.root.join(&hit.path);
        let bytes = fs::read(&path).map_err(|source| RetrievalError::Io { path, source })?;
        let source = String::from_utf8_lossy(&bytes);
        let mut text = String::new();
        let mut next = hit.chunk.lines.start;
        for (n, line) in hit.chunk.own_lines(&source) {
            if n != next {
                text.push_str("⋮\n");
            }
            text.push_str(line);
            text.push('\n');
            next = n + 1;
        }
        Ok(text)
    }

    /// Context for a prompt: the best-matching chunks (outside the files in play, scoring at least half the best) as
    /// fenced quotes, then a repo map leaning toward the files in play, all within `request.budget` tokens as
    /// measured by `count_tokens`.
    pub fn context(&self, request: &ContextRequest<'_>, count_tokens: &dyn Fn(&str) -> usize) -> Context {
        let mut context = Context::default();
        let chunk_budget = request.budget - request.budget / MAP_SHARE;
        let mut used = 0;
        let hits = self.search_outside(request.query, CONTEXT_CANDIDATES, request.files);
        let floor = hits.first().map_or(0.0, |best| best.score * MIN_RELATIVE_SCORE);
        for hit in hits.into_iter().take_while(|h| h.score >= floor) {
            // A file that vanished since indexing has nothing to quote; the rest of the context is still useful.
            let Ok(quote) = self.quote(&hit) else { continue };
            let block = render_quote(&hit, &quote);
            let cost = count_tokens(&block);
            if used + cost > chunk_budget {
                continue;
            }
            used += cost;
            context.text.push_str(&block);
            context.sources.push(hit);
        }
        let focus = Focus {
            files: request.files,
            text: request.query,
        };
        let map_budget = (request.budget / MAP_SHARE).min(request.budget.saturating_sub(used));
        let map = self.repo_map(&focus, map_budget.saturating_sub(MAP_HEADING_TOKENS), count_tokens);
        if !map.entries.is_empty() {
            context.text.push_str("Repository map (definitions, by file):\n");
            context.text.push_str(&map.text);
            context.map = map.entries;
        }
        context
    }
}

/// How much a test's score counts against other code's. Questions are mostly about how the code works, and a test
/// repeats the words of what it tests: at equal score the implementation should win.
const TEST_PRIOR: f32 = 0.5;

/// How much prose (a section of a Markdown or other text file) counts against code. Docs repeat the words of
/// questions ("how does X decide Y") without being the code that does it; at a clearly better score they still win.
const PROSE_PRIOR: f32 = 0.6;

/// A chunk's score multiplier: [`TEST_PRIOR`] for test code (test directories and files by the common naming
/// conventions, Rust `tests` modules, Python `test_` functions), [`PROSE_PRIOR`] for text sections, 1 otherwise.
fn prior(path: &str, chunk: &Chunk) -> f32 {
    if chunk.kind == ChunkKind::Section {
        return PROSE_PRIOR;
    }
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    let in_test_dir = path
        .split('/')
        .rev()
        .skip(1)
        .any(|dir| matches!(dir, "test" | "tests" | "__tests__" | "testing"));
    let test_file = stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || file.contains(".test.")
        || file.contains(".spec.");
    let symbol = chunk.symbol.as_deref().unwrap_or("");
    let test_symbol = symbol.starts_with("tests::")
        || symbol == "tests"
        || symbol.rsplit(['.', ':']).next().is_some_and(|s| s.starts_with("test_"));
    if in_test_dir || test_file || test_symbol {
        TEST_PRIOR
    } else {
        1.0
    }
}

/// Room kept for the map's heading line.
const MAP_HEADING_TOKENS: usize = 12;

/// A quoted chunk as it goes into a prompt: where it is from, then a fenced block.
fn render_quote(hit: &Hit, quote: &str) -> String {
    let Lines { start, end } = hit.chunk.lines;
    let symbol = hit
        .chunk
        .symbol
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    let fence = hit.lang.map_or("", Lang::fence);
    format!("{}:{start}-{end}{symbol}\n```{fence}\n{quote}```\n\n", hit.path)
}

/// The project `start` belongs to: the nearest directory at or above it holding `.hearth/` or `.git`.
pub fn project_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(HEARTH_DIR).is_dir() || dir.join(".git").exists())
        .map(Path::to_owned)
}

/// A rough token count (four characters per token) for callers without a model's tokenizer at hand.
pub fn approximate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}
