//! Project retrieval speed: a cold index (no `.hearth/`), a re-index with nothing changed, and queries against the
//! loaded index. The project is `$HEARTH_BENCH_PROJECT` (default: this workspace); BENCHMARKS.md records the figures
//! for Django 5.1.4's wheel (3,627 files) and how to fetch it.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hearth_runtime::NoProgress;
use hearth_runtime::retrieval::{HEARTH_DIR, Project};

const QUERIES: [&str; 3] = [
    "how is the request body parsed",
    "where are database connections closed",
    "HttpResponseRedirect",
];

fn project_root() -> PathBuf {
    std::env::var_os("HEARTH_BENCH_PROJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn retrieval(c: &mut Criterion) {
    let root = project_root();
    let mut group = c.benchmark_group("retrieval");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("index_cold", |b| {
        b.iter(|| {
            // A missing index is the normal first run; anything else is a broken bench setup.
            if let Err(e) = std::fs::remove_dir_all(root.join(HEARTH_DIR)) {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
            }
            Project::index(&root, &mut NoProgress).expect("index").1.files
        })
    });
    group.bench_function("index_unchanged", |b| {
        b.iter(|| Project::index(&root, &mut NoProgress).expect("index").1.files)
    });
    let (project, report) = Project::index(&root, &mut NoProgress).expect("index");
    eprintln!("{}: {} files, {} chunks", root.display(), report.files, report.chunks);
    group.bench_function("query", |b| b.iter(|| QUERIES.map(|q| project.search(q, 10).len())));
    group.finish();
}

criterion_group!(benches, retrieval);
criterion_main!(benches);
