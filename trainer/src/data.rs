//! Training data from what users have: a project directory, a JSONL file of chat conversations, or plain text.
//!
//! Everything becomes *samples* (token ids, each marked learned or not), which are split into training and held-out
//! sets by a hash of their tokens (so a sample never lands in both, and the split does not move when other samples
//! come or go), then packed into examples of `seq_len` predicted tokens.
//!
//! - A directory is walked as retrieval walks it (`.gitignore` respected, binaries left out) and each file cut by
//!   tree-sitter into its definitions (functions, classes, methods; sections of text files); each definition, headed
//!   by its file's path, is a sample, and identical ones count once. A share of the definitions (`fim`) also becomes
//!   a fill-in-the-middle sample, laid out as `hearth complete` prompts the model, learning only the middle.
//! - A `.jsonl` file holds one object per line: `{"messages": [{"role": …, "content": …}, …]}` (a conversation,
//!   rendered with the model's chat template, learning only the assistant's turns) or `{"text": …}`.
//! - Any other file is one text sample.

use std::collections::HashSet;
use std::path::Path;

use hearth_runtime::fim::{FimRequest, fim_prompt};
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
        let bytes: Vec<u8> = self.tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        chance(draws(&bytes)[0], share)
    }
}

/// Four numbers drawn from `bytes` by SHA-256: the data's own randomness, the same on every machine and build and
/// for any seed, so the same data always makes the same samples.
fn draws(bytes: &[u8]) -> [u64; 4] {
    let digest = Sha256::digest(bytes);
    core::array::from_fn(|i| u64::from_le_bytes(digest[8 * i..8 * i + 8].try_into().expect("8 of 32 bytes")))
}

/// Whether `draw` falls in the first `share` of its range (to a ten-thousandth).
fn chance(draw: u64, share: f64) -> bool {
    (draw % 10_000) < (share * 10_000.0) as u64
}

/// What to build from the data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataOptions {
    /// Tokens predicted per example.
    pub seq_len: usize,
    /// Share of the samples held out to measure on.
    pub held_out: f64,
    /// Share of a project's definitions that also become fill-in-the-middle samples (the model must have FIM tokens;
    /// 0 makes none).
    pub fim: f64,
}

/// What the data turned into, for the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataReport {
    /// What the source was (`project`, `conversations`, `text`).
    pub kind: &'static str,
    /// Files read.
    pub files: usize,
    /// Samples kept (fill-in-the-middle ones included).
    pub samples: usize,
    /// Of them, fill-in-the-middle samples.
    pub fim_samples: usize,
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

