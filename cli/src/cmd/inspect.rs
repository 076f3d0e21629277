//! `hearth inspect`: what is in a GGUF file, readably (or as JSON with `--json`).

use std::collections::BTreeMap;

use clap::Args;
use hearth_kernel::GgmlType;
use hearth_kernel::gguf::{Array, Gguf, Value};
use hearth_runtime::ModelFile;
use serde_json::{Value as Json, json};

use super::models::human_bytes;
use crate::args::ModelArg;

/// Elements of an array shown before eliding the rest.
const ARRAY_HEAD: usize = 8;

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Print JSON (metadata with arrays cut to their first elements, tensors, totals per type).
    #[arg(long)]
    json: bool,
    /// Leave out the per-tensor table.
    #[arg(long)]
    no_tensors: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let path = args.model.resolve()?;
    let file = ModelFile::open(&path)?;
    let gguf = file.gguf();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(gguf, &path.display().to_string()))?
        );
    } else {
        print_text(gguf, &path.display().to_string(), !args.no_tensors);
    }
    Ok(())
}

/// Tensor count, element count and bytes for one type.
#[derive(Default)]
struct Totals {
    tensors: usize,
    elems: u64,
    bytes: u64,
}

fn totals_by_type(gguf: &Gguf<'_>) -> BTreeMap<GgmlType, Totals> {
    let mut totals: BTreeMap<GgmlType, Totals> = BTreeMap::new();
    for t in gguf.tensors() {
        let entry = totals.entry(t.dtype).or_default();
        entry.tensors += 1;
        entry.elems += t.n_elems() as u64;
        entry.bytes += t.data.len() as u64;
    }
    totals
}

fn value_json(value: Value<'_>) -> Json {
    match value {
        Value::U8(v) => v.into(),
        Value::I8(v) => v.into(),
        Value::U16(v) => v.into(),
        Value::I16(v) => v.into(),
        Value::U32(v) => v.into(),
        Value::I32(v) => v.into(),
        Value::F32(v) => v.into(),
        Value::Bool(v) => v.into(),
        Value::String(v) => v.into(),
        Value::U64(v) => v.into(),
        Value::I64(v) => v.into(),
        Value::F64(v) => v.into(),
        Value::Array(a) => json!({
            "element_type": a.elem_type().name(),
            "len": a.len(),
            "head": a.iter().take(ARRAY_HEAD).map(value_json).collect::<Vec<_>>(),
        }),
    }
}

fn to_json(gguf: &Gguf<'_>, path: &str) -> Json {
    let metadata: serde_json::Map<String, Json> = gguf
        .metadata()
        .iter()
        .map(|e| (e.key.to_owned(), value_json(e.value)))
        .collect();
    let tensors: Vec<Json> = gguf
        .tensors()
        .iter()
        .map(|t| json!({"name": t.name, "type": t.dtype.name(), "ne": t.shape(), "offset": t.offset, "bytes": t.data.len()}))
        .collect();
    let totals: serde_json::Map<String, Json> = totals_by_type(gguf)
        .into_iter()
        .map(|(dtype, t)| {
            (
                dtype.name().to_owned(),
                json!({"tensors": t.tensors, "elements": t.elems, "bytes": t.bytes}),
            )
        })
        .collect();
    json!({
        "path": path,
        "file_bytes": gguf.bytes().len(),
        "version": gguf.version(),
        "alignment": gguf.alignment(),
        "data_offset": gguf.data_offset(),
        "parameters": gguf.tensors().iter().map(|t| t.n_elems() as u64).sum::<u64>(),
        "metadata": metadata,
        "tensors": tensors,
        "totals": totals,
    })
}

/// One line for a value; arrays show their type, length and first elements.
fn value_text(value: Value<'_>) -> String {
    match value {
        Value::String(s) => format!("{:?}", truncate(s, 80)),
        Value::Array(a) => array_text(a),
        Value::F32(v) => format!("{v}"),
        Value::F64(v) => format!("{v}"),
        other => value_json(other).to_string(),
    }
}

