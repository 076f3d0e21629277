//! Training data from what users have: a project directory, a JSONL file of chat conversations, or plain text.
//!
//! Everything becomes *samples* (token ids, each marked learned or not), which are split into training and held-out
//! sets by a hash of their tokens (so a sample never lands in both, and the split does not move when other samples
//! come or go), then packed into examples of `seq_len` predicted tokens.
//!
//! - A directory is walked as retrieval walks it (`.gitignore` respected, binaries left out) and each file cut by
//!   tree-sitter into its definitions (functions, classes, methods; sections of text files); each definition, headed
//!   by its file's path, is a sample, and identical ones count once.
//! - A `.jsonl` file holds one object per line: `{"messages": [{"role": …, "content": …}, …]}` (a conversation,
//!   rendered with the model's chat template, learning only the assistant's turns) or `{"text": …}`.
//! - Any other file is one text sample.

use std::collections::HashSet;
use std::path::Path;

use hearth_runtime::progress::{Progress, Unit};
use hearth_runtime::retrieval::Project;
use hearth_runtime::template::{ChatTemplate, Message};
use hearth_runtime::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};

use crate::step::Example;

/// Why training data could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A line of a JSONL file that is not a conversation or a text.
    #[error("{path}, line {line}: {why}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// A conversation the model's chat template cannot render.
    #[error("conversation {index}: the chat template cannot render it: {why}")]
    Template {
        /// 1-based position among the documents.
        index: usize,
        /// The template's error.
        why: String,
    },
    /// Walking a project.
    #[error(transparent)]
    Project(#[from] hearth_runtime::retrieval::RetrievalError),
    /// Too little data to train on.
    #[error("{0}")]
    TooLittle(String),
}

/// One sample: tokens, and which of them are learned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    tokens: Vec<u32>,
    learned: Vec<bool>,
}

impl Sample {
    fn all_learned(tokens: Vec<u32>) -> Self {
        let learned = vec![true; tokens.len()];
        Sample { tokens, learned }
    }

    /// Whether it goes to the held-out set: about one sample in `1 / share`, decided by a SHA-256 of its tokens (the
    /// same on every machine and build).
    fn held_out(&self, share: f64) -> bool {
        let mut hasher = Sha256::new();
        for token in &self.tokens {
            hasher.update(token.to_le_bytes());
        }
        let digest = hasher.finalize();
        let draw = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"));
        (draw % 10_000) < (share * 10_000.0) as u64
    }
}

/// What the data turned into, for the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataReport {
    /// What the source was (`project`, `conversations`, `text`).
    pub kind: &'static str,
    /// Files read.
    pub files: usize,
    /// Samples kept.
    pub samples: usize,
    /// Samples dropped as repeats of earlier ones.
    pub duplicates: usize,
    /// Samples in the held-out set.
    pub held_out_samples: usize,
    /// Learned tokens of the training set.
    pub train_tokens: usize,
    /// Learned tokens of the held-out set.
    pub held_out_tokens: usize,
}

/// Training and held-out examples.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Examples to train on.
    pub train: Vec<Example>,
    /// Examples to measure on, never trained on.
    pub held_out: Vec<Example>,
    /// How they were made.
    pub report: DataReport,
}

/// Builds a dataset from `path` for a model with `tokenizer` and `template`: examples of `seq_len` predicted
/// tokens, about `held_out_share` of the samples held out.
pub fn build(
    path: &Path,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    seq_len: usize,
    held_out_share: f64,
    progress: &mut dyn Progress,
) -> Result<Dataset, DataError> {
    let Documents {
        kind,
        files,
        documents,
        mut duplicates,
    } = documents(path, progress)?;
    progress.stage("tokenizing", Some(documents.len() as u64), Unit::Items);
    let mut samples = Vec::with_capacity(documents.len());
    for (index, document) in documents.iter().enumerate() {
        progress.advance(1);
        let sample = match document {
            Document::Text(text) => Sample::all_learned(tokenizer.encode(text, false, false)),
            Document::Conversation(messages) => conversation(messages, tokenizer, template)
                .map_err(|why| DataError::Template { index: index + 1, why })?,
        };
        samples.push(sample);
    }
    progress.finish_stage();
    let mut seen = HashSet::new();
    let before = samples.len();
    let samples: Vec<Sample> = samples
        .into_iter()
        .filter(|s| s.learned.iter().any(|&l| l) && seen.insert(s.tokens.clone()))
        .collect();
    duplicates += before - samples.len();
    // One text gets split by position instead (its last part held out), so it still has a held-out set.
    let (train, held_out): (Vec<Sample>, Vec<Sample>) = if samples.len() == 1 {
        split_single(&samples[0], held_out_share)
    } else {
        samples.iter().cloned().partition(|s| !s.held_out(held_out_share))
    };
    let separator = tokenizer.eos();
    let report = DataReport {
        kind,
        files,
        samples: samples.len(),
        duplicates,
        held_out_samples: held_out.len(),
        train_tokens: 0,
        held_out_tokens: 0,
    };
    let train = pack(&train, separator, seq_len);
    let held_out = pack(&held_out, separator, seq_len);
    let report = DataReport {
        train_tokens: train.iter().map(Example::learned_tokens).sum(),
        held_out_tokens: held_out.iter().map(Example::learned_tokens).sum(),
        ..report
    };
    if train.is_empty() {
        return Err(DataError::TooLittle(format!(
            "{} holds nothing to learn from ({} samples)",
            path.display(),
            report.samples
        )));
    }
    Ok(Dataset {
        train,
        held_out,
        report,
    })
}

