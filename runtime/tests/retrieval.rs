//! Project retrieval on small real trees: incremental updates, what is skipped and why, bad input that must never
//! crash or corrupt the index, and the context and repo-map APIs' budgets and sources.

use std::fs;
use std::path::Path;
use std::process::Command;

use hearth_runtime::NoProgress;
use hearth_runtime::retrieval::{
    ContextRequest, Focus, GITIGNORE, HEARTH_DIR, IndexReport, Project, approximate_tokens,
};

fn write(root: &Path, path: &str, text: impl AsRef<[u8]>) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn index(root: &Path) -> (Project, IndexReport) {
    Project::index(root, &mut NoProgress).expect("index")
}

/// A three-file Python project: `app.py` uses the store, `store.py` defines it, `mail.py` is unrelated.
fn small_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "store.py",
        "class KeyValueStore:\n    \"\"\"Keeps values in memory with an expiry time.\"\"\"\n\n    \
         def get_value(self, key):\n        return self.items.get(key)\n\n    \
         def expire_stale_entries(self, now):\n        for key in list(self.items):\n            \
         if self.deadline[key] < now:\n                del self.items[key]\n",
    );
    write(
        root,
        "app.py",
        "from store import KeyValueStore\n\ndef handle_request(store, key):\n    \
         store.expire_stale_entries(0)\n    return store.get_value(key)\n",
    );
    write(
        root,
        "mail.py",
        "def send_newsletter(addresses):\n    for a in addresses:\n        print('mail', a)\n",
    );
    dir
}

fn symbols(project: &Project, query: &str) -> Vec<String> {
    project
        .search(query, 5)
        .into_iter()
        .map(|h| h.chunk.symbol.unwrap_or(h.path))
        .collect()
}

#[test]
fn updates_reread_only_changed_files_and_follow_edits_and_deletions() {
    let dir = small_project();
    let root = dir.path();
    let (project, report) = index(root);
    assert_eq!((report.files, report.parsed, report.reused), (3, 3, 0));
    assert!(report.written_bytes.is_some());
    assert_eq!(
        symbols(&project, "expire stale entries")[0],
        "KeyValueStore.expire_stale_entries"
    );

    let (_, report) = index(root);
    assert_eq!(
        (report.parsed, report.reused, report.removed, report.written_bytes),
        (0, 3, 0, None)
    );

    write(root, "mail.py", "def send_invoice(customer):\n    return customer\n");
    fs::remove_file(root.join("app.py")).unwrap();
    write(root, "pkg/report.py", "def monthly_report():\n    pass\n");
    let (project, report) = index(root);
    assert_eq!(
        (report.files, report.parsed, report.reused, report.removed),
        (3, 2, 1, 1)
    );
    assert_eq!(symbols(&project, "invoice"), ["send_invoice"]);
    assert!(symbols(&project, "newsletter").is_empty());
    assert!(symbols(&project, "handle request").is_empty());
    assert_eq!(symbols(&project, "monthly report"), ["monthly_report"]);
    assert_eq!(
        project.files().iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["mail.py", "pkg/report.py", "store.py"]
    );
}

