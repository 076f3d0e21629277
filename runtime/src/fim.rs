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