/// A lone sample's first part for training and its last `share` (at least one example's worth when it can) held out.
fn split_single(sample: &Sample, share: f64) -> (Vec<Sample>, Vec<Sample>) {
    let n = sample.tokens.len();
    let cut = n - ((n as f64 * share) as usize).min(n / 2);
    let part = |range: std::ops::Range<usize>| Sample {
        tokens: sample.tokens[range.clone()].to_vec(),
        learned: sample.learned[range].to_vec(),
    };
    let held_out = if cut < n { vec![part(cut..n)] } else { Vec::new() };
    (vec![part(0..cut)], held_out)
}

/// Concatenates `samples` (with `separator` between them) and cuts the stream into examples of `seq_len` predicted
/// tokens; consecutive examples share one token (the last input of one is the first of the next).
fn pack(samples: &[Sample], separator: Option<u32>, seq_len: usize) -> Vec<Example> {
    let mut stream = Sample {
        tokens: Vec::new(),
        learned: Vec::new(),
    };
    for sample in samples {
        if let (Some(sep), false) = (separator, stream.tokens.is_empty()) {
            stream.tokens.push(sep);
            stream.learned.push(true);
        }
        stream.tokens.extend(&sample.tokens);
        stream.learned.extend(&sample.learned);
    }
    let seq_len = seq_len.max(1);
    (0..stream.tokens.len().saturating_sub(1))
        .step_by(seq_len)
        .map(|start| {
            let end = (start + seq_len + 1).min(stream.tokens.len());
            let learned = &stream.learned[start..end];
            Example::next_tokens(&stream.tokens[start..end], |i| learned[i])
        })
        .filter(|e| e.learned_tokens() > 0)
        .collect()
}

/// A sample as the data holds it, before tokenization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    /// Text to learn whole.
    Text(String),
    /// A conversation, of which the assistant's turns are learned.
    Conversation(Vec<Message>),
}

impl Document {
    /// The document as one line of the JSONL that GPU trainers (TRL, axolotl, Unsloth) read: `{"text": …}` or
    /// `{"messages": […]}`.
    pub fn to_json_line(&self) -> String {
        match self {
            Document::Text(text) => serde_json::json!({ "text": text }).to_string(),
            Document::Conversation(messages) => serde_json::json!({ "messages": messages }).to_string(),
        }
    }
}

/// The documents of a data path, before tokenization.
#[derive(Clone, Debug, Default)]
pub struct Documents {
    /// What the source was (`project`, `conversations`, `text`).
    pub kind: &'static str,
    /// Files read.
    pub files: usize,
    /// The documents, in the order the data holds them.
    pub documents: Vec<Document>,
    /// Documents left out as copies of earlier ones.
    pub duplicates: usize,
}

/// Reads the documents of `path`: a project directory, a `.jsonl` file, or a text file.
pub fn documents(path: &Path, progress: &mut dyn Progress) -> Result<Documents, DataError> {
    if path.is_dir() {
        return project_documents(path, progress);
    }
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "jsonl") {
        return Ok(Documents {
            kind: "conversations",
            files: 1,
            documents: jsonl_documents(path, &text)?,
            duplicates: 0,
        });
    }
    Ok(Documents {
        kind: "text",
        files: 1,
        documents: vec![Document::Text(text)],
        duplicates: 0,
    })
}

