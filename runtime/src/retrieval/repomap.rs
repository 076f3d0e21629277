//! The repo map: the project's most relevant definitions, one signature line each, fitted to a token budget.
//!
//! Files form a graph: a file that references a name points at each file that defines it, weighted by how often,
//! how distinctive the name is, and whether the conversation mentions it. PageRank over that graph, personalised
//! toward the files in play, says which files matter; each file's rank flows along its edges to the definitions it
//! uses, and the best-ranked definitions are listed, grouped by file (the approach aider popularised).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::chunk::ChunkKind;
use super::index::FileRecord;

const DAMPING: f64 = 0.85;
const ITERATIONS: usize = 40;
/// Names defined in more files than this are generic (`new`, `run`, `__init__`) and link little.
const COMMON_DEFINITION_FILES: usize = 5;

/// What the map should lean toward.
#[derive(Clone, Debug, Default)]
pub struct Focus<'a> {
    /// Files in play (relative paths): PageRank starts from them, and the map leaves them out (their text is
    /// already in front of the model).
    pub files: &'a [String],
    /// Text of the conversation: identifiers in it weigh more.
    pub text: &'a str,
}

/// One line of the map.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapEntry {
    /// File (relative path).
    pub path: String,
    /// Line of the definition.
    pub line: u32,
    /// Defined name.
    pub name: String,
    /// What it is.
    pub kind: &'static str,
    /// Its first line.
    pub signature: String,
    /// Its share of the rank.
    pub rank: f64,
}

/// A rendered map and what it lists.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepoMap {
    /// The map as text for a prompt.
    pub text: String,
    /// The definitions listed, best first.
    pub entries: Vec<MapEntry>,
}

