//! The programming languages retrieval parses, each with its tree-sitter grammar and tag query.
//!
//! A tag query (in `queries/<lang>.scm`) names what matters in a syntax tree:
//! - `@definition.<kind>` captures a whole definition (function, class, impl …): it becomes a chunk, and `@name`
//!   in the same pattern is its symbol;
//! - `@reference` captures a name used at that spot (a call, a type), which links files in the repo map.
//!
//! The queries are ours rather than the grammars' bundled `tags.scm`: those capture only the name line in C/C++
//! (no function bodies), leave out Rust `impl` blocks and TypeScript's inherited JavaScript forms, and have no
//! references at all for some languages.

use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tree_sitter::{Language, Query};

/// A language with a grammar and tag query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lang {
    /// Python (`.py`, `.pyi`).
    Python,
    /// Rust (`.rs`).
    Rust,
    /// JavaScript, JSX included (`.js`, `.mjs`, `.cjs`, `.jsx`).
    JavaScript,
    /// TypeScript (`.ts`, `.mts`, `.cts`).
    TypeScript,
    /// TypeScript with JSX (`.tsx`).
    Tsx,
    /// Go (`.go`).
    Go,
    /// C (`.c`, `.h`).
    C,
    /// C++ (`.cc`, `.cpp`, `.cxx`, `.hh`, `.hpp`, `.hxx`).
    Cpp,
    /// Java (`.java`).
    Java,
}

impl Lang {
    /// Every language, for tests and help text.
    pub const ALL: [Lang; 9] = [
        Lang::Python,
        Lang::Rust,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Tsx,
        Lang::Go,
        Lang::C,
        Lang::Cpp,
        Lang::Java,
    ];

    /// The language of a file, by its extension.
    pub fn of_path(path: &Path) -> Option<Lang> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "py" | "pyi" => Lang::Python,
            "rs" => Lang::Rust,
            "js" | "mjs" | "cjs" | "jsx" => Lang::JavaScript,
            "ts" | "mts" | "cts" => Lang::TypeScript,
            "tsx" => Lang::Tsx,
            "go" => Lang::Go,
            "c" | "h" => Lang::C,
            "cc" | "cpp" | "cxx" | "hh" | "hpp" | "hxx" => Lang::Cpp,
            "java" => Lang::Java,
            _ => return None,
        })
    }

    /// The name Markdown code fences use for it.
    pub fn fence(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Rust => "rust",
            Lang::JavaScript => "javascript",
            Lang::TypeScript => "typescript",
            Lang::Tsx => "tsx",
            Lang::Go => "go",
            Lang::C => "c",
            Lang::Cpp => "cpp",
            Lang::Java => "java",
        }
    }

    /// The fence name for a file by its extension (empty when it is not code hearth parses).
    pub fn fence_of(path: &Path) -> &'static str {
        Lang::of_path(path).map_or("", Lang::fence)
    }

    /// How a nested symbol is joined to its container's name (`Session.push`, `Session::push`).
    pub fn path_separator(self) -> &'static str {
        match self {
            Lang::Rust | Lang::Cpp => "::",
            _ => ".",
        }
    }

    /// Node kinds that wrap a definition and belong to its chunk (decorators, `export`, `template<…>`).
    pub fn is_wrapper(self, kind: &str) -> bool {
        matches!(
            (self, kind),
            (Lang::Python, "decorated_definition")
                | (Lang::JavaScript | Lang::TypeScript | Lang::Tsx, "export_statement")
                | (Lang::Cpp, "template_declaration")
        )
    }

    /// Node kinds that, directly above a definition, document it and belong to its chunk.
    pub fn is_preamble(self, kind: &str) -> bool {
        kind.contains("comment") || (self == Lang::Rust && kind == "attribute_item") || kind == "decorator"
    }

    /// The grammar.
    pub fn grammar(self) -> Language {
        match self {
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::C => tree_sitter_c::LANGUAGE.into(),
            Lang::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            Lang::Java => tree_sitter_java::LANGUAGE.into(),
        }
    }

    /// The compiled tag query (compiled once per process).
    pub fn tag_query(self) -> &'static Query {
        static QUERIES: [OnceLock<Query>; Lang::ALL.len()] = [const { OnceLock::new() }; Lang::ALL.len()];
        QUERIES[self as usize].get_or_init(|| {
            let source = match self {
                Lang::Python => include_str!("queries/python.scm"),
                Lang::Rust => include_str!("queries/rust.scm"),
                Lang::JavaScript => include_str!("queries/javascript.scm"),
                Lang::TypeScript | Lang::Tsx => include_str!("queries/typescript.scm"),
                Lang::Go => include_str!("queries/go.scm"),
                Lang::C => include_str!("queries/c.scm"),
                Lang::Cpp => include_str!("queries/cpp.scm"),
                Lang::Java => include_str!("queries/java.scm"),
            };
            // The queries ship inside the binary and a unit test compiles every one: failure here is a bug.
            Query::new(&self.grammar(), source).unwrap_or_else(|e| panic!("tag query for {self:?}: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_query_compiles_against_its_grammar() {
        for lang in Lang::ALL {
            let query = lang.tag_query();
            let names = query.capture_names();
            assert!(names.contains(&"name"), "{lang:?}");
            assert!(names.contains(&"reference"), "{lang:?}");
            assert!(names.iter().any(|n| n.starts_with("definition.")), "{lang:?}");
        }
    }

    #[test]
    fn extensions_map_to_languages() {
        assert_eq!(Lang::of_path(Path::new("a/b.PY")), Some(Lang::Python));
        assert_eq!(Lang::of_path(Path::new("x.tsx")), Some(Lang::Tsx));
        assert_eq!(Lang::of_path(Path::new("x.hpp")), Some(Lang::Cpp));
        assert_eq!(Lang::of_path(Path::new("README.md")), None);
        assert_eq!(Lang::of_path(Path::new("Makefile")), None);
    }
}
