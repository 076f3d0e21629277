//! Cutting a file into chunks: definitions (with tree-sitter) for code, sections for other text.
//!
//! A definition's chunk runs from its preamble (doc comments, attributes, decorators, `export`) to its end. Nested
//! definitions (methods in a class, functions in an `impl`) are chunks of their own and leave holes in their
//! container's chunk, so each line of a file is searched in exactly one chunk. Code outside any definition (imports,
//! module-level statements) is gathered into `Code` chunks. Long pieces are cut into windows of
//! [`WINDOW_LINES`] so that one chunk stays a useful unit of context.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use streaming_iterator::StreamingIterator;
use tree_sitter::{Node, Parser, QueryCursor};

use super::lang::Lang;

/// Longest chunk kept whole, in lines; longer ones are cut into windows.
const MAX_CHUNK_LINES: u32 = 120;
/// Length of the windows long chunks and loose code are cut into.
const WINDOW_LINES: u32 = 80;
/// Longest signature kept for the repo map, in characters.
const MAX_SIGNATURE_CHARS: usize = 160;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // The names say it.
pub enum ChunkKind {
    Function,
    Method,
    Class,
    Struct,
    Enum,
    Trait,
    Interface,
    Impl,
    Type,
    Module,
    Macro,
    Constant,
    /// Code outside any definition.
    Code,
    /// A section of a text file (Markdown heading to heading, or a run of paragraphs).
    Section,
}

impl ChunkKind {
    fn of_capture(name: &str) -> Option<ChunkKind> {
        Some(match name.strip_prefix("definition.")? {
            "function" => ChunkKind::Function,
            "method" => ChunkKind::Method,
            "class" => ChunkKind::Class,
            "struct" => ChunkKind::Struct,
            "enum" => ChunkKind::Enum,
            "trait" => ChunkKind::Trait,
            "interface" => ChunkKind::Interface,
            "impl" => ChunkKind::Impl,
            "type" => ChunkKind::Type,
            "module" => ChunkKind::Module,
            "macro" => ChunkKind::Macro,
            "constant" => ChunkKind::Constant,
            _ => return None,
        })
    }

    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            ChunkKind::Function => "function",
            ChunkKind::Method => "method",
            ChunkKind::Class => "class",
            ChunkKind::Struct => "struct",
            ChunkKind::Enum => "enum",
            ChunkKind::Trait => "trait",
            ChunkKind::Interface => "interface",
            ChunkKind::Impl => "impl",
            ChunkKind::Type => "type",
            ChunkKind::Module => "module",
            ChunkKind::Macro => "macro",
            ChunkKind::Constant => "constant",
            ChunkKind::Code => "code",
            ChunkKind::Section => "section",
        }
    }
}

/// A run of lines, 1-based and inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lines {
    /// First line.
    pub start: u32,
    /// Last line.
    pub end: u32,
}

impl Lines {
    fn len(self) -> u32 {
        self.end + 1 - self.start
    }
}

/// One piece of a file that search ranks and context quotes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Where it is.
    pub lines: Lines,
    /// Lines inside `lines` that belong to nested chunks.
    pub holes: Vec<Lines>,
    /// What it is.
    pub kind: ChunkKind,
    /// Qualified name (`Session.push`), or the heading of a text section.
    pub symbol: Option<String>,
}

impl Chunk {
    /// The chunk's own lines of `source` (holes left out), each with its 1-based number.
    pub fn own_lines<'a>(&'a self, source: &'a str) -> impl Iterator<Item = (u32, &'a str)> + 'a {
        let first = self.lines.start as usize - 1;
        source
            .lines()
            .skip(first)
            .take(self.lines.len() as usize)
            .zip(self.lines.start..)
            .filter(|(_, n)| !self.holes.iter().any(|h| (h.start..=h.end).contains(n)))
            .map(|(line, n)| (n, line))
    }
}