/// Ranks definitions and renders as many as fit in `budget` tokens (`count_tokens` measures text).
pub fn repo_map(
    records: &[FileRecord],
    focus: &Focus<'_>,
    budget: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> RepoMap {
    let ranked = rank_definitions(records, focus);
    // The longest prefix of the ranking whose rendering fits (rendered size grows with the prefix).
    // Every entry costs at least a token, which bounds the search.
    let (mut low, mut high) = (0, ranked.len().min(budget));
    while low < high {
        let mid = (low + high).div_ceil(2);
        if count_tokens(&render(&ranked[..mid])) <= budget {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let entries = ranked[..low].to_vec();
    RepoMap {
        text: render(&entries),
        entries,
    }
}

fn rank_definitions(records: &[FileRecord], focus: &Focus<'_>) -> Vec<MapEntry> {
    let mut definers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (file, record) in records.iter().enumerate() {
        let mut seen = HashSet::new();
        for def in &record.outline.defs {
            if seen.insert(def.name.as_str()) {
                definers.entry(&def.name).or_default().push(file);
            }
        }
    }
    let mentioned: HashSet<&str> = focus
        .text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.len() > 1)
        .collect();
    let in_play: HashSet<&str> = focus.files.iter().map(String::as_str).collect();

    // Edges referencer → definer, with the name that links them.
    let mut edges: Vec<(usize, usize, &str, f64)> = Vec::new();
    for (from, record) in records.iter().enumerate() {
        for (name, count) in &record.outline.refs {
            let Some(targets) = definers.get(name.as_str()) else {
                continue;
            };
            let weight = name_weight(name, targets.len(), mentioned.contains(name.as_str())) * f64::from(*count).sqrt();
            edges.extend(
                targets
                    .iter()
                    .filter(|&&to| to != from)
                    .map(|&to| (from, to, name.as_str(), weight)),
            );
        }
    }
    let personal: Vec<f64> = records
        .iter()
        .map(|r| {
            let stem = r
                .path
                .rsplit('/')
                .next()
                .and_then(|f| f.split('.').next())
                .unwrap_or_default();
            if in_play.contains(r.path.as_str()) || mentioned.contains(stem) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let rank = pagerank(records.len(), &edges, &personal);

    // Each file's rank flows to the definitions it references, in proportion to the edge weights.
    let mut out_weight = vec![0.0; records.len()];
    for &(from, _, _, weight) in &edges {
        out_weight[from] += weight;
    }
    let mut def_rank: HashMap<(usize, &str), f64> = HashMap::new();
    for &(from, to, name, weight) in &edges {
        *def_rank.entry((to, name)).or_default() += rank[from] * weight / out_weight[from];
    }
    let mut entries = Vec::new();
    for (file, record) in records.iter().enumerate() {
        if in_play.contains(record.path.as_str()) {
            continue;
        }
        // An `impl` block repeats its type's name; the type's own definition stands for both.
        for def in record.outline.defs.iter().filter(|d| d.kind != ChunkKind::Impl) {
            // Unreferenced definitions keep a sliver of their file's rank so that they still order sensibly.
            let flowed = def_rank.get(&(file, def.name.as_str())).copied().unwrap_or(0.0);
            entries.push(MapEntry {
                path: record.path.clone(),
                line: def.line,
                name: def.name.clone(),
                kind: def.kind.name(),
                signature: def.signature.clone(),
                rank: flowed + rank[file] * 1e-3,
            });
        }
    }
    entries.sort_by(|a, b| {
        b.rank
            .total_cmp(&a.rank)
            .then_with(|| (&a.path, a.line).cmp(&(&b.path, b.line)))
    });
    entries
}

/// How much a link through `name` counts.
fn name_weight(name: &str, definer_count: usize, mentioned: bool) -> f64 {
    let mut weight = 1.0;
    if mentioned {
        weight *= 10.0;
    }
    let structured =
        name.contains('_') || (name.chars().any(char::is_uppercase) && name.chars().any(char::is_lowercase));
    if structured && name.len() >= 8 {
        weight *= 10.0;
    }
    // Private names, and short plain names (`len`, `new`, `get`) that method calls on other types share.
    if name.starts_with('_') || (!structured && name.len() < 5) {
        weight *= 0.1;
    }
    if definer_count > COMMON_DEFINITION_FILES {
        weight *= 0.1;
    }
    weight
}

/// Personalised PageRank by power iteration; `personal` all zero means uniform. Dangling rank restarts.
fn pagerank(nodes: usize, edges: &[(usize, usize, &str, f64)], personal: &[f64]) -> Vec<f64> {
    if nodes == 0 {
        return Vec::new();
    }
    let total: f64 = personal.iter().sum();
    let restart: Vec<f64> = if total > 0.0 {
        personal.iter().map(|p| p / total).collect()
    } else {
        vec![1.0 / nodes as f64; nodes]
    };
    let mut out_weight = vec![0.0; nodes];
    for &(from, _, _, weight) in edges {
        out_weight[from] += weight;
    }
    let mut rank = restart.clone();
    for _ in 0..ITERATIONS {
        let dangling: f64 = (0..nodes).filter(|&n| out_weight[n] == 0.0).map(|n| rank[n]).sum();
        let mut next: Vec<f64> = restart
            .iter()
            .map(|r| (1.0 - DAMPING + DAMPING * dangling) * r)
            .collect();
        for &(from, to, _, weight) in edges {
            next[to] += DAMPING * rank[from] * weight / out_weight[from];
        }
        rank = next;
    }
    rank
}

/// Groups entries by file (files in order of their best entry), definitions in line order within a file.
fn render(entries: &[MapEntry]) -> String {
    let mut files: Vec<(&str, Vec<&MapEntry>)> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        let at = *slot.entry(&entry.path).or_insert_with(|| {
            files.push((&entry.path, Vec::new()));
            files.len() - 1
        });
        files[at].1.push(entry);
    }
    let mut text = String::new();
    for (path, mut list) in files {
        list.sort_by_key(|e| e.line);
        text.push_str(path);
        text.push_str(":\n");
        for entry in list {
            text.push_str(&format!("{:>5}│ {}\n", entry.line, entry.signature));
        }
    }
    text
}
