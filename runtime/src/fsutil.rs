//! Reading files that go into prompts, and writing files so that readers never see half of one.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Replaces (or creates) `path` with `bytes` atomically: the bytes go to a temporary file in the same directory,
/// are synced to disk, take over the old file's permissions, and the temporary file is renamed over `path`. A crash
/// leaves either the old file or the new one, never a mix; concurrent writers each use their own temporary file.
/// Temporaries of `path` left by writers that were killed mid-write are removed afterwards (see
/// [`remove_orphaned_temporaries`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// [`write_atomic`] for contents too large to hold at once: `write` streams them into the temporary file.
pub fn write_atomic_with(path: &Path, write_contents: impl FnOnce(&mut fs::File) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} is not a file path", path.display())))?;
    let name = name.to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        write_contents(&mut file)?;
        file.sync_all()?;
        if let Ok(old) = fs::metadata(path) {
            fs::set_permissions(&temporary, old.permissions())?;
        }
        fs::rename(&temporary, path)
    };
    write().inspect_err(|_| {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&temporary);
    })?;
    remove_orphaned_temporaries(dir, &name);
    Ok(())
}

/// Removes [`write_atomic`]'s temporaries of `name` in `dir` whose writer is gone (killed before it could rename,
/// e.g. a `kill -9` during a training checkpoint), so that crashes do not pile up copies of large files. Only where
/// a writer's death can be told (Linux: no `/proc/PID`); a live writer's temporary is never touched.
fn remove_orphaned_temporaries(dir: &Path, name: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let writer = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(".tmp"))
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if let Some(pid) = writer
            && !Path::new("/proc").join(pid).exists()
        {
            // Best effort, like the write's own clean-up.
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A file's text for a prompt, refusing what cannot go into one (unreadable, binary, larger than
/// [`MAX_FILE_BYTES`](crate::retrieval::MAX_FILE_BYTES)); the error is the reason, for the caller to name the file.
pub fn read_text_file(path: &Path) -> Result<String, String> {
    let limit = crate::retrieval::MAX_FILE_BYTES;
    let metadata = fs::metadata(path).map_err(|e| e.to_string())?;
    if metadata.len() > limit {
        return Err(format!("larger than {} KiB", limit >> 10));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.contains(&0) {
        return Err("binary file".to_owned());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_keeps_permissions_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.sh");
        fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o751)).unwrap();
        }
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o751);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/dir/file"), b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn temporaries_of_killed_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| dir.path().join(name);
        // No process can have a pid above 2^22; pid 1 is always alive.
        for name in [
            ".a.gguf.99999999.tmp",
            ".a.gguf.1.tmp",
            ".a.gguf.x.99999999.tmp",
            ".b.99999999.tmp",
        ] {
            fs::write(file(name), "partial").unwrap();
        }
        write_atomic(&file("a.gguf"), b"whole").unwrap();
        assert!(!file(".a.gguf.99999999.tmp").exists());
        for kept in [".a.gguf.1.tmp", ".a.gguf.x.99999999.tmp", ".b.99999999.tmp"] {
            assert!(file(kept).exists(), "{kept}");
        }
    }
}