/// A definition, for the repo map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Def {
    /// Its name (unqualified: references use bare names).
    pub name: String,
    /// What it is.
    pub kind: ChunkKind,
    /// Line of its first token.
    pub line: u32,
    /// Its first line, trimmed and capped.
    pub signature: String,
}

/// Everything retrieval takes from one file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outline {
    /// Chunks in line order (containers before what they contain).
    pub chunks: Vec<Chunk>,
    /// Definitions in line order.
    pub defs: Vec<Def>,
    /// Names referenced, with how often.
    pub refs: Vec<(String, u32)>,
}

/// Outlines a source file. `parser` is reused between calls (one per thread).
pub fn outline(lang: Option<Lang>, source: &str, parser: &mut Parser) -> Outline {
    let line_count = source.lines().count() as u32;
    if line_count == 0 {
        return Outline::default();
    }
    let mut outline = match lang {
        Some(lang) => code_outline(lang, source, parser).unwrap_or_default(),
        None => Outline {
            chunks: text_sections(source),
            ..Outline::default()
        },
    };
    fill_gaps(&mut outline.chunks, source, line_count);
    outline
}

/// A definition found by the tag query, before it becomes a chunk.
struct Found {
    bytes: std::ops::Range<usize>,
    lines: Lines,
    kind: ChunkKind,
    name: String,
}

fn code_outline(lang: Lang, source: &str, parser: &mut Parser) -> Option<Outline> {
    parser.set_language(&lang.grammar()).ok()?;
    // tree-sitter recovers from syntax errors with ERROR nodes; `None` only comes from cancellation.
    let tree = parser.parse(source, None)?;
    let query = lang.tag_query();
    let capture_names = query.capture_names();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, tree.root_node(), source.as_bytes());

    let mut found = Vec::new();
    let mut defs = Vec::new();
    let mut refs: HashMap<String, u32> = HashMap::new();
    while let Some(m) = matches.next() {
        let mut definition = None;
        let mut name = None;
        for capture in m.captures() {
            let capture_name = capture_names[capture.index as usize];
            let text = || capture.node.utf8_text(source.as_bytes()).unwrap_or_default().to_owned();
            if capture_name == "name" {
                name = Some(text());
            } else if capture_name == "reference" {
                *refs.entry(text()).or_default() += 1;
            } else if let Some(kind) = ChunkKind::of_capture(capture_name) {
                definition = Some((capture.node, kind));
            }
        }
        if let (Some((node, kind)), Some(name)) = (definition, name) {
            defs.push(Def {
                name: name.clone(),
                kind,
                line: node.start_position().row as u32 + 1,
                signature: signature(node, source),
            });
            let node = with_wrappers(lang, node);
            let start = with_preamble(lang, node);
            found.push(Found {
                bytes: start.start_byte()..node.end_byte(),
                lines: Lines {
                    start: start.start_position().row as u32 + 1,
                    end: end_line(node),
                },
                kind,
                name,
            });
        }
    }
    // Containers before their contents; one chunk per node even if several patterns matched it.
    found.sort_by(|a, b| a.bytes.start.cmp(&b.bytes.start).then(b.bytes.end.cmp(&a.bytes.end)));
    found.dedup_by(|a, b| a.bytes == b.bytes);
    defs.sort_by_key(|d| d.line);
    defs.dedup_by(|a, b| a.line == b.line && a.name == b.name);

    let mut refs: Vec<(String, u32)> = refs.into_iter().collect();
    refs.sort();
    Some(Outline {
        chunks: nest(lang, &found, source),
        defs,
        refs,
    })
}