fn array_text(a: Array<'_>) -> String {
    let head: Vec<String> = a.iter().take(ARRAY_HEAD).map(value_text).collect();
    let more = if a.len() > ARRAY_HEAD { ", …" } else { "" };
    format!("[{} × {}] {}{more}", a.elem_type(), a.len(), head.join(", "))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}… ({} bytes)", &s[..cut], s.len()),
        None => s.to_owned(),
    }
}

/// Names the tokens behind the BOS/EOS/... ids, which the raw ids leave to the reader to look up.
fn print_special_tokens(gguf: &Gguf<'_>) {
    let Some(tokens) = gguf.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) else {
        return;
    };
    for role in ["bos", "eos", "eot", "unknown", "padding"] {
        let Some(id) = gguf
            .get(&format!("tokenizer.ggml.{role}_token_id"))
            .and_then(|v| v.as_u64())
        else {
            continue;
        };
        let text = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.iter().nth(i))
            .and_then(|v| v.as_str());
        match text {
            Some(text) => println!("  ({role} token {id} is {text:?})"),
            None => println!("  ({role} token {id} is out of the vocabulary!)"),
        }
    }
}

fn print_text(gguf: &Gguf<'_>, path: &str, with_tensors: bool) {
    let str_key = |k: &str| gguf.get(k).and_then(|v| v.as_str());
    let arch = str_key("general.architecture").unwrap_or("(not set)");
    let params: u64 = gguf.tensors().iter().map(|t| t.n_elems() as u64).sum();
    println!("file          {path}");
    println!(
        "format        GGUF v{}, {}, alignment {}, tensor data from byte {}",
        gguf.version(),
        human_bytes(gguf.bytes().len() as u64),
        gguf.alignment(),
        gguf.data_offset()
    );
    println!("architecture  {arch}");
    if let Some(name) = str_key("general.name") {
        println!("name          {name}");
    }
    println!(
        "parameters    {:.3} B in {} tensors",
        params as f64 / 1e9,
        gguf.tensors().len()
    );

    // Metadata in four groups, each in file order.
    let section_of = |key: &str| match key.split_once('.').map(|(head, _)| head) {
        Some(head) if head == arch => "hyper-parameters",
        Some("tokenizer") => "tokenizer",
        Some("general") => "general",
        _ => "other",
    };
    for title in ["hyper-parameters", "tokenizer", "general", "other"] {
        let entries: Vec<_> = gguf.metadata().iter().filter(|e| section_of(e.key) == title).collect();
        if entries.is_empty() {
            continue;
        }
        println!("\n{title}");
        let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
        for e in entries {
            println!("  {:<width$}  {}", e.key, value_text(e.value));
        }
        if title == "tokenizer" {
            print_special_tokens(gguf);
        }
    }
    if with_tensors {
        println!("\ntensors");
        let width = gguf.tensors().iter().map(|t| t.name.len()).max().unwrap_or(0);
        println!(
            "  {:<width$}  {:<6} {:<22} {:>12}",
            "name", "type", "shape (ne)", "bytes"
        );
        for t in gguf.tensors() {
            println!(
                "  {:<width$}  {:<6} {:<22} {:>12}",
                t.name,
                t.dtype.name(),
                format!("{:?}", t.shape()),
                t.data.len()
            );
        }
    }

    println!("\nby type");
    let total_bytes: u64 = gguf.tensors().iter().map(|t| t.data.len() as u64).sum();
    for (dtype, t) in totals_by_type(gguf) {
        println!(
            "  {:<6} {:>4} tensors {:>14} elements {:>10} {:>5.1}%  {:.2} bits/weight",
            dtype.name(),
            t.tensors,
            t.elems,
            human_bytes(t.bytes),
            100.0 * t.bytes as f64 / total_bytes.max(1) as f64,
            8.0 * t.bytes as f64 / t.elems.max(1) as f64
        );
    }
}