#[test]
fn ignore_files_hidden_files_and_the_index_itself_stay_out() {
    let dir = small_project();
    let root = dir.path();
    write(root, ".gitignore", "build/\n");
    write(root, "build/generated.py", "def generated_code():\n    pass\n");
    write(root, ".hearthignore", "vendor/\n");
    write(root, "vendor/lib.py", "def vendored_code():\n    pass\n");
    write(root, ".secret/keys.py", "def hidden_code():\n    pass\n");
    write(root, "Cargo.lock", "# lock file\n");
    index(root);
    let (project, _) = index(root);
    let paths: Vec<&str> = project.files().iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["app.py", "mail.py", "store.py"]);
    assert_eq!(
        fs::read_to_string(root.join(HEARTH_DIR).join(".gitignore")).unwrap(),
        GITIGNORE
    );
    let leftovers: Vec<_> = fs::read_dir(root.join(HEARTH_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left behind: {leftovers:?}");
}

#[test]
fn bad_input_is_skipped_or_recovered_never_fatal() {
    let dir = small_project();
    let root = dir.path();
    // Latin-1 in a comment: indexed with a replacement character, the code still found.
    write(root, "latin.py", b"# caf\xe9\ndef brew_coffee():\n    pass\n");
    write(root, "image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    write(
        root,
        "huge.txt",
        vec![b'a'; (hearth_runtime::retrieval::MAX_FILE_BYTES + 1) as usize],
    );
    write(
        root,
        "broken.py",
        "def ok_before():\n    pass\n\ndef broken(:\n    pass\n\ndef ok_after():\n    pass\n",
    );
    #[cfg(unix)]
    {
        // A link cycle, and a FIFO that would block any reader forever.
        std::os::unix::fs::symlink(root, root.join("loop")).unwrap();
        let fifo = Command::new("mkfifo").arg(root.join("pipe.py")).status();
        assert!(fifo.is_ok_and(|s| s.success()), "mkfifo");
    }
    let (project, report) = index(root);
    let reasons: Vec<(String, String)> = report
        .skipped
        .iter()
        .map(|s| (s.path.clone().unwrap_or_default(), s.reason.clone()))
        .collect();
    assert!(reasons.contains(&("image.png".into(), "binary".into())), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p == "huge.txt" && r.starts_with("larger than")),
        "{reasons:?}"
    );
    assert_eq!(symbols(&project, "brew coffee"), ["brew_coffee"]);
    assert_eq!(symbols(&project, "ok before")[0], "ok_before");
    assert_eq!(symbols(&project, "ok after")[0], "ok_after");
    assert!(
        project
            .files()
            .iter()
            .all(|f| f.path != "pipe.py" && !f.path.starts_with("loop"))
    );

    // A damaged index is rebuilt, not trusted and not fatal.
    fs::write(root.join(HEARTH_DIR).join("index.bin"), b"HEARTHIX\x01\0\0\0garbage").unwrap();
    let (project, report) = index(root);
    assert_eq!(report.reused, 0);
    assert_eq!(
        report.parsed,
        project.files().len() - 1,
        "all but the binary file re-read"
    );
    let (_, report) = index(root);
    assert_eq!(report.parsed, 0, "the rebuilt index was saved");
}

#[test]
fn context_fits_its_budget_names_its_sources_and_leaves_out_files_in_play() {
    let dir = small_project();
    let (project, _) = index(dir.path());
    let in_play = ["app.py".to_owned()];
    let request = ContextRequest {
        query: "how are stale entries expired?",
        files: &in_play,
        budget: 120,
    };
    let context = project.context(&request, &approximate_tokens);
    assert!(approximate_tokens(&context.text) <= request.budget, "{}", context.text);
    let first = &context.sources[0];
    assert_eq!(
        (first.path.as_str(), first.chunk.symbol.as_deref()),
        ("store.py", Some("KeyValueStore.expire_stale_entries"))
    );
    assert!(
        context
            .text
            .starts_with("store.py:7-10 (KeyValueStore.expire_stale_entries)\n```python\n    def expire_stale_entries")
    );
    assert!(context.sources.iter().all(|s| s.path != "app.py"));

    let tiny = project.context(&ContextRequest { budget: 10, ..request }, &approximate_tokens);
    assert!(
        tiny.sources.is_empty() && approximate_tokens(&tiny.text) <= 10,
        "{}",
        tiny.text
    );
}

#[test]
fn repo_map_leans_toward_what_the_files_in_play_use() {
    let dir = small_project();
    let (project, _) = index(dir.path());
    let in_play = ["app.py".to_owned()];
    let map = project.repo_map(
        &Focus {
            files: &in_play,
            text: "",
        },
        1000,
        &approximate_tokens,
    );
    let names: Vec<&str> = map.entries.iter().map(|e| e.name.as_str()).collect();
    // app.py calls both store methods (equal weight: in line order); nothing reaches send_newsletter; app.py itself
    // is left out.
    assert_eq!(&names[..2], ["get_value", "expire_stale_entries"], "{names:?}");
    assert_eq!(names.last(), Some(&"send_newsletter"));
    assert!(map.entries.iter().all(|e| e.path != "app.py"));
    assert!(
        map.text.starts_with("store.py:\n    1│ class KeyValueStore:\n"),
        "{}",
        map.text
    );

    let small = project.repo_map(
        &Focus {
            files: &in_play,
            text: "",
        },
        12,
        &approximate_tokens,
    );
    assert!(
        approximate_tokens(&small.text) <= 12 && !small.entries.is_empty(),
        "{}",
        small.text
    );
}