/// Turns sorted definitions into chunks: qualified names, holes for nested definitions, windows for long ones.
fn nest(lang: Lang, found: &[Found], source: &str) -> Vec<Chunk> {
    let mut qualified: Vec<String> = Vec::with_capacity(found.len());
    // A definition on exactly its container's lines (`interface I { void f(); }`, `typedef struct {…} t;`) is
    // quoted whole with it rather than hollowing it out.
    let mut merged = vec![false; found.len()];
    // Indices into `found` of the definitions enclosing the current one, outermost first.
    let mut open: Vec<usize> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        while open.last().is_some_and(|&o| found[o].bytes.end < f.bytes.end) {
            open.pop();
        }
        let symbol = match open.last() {
            Some(&parent) => {
                merged[i] = found[parent].lines == f.lines;
                format!("{}{}{}", qualified[parent], lang.path_separator(), f.name)
            }
            None => f.name.clone(),
        };
        qualified.push(symbol);
        open.push(i);
    }
    let mut chunks = Vec::with_capacity(found.len());
    for (i, f) in found.iter().enumerate() {
        if merged[i] {
            continue;
        }
        // Direct children: contained in `f` and not inside another contained definition.
        let mut holes: Vec<Lines> = Vec::new();
        let mut covered_to = f.bytes.start;
        for (child, merged) in found[i + 1..].iter().zip(&merged[i + 1..]) {
            if child.bytes.start >= f.bytes.end {
                break;
            }
            if !merged && child.bytes.start >= covered_to && child.bytes.end <= f.bytes.end {
                holes.push(child.lines);
                covered_to = child.bytes.end;
            }
        }
        let chunk = Chunk {
            lines: f.lines,
            holes,
            kind: f.kind,
            symbol: Some(qualified[i].clone()),
        };
        // Children covering every line leave nothing of the container to quote.
        if chunk.own_lines(source).all(|(_, line)| line.trim().is_empty()) {
            continue;
        }
        if chunk.holes.is_empty() && chunk.lines.len() > MAX_CHUNK_LINES {
            chunks.extend(windows(chunk.lines).map(|lines| Chunk { lines, ..chunk.clone() }));
        } else {
            chunks.push(chunk);
        }
    }
    chunks
}