/// Each definition of each file of the project at `root`, headed by its path, leaving out copies of earlier ones
/// (vendored or copied code, whatever its path).
fn project_documents(root: &Path, progress: &mut dyn Progress) -> Result<Documents, DataError> {
    let (project, _) = Project::index(root, progress)?;
    let files = project.files();
    progress.stage("mining definitions", Some(files.len() as u64), Unit::Items);
    let (mut documents, mut seen, mut duplicates) = (Vec::new(), HashSet::new(), 0);
    for file in files {
        progress.advance(1);
        if file.skipped.is_some() {
            continue;
        }
        let Ok(source) = std::fs::read_to_string(root.join(&file.path)) else {
            continue;
        };
        for chunk in &file.outline.chunks {
            let mut text = String::new();
            let mut next = chunk.lines.start;
            for (n, line) in chunk.own_lines(&source) {
                if n != next {
                    text.push_str("⋮\n");
                }
                text.push_str(line);
                text.push('\n');
                next = n + 1;
            }
            if !seen.insert(text.trim().to_owned()) {
                duplicates += 1;
                continue;
            }
            documents.push(Document::Text(format!("{}\n{text}", file.path)));
        }
    }
    progress.finish_stage();
    Ok(Documents {
        kind: "project",
        files: files.len(),
        documents,
        duplicates,
    })
}

/// The documents of a JSONL file: conversations and texts, one per non-blank line.
fn jsonl_documents(path: &Path, text: &str) -> Result<Vec<Document>, DataError> {
    let mut documents = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| DataError::BadLine {
            path: path.display().to_string(),
            line: index + 1,
            why,
        };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if let Some(text) = value.get("text").and_then(|t| t.as_str()) {
            documents.push(Document::Text(text.to_owned()));
            continue;
        }
        let messages: Vec<Message> = value
            .get("messages")
            .and_then(|m| m.as_array())
            .ok_or_else(|| bad("expected {\"messages\": [...]} or {\"text\": \"...\"}".into()))?
            .iter()
            .map(|m| {
                let field = |k: &str| m.get(k).and_then(|v| v.as_str());
                match (field("role"), field("content")) {
                    (Some(role), Some(content)) => Ok(Message::new(role, content)),
                    _ => Err(bad("each message needs a \"role\" and a \"content\" string".into())),
                }
            })
            .collect::<Result<_, _>>()?;
        if !messages.iter().any(|m| m.role == "assistant") {
            return Err(bad("the conversation has no assistant message to learn".into()));
        }
        documents.push(Document::Conversation(messages));
    }
    Ok(documents)
}

/// A conversation's tokens, learning each assistant turn: the tokens between the prompt that asks for it
/// (`messages[..k]` with the generation prompt) and the text that includes it (`messages[..=k]`).
fn conversation(messages: &[Message], tokenizer: &Tokenizer, template: &ChatTemplate) -> Result<Sample, String> {
    let encode = |messages: &[Message], open: bool| -> Result<Vec<u32>, String> {
        let text = template.render(messages, open).map_err(|e| e.to_string())?;
        Ok(tokenizer.encode(&text, false, true))
    };
    let tokens = encode(messages, false)?;
    let mut learned = vec![false; tokens.len()];
    for (k, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let start = encode(&messages[..k], true)?.len();
        let end = encode(&messages[..=k], false)?.len().min(tokens.len());
        learned[start.min(end)..end].fill(true);
    }
    Ok(Sample { tokens, learned })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tokens: &[u32], learned: &[bool]) -> Sample {
        Sample {
            tokens: tokens.to_vec(),
            learned: learned.to_vec(),
        }
    }

    #[test]
    fn packing_joins_samples_and_cuts_overlapping_windows_that_keep_the_masks() {
        let samples = [sample(&[1, 2, 3], &[true, false, true]), sample(&[4, 5], &[true, true])];
        let examples = pack(&samples, Some(0), 3);
        // Stream: 1 2 3 0 4 5 (0 is the separator, learned).
        assert_eq!(
            examples,
            [
                Example {
                    inputs: vec![1, 2, 3],
                    targets: vec![None, Some(3), Some(0)],
                },
                Example {
                    inputs: vec![0, 4],
                    targets: vec![Some(4), Some(5)],
                },
            ]
        );
    }

    #[test]
    fn a_lone_text_is_split_by_position_and_the_split_of_many_is_stable() {
        let one = sample(&(0..100).collect::<Vec<_>>(), &[true; 100]);
        let (train, held_out) = split_single(&one, 0.1);
        assert_eq!((train[0].tokens.len(), held_out[0].tokens.len()), (90, 10));
        assert_eq!(held_out[0].tokens[0], 90);
        // The same sample is always on the same side; about the share of many are held out.
        let many: Vec<Sample> = (0..2000u32).map(|i| sample(&[i, i + 1], &[true, true])).collect();
        let held = many.iter().filter(|s| s.held_out(0.05)).count();
        assert!((60..=140).contains(&held), "{held} of 2000 held out");
        assert!(many.iter().all(|s| s.held_out(0.05) == s.clone().held_out(0.05)));
    }
}