/// Builds a dataset from `path` for a model with `tokenizer` and `template`.
pub fn build(
    path: &Path,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    options: DataOptions,
    progress: &mut dyn Progress,
) -> Result<Dataset, DataError> {
    let DataOptions { seq_len, held_out, fim } = options;
    let Documents {
        kind,
        files,
        repo,
        documents,
        mut duplicates,
    } = documents(path, progress)?;
    progress.stage("tokenizing", Some(documents.len() as u64), Unit::Items);
    // Each sample with its fill-in-the-middle companion, if it has one.
    let mut samples: Vec<(Sample, Option<Sample>)> = Vec::with_capacity(documents.len());
    for (index, document) in documents.iter().enumerate() {
        progress.advance(1);
        let plain = |text: &str| Sample::all_learned(tokenizer.encode(text, false, false));
        samples.push(match document {
            Document::Text(text) => (plain(text), None),
            Document::Definition { path, text: body } => {
                let request = FimRequest {
                    repo_name: repo.as_deref(),
                    path: Some(path),
                    ..FimRequest::default()
                };
                let companion = fim_sample(tokenizer, request, body, fim).filter(|s| s.tokens.len() <= seq_len + 1);
                (plain(&format!("{path}\n{body}")), companion)
            }
            Document::Conversation(messages) => {
                let sample = conversation(messages, tokenizer, template)
                    .map_err(|why| DataError::Template { index: index + 1, why })?;
                (sample, None)
            }
        });
    }
    progress.finish_stage();
    let mut seen = HashSet::new();
    let before = samples.len();
    samples.retain(|(s, _)| s.learned.iter().any(|&l| l) && seen.insert(s.tokens.clone()));
    duplicates += before - samples.len();
    // A companion goes to its definition's side: a middle held out must not be trained on in its plain sample. All
    // companions come after all plain samples, so no example shows a definition next to its own middle.
    let mut fim_samples = samples.iter().filter(|(_, c)| c.is_some()).count();
    let (train, held_out): (Vec<Sample>, Vec<Sample>) = if let [(only, _)] = &samples[..] {
        // One text gets split by position instead (its last part held out), so it still has a held-out set; it has
        // no companion, which would hold its held-out part.
        fim_samples = 0;
        split_single(only, held_out)
    } else {
        let (train, held): (Vec<_>, Vec<_>) = samples.iter().cloned().partition(|(s, _)| !s.held_out(held_out));
        let with_companions = |pairs: Vec<(Sample, Option<Sample>)>| {
            let (plain, companions): (Vec<Sample>, Vec<Option<Sample>>) = pairs.into_iter().unzip();
            plain.into_iter().chain(companions.into_iter().flatten()).collect()
        };
        (with_companions(train), with_companions(held))
    };
    let separator = tokenizer.eos();
    let report = DataReport {
        kind,
        files,
        samples: samples.len() + fim_samples,
        fim_samples,
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

/// A fill-in-the-middle sample of a definition `body`, for about `rate` of definitions: the body cut at two character
/// boundaries drawn from its hash, laid out as `hearth complete` prompts the model (`request`'s project name and path
/// first when the model has a file separator), then the middle, which alone is learned. The end of the middle is
/// learned from the separator `pack` puts after every sample (an end-of-generation token). None when the model has no
/// FIM tokens or the body is shorter than two characters.
fn fim_sample(tokenizer: &Tokenizer, request: FimRequest<'_>, body: &str, rate: f64) -> Option<Sample> {
    let [pick, first, second, _] = draws(body.as_bytes());
    let chars = body.chars().count();
    if !chance(pick, rate) || chars < 2 {
        return None;
    }
    // Cut points are character counts, 0..=chars; the middle holds at least one character.
    let (a, b) = ((first % chars as u64) as usize, (second % chars as u64) as usize);
    let (start, end) = (a.min(b), a.max(b) + 1);
    let byte = |c: usize| body.char_indices().nth(c).map_or(body.len(), |(i, _)| i);
    let (start, end) = (byte(start), byte(end));
    let prompt = fim_prompt(
        tokenizer,
        &FimRequest {
            prefix: &body[..start],
            suffix: &body[end..],
            ..request
        },
    )
    .ok()?;
    let middle = tokenizer.encode(&body[start..end], false, false);
    let learned = [vec![false; prompt.len()], vec![true; middle.len()]].concat();
    Some(Sample {
        tokens: [prompt, middle].concat(),
        learned,
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
    /// A definition mined from a project, learned whole after its file's path (and as fill-in-the-middle).
    Definition {
        /// Its file, relative to the project.
        path: String,
        /// Its text.
        text: String,
    },
    /// A conversation, of which the assistant's turns are learned.
    Conversation(Vec<Message>),
}

impl Document {
    /// The document as one line of the JSONL that GPU trainers (TRL, axolotl, Unsloth) read: `{"text": …}` or
    /// `{"messages": […]}`.
    pub fn to_json_line(&self) -> String {
        match self {
            Document::Text(text) => serde_json::json!({ "text": text }).to_string(),
            Document::Definition { path, text } => serde_json::json!({ "text": format!("{path}\n{text}") }).to_string(),
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
    /// The project's name (its directory's), for a project.
    pub repo: Option<String>,
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
            repo: None,
            documents: jsonl_documents(path, &text)?,
            duplicates: 0,
        });
    }
    Ok(Documents {
        kind: "text",
        files: 1,
        repo: None,
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
            documents.push(Document::Definition {
                path: file.path.clone(),
                text,
            });
        }
    }
    progress.finish_stage();
    Ok(Documents {
        kind: "project",
        files: files.len(),
        repo: root
            .canonicalize()
            .ok()
            .and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned())),
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