/// The node a definition lives in when it is wrapped (decorators, `export`, templates).
fn with_wrappers(lang: Lang, mut node: Node<'_>) -> Node<'_> {
    while let Some(parent) = node.parent().filter(|p| lang.is_wrapper(p.kind())) {
        node = parent;
    }
    node
}

/// The first node of the doc comments and attributes directly above `node` (or `node` itself).
fn with_preamble(lang: Lang, node: Node<'_>) -> Node<'_> {
    let mut first = node;
    while let Some(prev) = first.prev_sibling() {
        let adjacent = prev.end_position().row + 1 >= first.start_position().row;
        if !(adjacent && lang.is_preamble(prev.kind())) {
            break;
        }
        first = prev;
    }
    first
}

/// The last line a node occupies (a node ending at column 0 ends on the line before).
fn end_line(node: Node<'_>) -> u32 {
    let end = node.end_position();
    let row = if end.column == 0 && end.row > node.start_position().row {
        end.row - 1
    } else {
        end.row
    };
    row as u32 + 1
}

fn signature(node: Node<'_>, source: &str) -> String {
    let line = source[node.start_byte()..].lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(MAX_SIGNATURE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// Cuts a run of lines into windows of [`WINDOW_LINES`].
fn windows(lines: Lines) -> impl Iterator<Item = Lines> {
    (lines.start..=lines.end)
        .step_by(WINDOW_LINES as usize)
        .map(move |start| Lines {
            start,
            end: (start + WINDOW_LINES - 1).min(lines.end),
        })
}

/// Sections of a text file: Markdown headings start one, and each is cut into windows when long.
fn text_sections(source: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut start = 1;
    let mut heading: Option<String> = None;
    let mut in_fence = false;
    let mut close = |start: u32, end: u32, heading: &Option<String>| {
        for lines in windows(Lines { start, end }) {
            chunks.push(Chunk {
                lines,
                holes: Vec::new(),
                kind: ChunkKind::Section,
                symbol: heading.clone(),
            });
        }
    };
    let mut last = 0;
    for (n, line) in (1..).zip(source.lines()) {
        last = n;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let is_heading = !in_fence && line.starts_with('#') && line.trim_start_matches('#').starts_with(' ');
        if is_heading {
            if n > start {
                close(start, n - 1, &heading);
            }
            start = n;
            heading = Some(line.trim_start_matches('#').trim().to_owned());
        }
    }
    if last >= start {
        close(start, last, &heading);
    }
    chunks.retain(|c| c.own_lines(source).any(|(_, l)| l.chars().any(char::is_alphanumeric)));
    chunks
}

/// Adds `Code` chunks for runs of lines no chunk covers (trimmed of blank lines, skipping runs with nothing but
/// punctuation), then sorts all chunks by position.
fn fill_gaps(chunks: &mut Vec<Chunk>, source: &str, line_count: u32) {
    let lines: Vec<&str> = source.lines().collect();
    let blank = |n: u32| lines[n as usize - 1].trim().is_empty();
    let mut covered = vec![false; line_count as usize + 1];
    for chunk in chunks.iter() {
        for n in chunk.lines.start..=chunk.lines.end.min(line_count) {
            covered[n as usize] = true;
        }
    }
    let mut n = 1;
    while n <= line_count {
        if covered[n as usize] || blank(n) {
            n += 1;
            continue;
        }
        let start = n;
        let mut end = n;
        while n <= line_count && !covered[n as usize] {
            if !blank(n) {
                end = n;
            }
            n += 1;
        }
        for window in windows(Lines { start, end }) {
            let text = &lines[window.start as usize - 1..window.end as usize];
            if text.iter().any(|l| l.chars().any(char::is_alphanumeric)) {
                chunks.push(Chunk {
                    lines: window,
                    holes: Vec::new(),
                    kind: ChunkKind::Code,
                    symbol: None,
                });
            }
        }
    }
    chunks.sort_by(|a, b| a.lines.start.cmp(&b.lines.start).then(b.lines.end.cmp(&a.lines.end)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(lang: Option<Lang>, source: &str) -> Vec<(String, &'static str, u32, u32)> {
        let outline = outline(lang, source, &mut Parser::new());
        outline
            .chunks
            .iter()
            .map(|c| {
                (
                    c.symbol.clone().unwrap_or_default(),
                    c.kind.name(),
                    c.lines.start,
                    c.lines.end,
                )
            })
            .collect()
    }

    fn symbols(lang: Lang, source: &str) -> Vec<String> {
        outline(Some(lang), source, &mut Parser::new())
            .chunks
            .into_iter()
            .filter_map(|c| c.symbol)
            .collect()
    }

    #[test]
    fn python_classes_hold_their_methods_as_holes_and_loose_code_becomes_code_chunks() {
        let source = "import os\n\nclass Session:\n    \"\"\"A session.\"\"\"\n    timeout = 3\n\n    @property\n    \
                      def closed(self):\n        return False\n\n    def send(self, req):\n        return req\n\n\
                      def helper():\n    pass\n";
        assert_eq!(
            chunks_of(Some(Lang::Python), source),
            [
                ("".into(), "code", 1, 1),
                ("Session".into(), "class", 3, 12),
                ("Session.closed".into(), "function", 7, 9),
                ("Session.send".into(), "function", 11, 12),
                ("helper".into(), "function", 14, 15),
            ]
        );
        let outline = outline(Some(Lang::Python), source, &mut Parser::new());
        let class = &outline.chunks[1];
        let own: Vec<u32> = class.own_lines(source).map(|(n, _)| n).collect();
        assert_eq!(own, [3, 4, 5, 6, 10]);
        assert_eq!(
            outline.defs.iter().map(|d| d.signature.as_str()).collect::<Vec<_>>(),
            [
                "class Session:",
                "def closed(self):",
                "def send(self, req):",
                "def helper():"
            ]
        );
    }

    #[test]
    fn rust_chunks_take_doc_comments_and_attributes_and_name_impl_methods() {
        let source = "/// A point.\n#[derive(Debug)]\nstruct Point { x: f32 }\n\nimpl Point {\n    /// Length.\n    \
                      fn norm(&self) -> f32 { self.x.abs() }\n}\n\nfn main() { let p = Point { x: 1.0 }; p.norm(); }\n";
        assert_eq!(
            chunks_of(Some(Lang::Rust), source),
            [
                ("Point".into(), "struct", 1, 3),
                ("Point".into(), "impl", 5, 8),
                ("Point::norm".into(), "function", 6, 7),
                ("main".into(), "function", 10, 10),
            ]
        );
        let refs = outline(Some(Lang::Rust), source, &mut Parser::new()).refs;
        assert!(refs.contains(&("norm".into(), 1)), "{refs:?}");
    }

    #[test]
    fn every_language_finds_its_definitions() {
        let cases: [(Lang, &str, &[&str]); 8] = [
            (
                Lang::Go,
                "package m\ntype Buf struct{ n int }\nfunc (b *Buf) Len() int { return b.n }\nfunc New() *Buf { return nil }\n",
                &["Buf", "Len", "New"],
            ),
            (
                Lang::Java,
                "class Cache {\n  Cache() {}\n  int get(int k) { return k; }\n}\ninterface Store { void put(); }\n",
                &["Cache", "Cache.Cache", "Cache.get", "Store"],
            ),
            (
                Lang::JavaScript,
                "export function parse(s) { return s }\nclass Lexer {\n  next() { return 1 }\n}\nconst tokenize = (s) => s.split(' ');\n",
                &["parse", "Lexer", "Lexer.next", "tokenize"],
            ),
            (
                Lang::TypeScript,
                "interface Opts { verbose: boolean }\ntype Id = string;\nexport class Server {\n  listen(port: number): void {}\n}\nenum Mode { A, B }\n",
                &["Opts", "Id", "Server", "Server.listen", "Mode"],
            ),
            (
                Lang::Tsx,
                "export function App(): JSX.Element { return <div/>; }\n",
                &["App"],
            ),
            (
                Lang::C,
                "typedef struct node { int v; } node_t;\nstatic int *find(node_t *n) { return 0; }\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
                &["node_t", "find", "MAX"],
            ),
            (
                Lang::Cpp,
                "namespace io {\nclass File {\n public:\n  int read(char *b);\n};\nint File::read(char *b) { return 0; }\n}\n",
                &["io", "io::File", "io::read"],
            ),
            (
                Lang::Python,
                "def broken(:\n    pass\n\ndef fine():\n    return 1\n",
                &["broken", "fine"],
            ),
        ];
        for (lang, source, expected) in cases {
            assert_eq!(symbols(lang, source), expected, "{lang:?}");
        }
    }

    #[test]
    fn markdown_splits_at_headings_outside_code_fences() {
        let source = "intro text\n# Install\nrun it\n```sh\n# not a heading\n```\n## Usage\nuse it\n";
        assert_eq!(
            chunks_of(None, source),
            [
                ("".into(), "section", 1, 1),
                ("Install".into(), "section", 2, 6),
                ("Usage".into(), "section", 7, 8)
            ]
        );
    }

    #[test]
    fn long_definitions_are_cut_into_windows() {
        let body: String = (0..200).map(|i| format!("    x{i} = {i}\n")).collect();
        let source = format!("def big():\n{body}");
        let chunks = chunks_of(Some(Lang::Python), &source);
        assert_eq!(
            chunks,
            [
                ("big".into(), "function", 1, 80),
                ("big".into(), "function", 81, 160),
                ("big".into(), "function", 161, 201)
            ]
        );
    }
}
