//! How long parsing a real model's GGUF header takes (metadata with a 151k-token vocabulary, 338 tensor infos): the
//! fixed cost every hearth command pays before its first token.

use criterion::{Criterion, criterion_group, criterion_main};
use hearth_kernel::gguf::Gguf;
use hearth_runtime::ModelFile;
use hearth_runtime::store::DEFAULT_MODEL;

fn parse_default_model(c: &mut Criterion) {
    let file = ModelFile::open(hearth_benches::bench_model(DEFAULT_MODEL)).expect("open model");
    let bytes = file.gguf().bytes();
    c.bench_function("gguf_parse/qwen2.5-coder-1.5b", |b| {
        b.iter(|| {
            Gguf::parse(std::hint::black_box(bytes))
                .expect("valid model")
                .tensors()
                .len()
        })
    });
}

criterion_group!(benches, parse_default_model);
criterion_main!(benches);
